"""Bad input that is not covered next to its module: each gives a clear error or a documented handling."""
import json
from pathlib import Path

import pytest
from datasets import Dataset
from transformers import AutoModel, BertConfig

import mtl_utils
from mtl_utils.data import DataFormatError, read_stsb_tsv
from mtl_utils.encoder import SentenceEncoder
from mtl_utils.model import MultiTaskModel
from mtl_utils.serialization import CheckpointError
from mtl_utils.tasks import BUILTIN_TASKS, TaskSpec
from mtl_utils.tokenization import tokenize_split
from tests.conftest import write

PACKAGE = Path(mtl_utils.__file__).resolve().parent  # the package imported, installed or checked out


def test_empty_split(encoder):
    empty = Dataset.from_dict({"text": [], "label": []})
    with pytest.raises(ValueError, match="the split is empty"):
        tokenize_split(empty, BUILTIN_TASKS["sentiment"], encoder.tokenizer)


def test_stsb_bad_rows(tmp_path):
    with pytest.raises(DataFormatError, match=r"s\.tsv:1: expected 10 tab-separated columns"):
        read_stsb_tsv(write(tmp_path / "s.tsv", "a\tb\tc\n"))
    row = "\t".join(["1", "g", "f", "y", "0", "n", "n", "A cat.", "A dog.", "high"])
    with pytest.raises(DataFormatError, match=r"s\.tsv:1: score 'high' is not a number"):
        read_stsb_tsv(write(tmp_path / "s.tsv", row + "\n"))


def test_odd_text_is_handled(model):
    out = model.predict(["", "   ", "🙂🙂 great 🙂", "ÉCOLE Polytechnique in Montréal"])
    assert [o["num_words"] for o in out] == [0, 0, 4, 4]
    assert all(o["sentiment"]["label"] in ("negative", "positive") for o in out)
    assert out[0]["ner"] == [] and out[1]["ner"] == []


def test_long_sentence_prediction_marks_the_cut(model):
    text = " ".join(["Paris"] * 400)
    with pytest.warns(UserWarning, match="cut by max_length"):
        [result] = model.predict([text])
    assert result["num_words"] == 400
    assert 0 < result["words_seen"] < 400
    assert all(e["end"] <= len(text) for e in result["ner"])


def test_head_size_that_disagrees_with_labels(model, tmp_path):
    model.save_pretrained(tmp_path / "m")
    config_file = tmp_path / "m" / "mtl_config.json"
    config = json.loads(config_file.read_text())
    config["tasks"][1]["labels"].append("neutral")
    config_file.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not match the config"):
        MultiTaskModel.from_pretrained(tmp_path / "m")


def test_tokenizer_that_does_not_match_the_backbone(encoder):
    small = AutoModel.from_config(BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=2, intermediate_size=64))
    with pytest.raises(ValueError, match="does not match the backbone"):
        SentenceEncoder(small, encoder.tokenizer)


def test_bad_task_specs():
    with pytest.raises(ValueError, match="unknown task kind 'span'"):
        TaskSpec("x", "span", ("a", "b"))
    with pytest.raises(ValueError, match="duplicate label names"):
        TaskSpec("x", "sentence", ("a", "a"))


def test_no_pickle_based_loading_in_the_package():
    forbidden = ["torch.load", "import pickle", "pickle.load", "allow_pickle=True", "trust_remote_code=True",
                 "use_safetensors=False", "safe_serialization=False", "joblib"]
    for path in PACKAGE.glob("*.py"):
        source = path.read_text()
        for word in forbidden:
            assert word not in source, f"{path.name} uses {word}"
    assert "use_safetensors=True" in (PACKAGE / "backbone.py").read_text()
