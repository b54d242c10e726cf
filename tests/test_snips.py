"""SNIPS intent detection: seq.in / label read line-aligned, errors name the file and line."""
import pytest

from mtl_utils.data import (
    DataFormatError,
    load_snips_intent,
    read_intent_labels,
    read_intent_split,
)
from mtl_utils.tasks import BUILTIN_TASKS, SNIPS_INTENT_LABELS, SNIPS_INTENT_TASK, TaskSpec
from tests.conftest import write

LABEL_FILE = "UNK\n" + "".join(f"{name}\n" for name in SNIPS_INTENT_LABELS)
SEQ_IN = "play some jazz on spotify \nwill it rain  in paris tomorrow\nbook a table for two\n"
LABELS = "PlayMusic\nGetWeather\nBookRestaurant\n"


def snips_dir(root, seq_in=SEQ_IN, labels=LABELS, label_file=LABEL_FILE):
    for split in ("train", "validation", "test"):
        write(root / "snips" / split / "seq.in", seq_in)
        write(root / "snips" / split / "label", labels)
    write(root / "snips" / "intent_label.txt", label_file)
    return root


def test_read_intent_split(tmp_path):
    out = read_intent_split(snips_dir(tmp_path) / "snips" / "train", SNIPS_INTENT_LABELS)
    assert out == {"text": ["play some jazz on spotify", "will it rain in paris tomorrow", "book a table for two"],
                   "label": ["PlayMusic", "GetWeather", "BookRestaurant"]}


def test_label_file_order_without_unk(tmp_path):
    assert read_intent_labels(write(tmp_path / "intent_label.txt", LABEL_FILE)) == SNIPS_INTENT_LABELS
    with pytest.raises(DataFormatError, match=r"twice\.txt:3: intent 'AddToPlaylist' is listed twice"):
        read_intent_labels(write(tmp_path / "twice.txt", "UNK\nAddToPlaylist\nAddToPlaylist\n"))
    with pytest.raises(DataFormatError, match="at least two intents"):
        read_intent_labels(write(tmp_path / "only_unk.txt", "UNK\n"))


def test_load_snips_intent_from_files(tmp_path):
    splits = load_snips_intent(snips_dir(tmp_path))
    assert list(splits) == ["train", "validation", "test"]
    assert splits["test"].column_names == ["text", "label"]
    assert splits["validation"]["label"] == ["PlayMusic", "GetWeather", "BookRestaurant"]


@pytest.mark.parametrize("labels, message", [
    (LABELS + "PlayMusic\n", r"seq\.in:4: the file ends after 3 lines, but .*label has 4"),
    ("PlayMusic\nGetWeather\n", r"label:3: the file ends after 2 lines, but .*seq\.in has 3"),
])
def test_different_line_counts_name_file_and_line(tmp_path, labels, message):
    directory = snips_dir(tmp_path, labels=labels) / "snips" / "train"
    with pytest.raises(DataFormatError, match=message):
        read_intent_split(directory, SNIPS_INTENT_LABELS)


def test_unknown_intent_names_file_and_line(tmp_path):
    directory = snips_dir(tmp_path, labels="PlayMusic\nGetWeather\nOrderPizza\n") / "snips" / "train"
    with pytest.raises(DataFormatError, match=r"train/label:3: intent 'OrderPizza' is not in the label set"):
        read_intent_split(directory, SNIPS_INTENT_LABELS)


def test_unk_is_not_an_intent(tmp_path):
    directory = snips_dir(tmp_path, labels="PlayMusic\nUNK\nBookRestaurant\n") / "snips" / "train"
    with pytest.raises(DataFormatError, match=r"label:2: intent 'UNK' \(a placeholder in intent_label\.txt"):
        read_intent_split(directory, SNIPS_INTENT_LABELS)


def test_empty_lines(tmp_path):
    directory = snips_dir(tmp_path, seq_in="play jazz\n   \nbook a table\n") / "snips" / "train"
    with pytest.raises(DataFormatError, match=r"seq\.in:2: empty utterance"):
        read_intent_split(directory, SNIPS_INTENT_LABELS)
    directory = snips_dir(tmp_path, labels="PlayMusic\n\nBookRestaurant\n") / "snips" / "train"
    with pytest.raises(DataFormatError, match=r"label:2: empty intent"):
        read_intent_split(directory, SNIPS_INTENT_LABELS)


def test_label_file_with_other_intents(tmp_path):
    root = snips_dir(tmp_path, label_file="UNK\nPlayMusic\nGetWeather\nBookRestaurant\n")
    with pytest.raises(DataFormatError, match=r"intent_label\.txt: lists the intents"):
        load_snips_intent(root)


def test_missing_file(tmp_path):
    root = snips_dir(tmp_path)
    (root / "snips" / "test" / "label").unlink()
    with pytest.raises(FileNotFoundError, match="data file not found: .*snips/test/label"):
        load_snips_intent(root)


def test_intent_task_is_not_built_in():
    assert SNIPS_INTENT_TASK.name == "intent" and SNIPS_INTENT_TASK.kind == "sentence"
    assert list(SNIPS_INTENT_TASK.labels) == SNIPS_INTENT_LABELS
    assert set(BUILTIN_TASKS) == {"ner", "sentiment"}


def test_a_task_read_back_by_name_kind_and_labels_finds_its_loader(tmp_path):
    """A saved model keeps each task's name, kind and labels only (serialization.py); the name finds the data."""
    read_back = TaskSpec("intent", "sentence", tuple(SNIPS_INTENT_LABELS))
    assert read_back == SNIPS_INTENT_TASK and read_back.load is None
    loaded = read_back.load_data(snips_dir(tmp_path))
    expected = load_snips_intent(tmp_path)
    assert {s: d.to_dict() for s, d in loaded.items()} == {s: d.to_dict() for s, d in expected.items()}


def test_hub_copy_is_checked_and_split(monkeypatch, no_local_data):
    from datasets import Dataset, DatasetDict

    names = SNIPS_INTENT_LABELS * 2
    hub = DatasetDict({"train": Dataset.from_dict({"text": ["play  jazz "] * 14, "category": names}),
                       "test": Dataset.from_dict({"text": [f"utterance {i}" for i in range(14)], "category": names})})
    monkeypatch.setattr("datasets.load_dataset", lambda *a, **k: hub)
    splits = load_snips_intent()
    assert {s: len(d) for s, d in splits.items()} == {"train": 14, "validation": 7, "test": 7}
    assert splits["train"][0] == {"text": "play jazz", "label": "AddToPlaylist"}
    assert sorted([*splits["validation"]["text"], *splits["test"]["text"]]) == sorted(hub["test"]["text"])

    hub["test"] = Dataset.from_dict({"text": ["x", "y"], "category": ["PlayMusic", "add_to_playlist"]})
    with pytest.raises(DataFormatError, match="Hub column 'category'"):
        load_snips_intent()
    hub["test"] = Dataset.from_dict({"sentence": ["x"], "intent": ["PlayMusic"]})
    with pytest.raises(DataFormatError, match=r"benayas/snips, split 'test': no column 'text' \(found \['sentence'"):
        load_snips_intent()


def test_real_snips_counts(shared_data):
    if not (shared_data / "snips").is_dir():
        pytest.skip("no snips/ in the data directory")
    splits = load_snips_intent(shared_data)
    assert {s: len(d) for s, d in splits.items()} == {"train": 13084, "validation": 700, "test": 700}
    assert sum(len(t.split()) for t in splits["train"]["text"]) == 117700
    for split in splits.values():
        assert set(split["label"]) == set(SNIPS_INTENT_LABELS)
