import pytest

from mtl_utils import data
from mtl_utils.data import (DataFormatError, DataUnavailableError, load_conll2003, load_snips_intent, load_sst2, load_stsb_validation,
                            read_conll, read_sst2_tsv, resolve_data_dir)
from tests.conftest import write

CONLL = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n"


def test_read_conll(tmp_path):
    out = read_conll(write(tmp_path / "a.txt", CONLL))
    assert out == {"tokens": [["EU", "rejects"], ["Peter", "Blackburn"]], "tags": [["B-ORG", "O"], ["B-PER", "I-PER"]]}


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
