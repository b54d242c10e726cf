import pytest

from mtl_utils import data
from mtl_utils.data import (DataFormatError, DataUnavailableError, load_conll2003, load_snips_intent, load_sst2, load_stsb_validation,
                            read_conll, read_sst2_tsv, resolve_data_dir)
from tests.conftest import write

CONLL = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n"


def test_read_conll(tmp_path):
    out = read_conll(write(tmp_path / "a.txt", CONLL))
    assert out == {"tokens": [["EU", "rejects"], ["Peter", "Blackburn"]], "tags": [["B-ORG", "O"], ["B-PER", "I-PER"]],
                   "document": [0, 0]}
    two = read_conll(write(tmp_path / "b.txt", "x NN O O\n\n" + CONLL + CONLL))
    assert two["document"] == [-1, 0, 0, 1, 1]  # counted at each -DOCSTART-; -1 before the first


def test_conll_crlf_bom_and_no_final_blank_line(tmp_path):
    text = "\ufeff" + CONLL.rstrip("\n").replace("\n", "\r\n")
    assert read_conll(write(tmp_path / "a.txt", text.encode("utf-8"))) == read_conll(write(tmp_path / "b.txt", CONLL))


def test_conll_wrong_column_count_names_file_and_line(tmp_path):
    path = write(tmp_path / "a.txt", CONLL.replace("rejects VBZ B-VP O", "rejects VBZ O"))
    with pytest.raises(DataFormatError, match=r"a\.txt:4: expected 4 columns"):
        read_conll(path)


def test_conll_tag_outside_label_set(tmp_path):
    path = write(tmp_path / "a.txt", CONLL.replace("B-PER", "B-PERSON"))
    with pytest.raises(DataFormatError, match=r"a\.txt:6: tag 'B-PERSON' is not in the label set"):
        read_conll(path)


def test_conll_i_tag_after_o_is_kept_as_written(tmp_path):
    out = read_conll(write(tmp_path / "a.txt", "x NN O O\ny NN O I-LOC\n"))
    assert out["tags"] == [["O", "I-LOC"]]


def test_conll_not_utf8_names_line(tmp_path):
    path = write(tmp_path / "a.txt", CONLL.encode() + b"caf\xe9 NN O O\n")
    with pytest.raises(DataFormatError, match=r"a\.txt:9: not valid UTF-8"):
        read_conll(path)


def test_conll_empty_file(tmp_path):
    with pytest.raises(DataFormatError, match="no sentences found"):
        read_conll(write(tmp_path / "a.txt", "-DOCSTART- -X- -X- O\n\n"))


def test_sst2_tsv(tmp_path):
    out = read_sst2_tsv(write(tmp_path / "t.tsv", "sentence\tlabel\ngood film \t1\nbad\t0\n"))
    assert out == {"text": ["good film", "bad"], "label": ["positive", "negative"]}


@pytest.mark.parametrize("row, message", [
    ("just a sentence", r"t\.tsv:3: expected 'sentence<TAB>label'"),
    ("a sentence\t", r"t\.tsv:3: expected 'sentence<TAB>label'"),
    ("a sentence\tpositive", r"t\.tsv:3: label 'positive' is not an integer"),
    ("a sentence\t2", r"t\.tsv:3: label 2 is outside 0\.\.1"),
])
def test_sst2_bad_rows(tmp_path, row, message):
    with pytest.raises(DataFormatError, match=message):
        read_sst2_tsv(write(tmp_path / "t.tsv", f"sentence\tlabel\nfine\t1\n{row}\n"))


def test_sst2_bad_header_and_empty(tmp_path):
    with pytest.raises(DataFormatError, match="expected the header"):
        read_sst2_tsv(write(tmp_path / "t.tsv", "text\tlabel\nfine\t1\n"))
    with pytest.raises(DataFormatError, match="empty dataset"):
        read_sst2_tsv(write(tmp_path / "e.tsv", "sentence\tlabel\n"))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="data file not found: .*conll2003/train.txt"):
        load_conll2003(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_data_dir(tmp_path / "nowhere")


def test_env_variable_is_used(tmp_path, monkeypatch, no_local_data):
    monkeypatch.setenv("MTL_DATA_DIR", str(tmp_path))
    assert resolve_data_dir() == tmp_path
    monkeypatch.delenv("MTL_DATA_DIR")
    assert resolve_data_dir() is None
    monkeypatch.setattr(data, "FALLBACK_DATA_DIRS", [tmp_path / "missing", tmp_path])
    assert resolve_data_dir() == tmp_path


@pytest.mark.parametrize("loader, message", [(load_sst2, "Set MTL_DATA_DIR"),
                                             (load_snips_intent, "Set MTL_DATA_DIR.*not been tested")])
def test_no_data_dir_and_no_hub_says_how_to_fix(monkeypatch, no_local_data, loader, message):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub")

    monkeypatch.setattr("datasets.load_dataset", offline)
    with pytest.raises(DataUnavailableError, match=message):
        loader()


def test_hub_label_names_are_checked(monkeypatch, no_local_data):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=["O", "B-X", "I-X"]))})
    fake = DatasetDict({s: Dataset.from_dict({"tokens": [["a"]], "ner_tags": [[0]]}, features=features)
                        for s in ("train", "validation", "test")})
    monkeypatch.setattr("datasets.load_dataset", lambda *a, **k: fake)
    with pytest.raises(DataFormatError, match="has labels"):
        load_conll2003()


def test_real_data_counts(shared_data):
    conll = load_conll2003(shared_data)
    assert {s: len(d) for s, d in conll.items()} == {"train": 14041, "validation": 3250, "test": 3453}
    assert sum(len(t) for t in conll["train"]["tokens"]) == 203621
    sst2 = load_sst2(shared_data)
    assert {s: len(d) for s, d in sst2.items()} == {"train": 67349, "validation": 872}
    assert set(sst2["train"]["label"]) == {"negative", "positive"}
    assert len(load_stsb_validation(shared_data)) == 1500


def test_unknown_task():
    from mtl_utils.tasks import get_task
    with pytest.raises(ValueError, match="unknown task 'pos'"):
        get_task("pos")


def test_a_task_without_a_known_loader_is_one_clear_error():
    from mtl_utils.tasks import TaskSpec
    with pytest.raises(ValueError, match="task 'pos': no data loader is known for it"):
        TaskSpec("pos", "token", ("O", "B-NOUN")).load_data()


def toy_task():
    """A sentence task with its own loader (which wins over the registry): 10 training rows, 3 validation."""
    from datasets import Dataset, DatasetDict
    from mtl_utils.tasks import TaskSpec

    def load(data_dir):
        def rows(n: int) -> Dataset:
            return Dataset.from_dict({"text": [f"sentence {i}" for i in range(n)], "label": ["a", "b"] * (n // 2)})
        return DatasetDict({"train": rows(10), "validation": rows(4)})
    return TaskSpec("toy", "sentence", ("a", "b"), load)


def test_prepare_tasks_subsets_rows_as_documented(shared_data, encoder):
    from mtl_utils.prepare import prepare_tasks
    from mtl_utils.tasks import BUILTIN_TASKS
    from mtl_utils.tokenization import tokenize_split

    ner, toy = BUILTIN_TASKS["ner"], toy_task()
    data = prepare_tasks([ner, toy], encoder.tokenizer, 64, shared_data, max_train={"ner": 20, "toy": 50}, max_eval=3,
                         seed=3, stsb=True, max_stsb=7)
    conll = load_conll2003(shared_data)
    # training: a seeded random subset below the split's size, else the whole split in file order
    assert data.train_splits["ner"]["tokens"] == conll["train"].shuffle(seed=3).select(range(20))["tokens"]
    assert data.train_splits["toy"]["text"] == [f"sentence {i}" for i in range(10)]
    assert data.train_features["ner"] == tokenize_split(data.train_splits["ner"], ner, encoder.tokenizer, 64)
    # held out: the first rows of every held-out split a task has
    assert {name: list(sets) for name, sets in data.held_out.items()} == {"validation": ["ner", "toy"], "test": ["ner"]}
    split, features = data.held_out["test"]["ner"]
    assert split["tokens"] == conll["test"]["tokens"][:3]
    assert features == tokenize_split(split, ner, encoder.tokenizer, 64)
    assert len(data.held_out["validation"]["toy"][0]) == 3
    assert data.stsb_pairs["sentence1"] == load_stsb_validation(shared_data)["sentence1"][:7]

    only = prepare_tasks([toy], encoder.tokenizer, 64, splits=("validation",), max_train=2)
    assert only.train_splits == {} and list(only.held_out) == ["validation"] and only.stsb_pairs is None
    assert prepare_tasks([toy], encoder.tokenizer, 64, splits=("train",), max_train=2).train_splits["toy"]["text"] == \
        toy.load_data()["train"].shuffle(seed=0).select(range(2))["text"]  # one cap for every task


def test_experiment_data_keeps_its_keys(shared_data, encoder):
    from mtl_utils.experiments import load_experiment_data

    data = load_experiment_data(encoder.tokenizer, 8, 4, seed=1, data_dir=shared_data)
    assert list(data) == ["train_splits", "train_features", "eval_sets", "stsb_pairs", "sizes"]
    assert data["sizes"] == {"train": {"ner": 8, "sentiment": 8}, "validation": {"ner": 4, "sentiment": 4},
                             "stsb_pairs": 4}
    sst2 = load_sst2(shared_data)["train"]
    assert data["train_splits"]["sentiment"]["text"] == sst2.shuffle(seed=1).select(range(8))["text"]
    split, features = data["eval_sets"]["ner"]
    assert split["tokens"] == load_conll2003(shared_data)["validation"]["tokens"][:4]
    assert len(features["input_ids"]) == 4


def test_experiment_rows_name_each_task_by_its_headline():
    from types import SimpleNamespace

    from mtl_utils.experiments import headline_scores
    from mtl_utils.tasks import BUILTIN_TASKS

    ner_only = SimpleNamespace(tasks={"ner": BUILTIN_TASKS["ner"]})
    data = {"eval_sets": {"ner": None, "sentiment": None}}
    scores = {"ner": {"f1": 0.5, "precision": 0.4}}
    assert headline_scores(ner_only, scores, data) == {"ner_f1": 0.5, "sentiment_accuracy": None}
