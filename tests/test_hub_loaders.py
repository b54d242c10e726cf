"""The Hub loaders, offline: the datasets the Hub ids serve are built here (same columns and feature
types) and handed to the real loading code by a stand-in for `datasets.load_dataset`, the one
function that fetches."""
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

from mtl_utils.data import (CONLL_NER_LABELS, HUB_IDS, SNIPS_INTENT_LABELS, DataFormatError, load_conll2003,
                            load_snips_intent, load_sst2, load_stsb_validation)

SENTENCES = [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]
NER_TAGS = [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"]]


def conll_hub(names: list[str] = CONLL_NER_LABELS, tags: Sequence | None = None) -> DatasetDict:
    """lhoestq/conll2003: id, tokens, pos_tags, chunk_tags, ner_tags (ClassLabel ids in HF's label order)."""
    features = Features({"id": Value("string"), "tokens": Sequence(Value("string")),
                         "pos_tags": Sequence(Value("int64")), "chunk_tags": Sequence(Value("int64")),
                         "ner_tags": tags or Sequence(ClassLabel(names=names))})
    rows = {"id": ["0", "1"], "tokens": SENTENCES, "pos_tags": [[22, 42, 16, 21], [22, 22]],
            "chunk_tags": [[11, 21, 11, 12], [11, 12]],
            "ner_tags": [[names.index(t) for t in seq] for seq in NER_TAGS]}
    return DatasetDict({s: Dataset.from_dict(rows, features=features) for s in ("train", "validation", "test")})


def sst2_hub() -> DatasetDict:
    """stanfordnlp/sst2: idx, sentence (with GLUE's trailing space), label; the test split's labels are -1."""
    features = Features({"idx": Value("int32"), "sentence": Value("string"),
                         "label": ClassLabel(names=["negative", "positive"])})
    labeled = {"idx": [0, 1], "sentence": ["a gorgeous film ", "dull and lifeless "], "label": [1, 0]}
    test = {"idx": [0], "sentence": ["no label here "], "label": [-1]}
    return DatasetDict({"train": Dataset.from_dict(labeled, features=features),
                        "validation": Dataset.from_dict(labeled, features=features),
                        "test": Dataset.from_dict(test, features=features)})


def stsb_hub() -> DatasetDict:
    """sentence-transformers/stsb: sentence1, sentence2, score in 0-1."""
    rows = {"sentence1": ["A man is playing a flute.", "A cat sleeps."],
            "sentence2": ["A man plays the flute.", "A dog runs."], "score": [0.95, 0.04]}
    return DatasetDict({s: Dataset.from_dict(rows) for s in ("train", "validation", "test")})


def snips_hub() -> DatasetDict:
    """benayas/snips: text and category (the intent name); train and test splits only."""
    rows = {"text": [f"utterance {i} " for i in range(14)], "category": SNIPS_INTENT_LABELS * 2}
    return DatasetDict({"train": Dataset.from_dict(rows), "test": Dataset.from_dict(rows)})


@pytest.fixture()
def hub(monkeypatch, no_local_data) -> dict[str, DatasetDict]:
    """The fake Hub: dataset name -> what its Hub id serves; edit an entry to serve a broken copy."""
    served = {"conll2003": conll_hub(), "sst2": sst2_hub(), "stsb": stsb_hub(), "snips": snips_hub()}
    by_id = {HUB_IDS[name]: name for name in served}

    def load_dataset(path: str, split: str | None = None, **kwargs) -> DatasetDict | Dataset:
        dataset = served[by_id[path]]
        return dataset if split is None else dataset[split]

    monkeypatch.setattr("datasets.load_dataset", load_dataset)
    return served


def test_conll2003_from_the_hub(hub):
    splits = load_conll2003()
    assert set(splits) == {"train", "validation", "test"}
    assert splits["test"]["tokens"] == SENTENCES and splits["test"]["tags"] == NER_TAGS


def test_conll2003_labels_in_another_order_are_read_by_name(hub):
    hub["conll2003"] = conll_hub(names=CONLL_NER_LABELS[::-1])
    assert load_conll2003()["train"]["tags"] == NER_TAGS


def test_conll2003_plain_int_tags_are_a_clear_error(hub):
    hub["conll2003"] = conll_hub(tags=Sequence(Value("int64")))  # ids without the names that say their order
    with pytest.raises(DataFormatError, match=r"lhoestq/conll2003: column 'ner_tags' holds plain int64 values"):
        load_conll2003()


def test_conll2003_another_label_set_is_a_clear_error(hub):
    hub["conll2003"] = conll_hub(names=[n.replace("LOC", "LOCATION") for n in CONLL_NER_LABELS])
    with pytest.raises(DataFormatError, match=r"lhoestq/conll2003: column 'ner_tags' has labels .*, expected"):
        load_conll2003()


def test_sst2_from_the_hub_strips_and_names_labels(hub):
    splits = load_sst2()
    assert set(splits) == {"train", "validation"}  # the test split's labels (-1) are never read
    assert splits["validation"][0] == {"text": "a gorgeous film", "label": "positive"}


def test_sst2_unlabeled_rows_in_a_labeled_split_are_a_clear_error(hub):
    hub["sst2"]["validation"] = hub["sst2"]["test"]
    with pytest.raises(DataFormatError, match=r"stanfordnlp/sst2, split 'validation': column 'label' has ids \[-1\]"):
        load_sst2()


def test_stsb_from_the_hub(hub):
    pairs = load_stsb_validation()
    assert pairs["sentence1"][0] == "A man is playing a flute." and all(0 <= s <= 1 for s in pairs["score"])


def test_snips_from_the_hub(hub):
    splits = load_snips_intent()
    assert {s: len(d) for s, d in splits.items()} == {"train": 14, "validation": 7, "test": 7}
    assert splits["train"][0] == {"text": "utterance 0", "label": "AddToPlaylist"}


@pytest.mark.parametrize("name, split, column, loader", [
    ("conll2003", "train", "ner_tags", load_conll2003),
    ("conll2003", "test", "tokens", load_conll2003),
    ("sst2", "validation", "sentence", load_sst2),
    ("sst2", "train", "label", load_sst2),
    ("stsb", "validation", "score", load_stsb_validation),
])
def test_a_missing_column_names_the_dataset_and_column(hub, name, split, column, loader):
    hub[name][split] = hub[name][split].remove_columns(column)
    with pytest.raises(DataFormatError, match=rf"{HUB_IDS[name]}, split '{split}': no column '{column}'"):
        loader()


def test_a_missing_split_names_the_dataset(hub):
    del hub["conll2003"]["validation"]
    with pytest.raises(DataFormatError, match=r"lhoestq/conll2003: no split 'validation'"):
        load_conll2003()
