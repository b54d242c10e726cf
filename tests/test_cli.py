import json
import subprocess
import sys

import pytest

from mtl_utils.train import main, parse_caps
from tests.conftest import REPO


def test_tiny_training_run_writes_metrics_and_model(shared_data, tmp_path):
    out = tmp_path / "run"
    metrics = main(["--data-dir", str(shared_data), "--max-train-samples", "96", "--examples-per-epoch", "all",
                    "--max-eval-samples", "64",
                    "--epochs", "1", "--batch-size", "16", "--output-dir", str(out), "--quiet", "--no-stsb"])
    written = json.loads((out / "metrics.json").read_text())
    assert written["tasks"].keys() == {"ner", "sentiment"}
    assert set(written["tasks"]["ner"]) == {"validation", "test"}
    assert 0 <= written["tasks"]["ner"]["test"]["f1"] <= 1
    assert written["tasks"]["sentiment"]["validation"]["support"] == 64
    assert metrics["train_examples"] == {"ner": 96, "sentiment": 96}
    history = json.loads((out / "history.json").read_text())
    assert len(history["steps"]) == 12 and len(history["epochs"]) == 1
    assert (out / "model" / "heads.safetensors").is_file()


def test_caps():
    assert parse_caps("100", ["ner", "sentiment"]) == {"ner": 100, "sentiment": 100}
    assert parse_caps("sentiment=5", ["ner", "sentiment"]) == {"sentiment": 5}
    with pytest.raises(ValueError, match="unknown task 'pos'"):
        parse_caps("pos=5", ["ner"])
    assert parse_caps("sentiment=5", ["ner"]) == {}  # a known task that is not trained: nothing to cap
    assert parse_caps("all", ["ner"]) == {}
    with pytest.raises(ValueError, match="not a positive integer"):
        parse_caps("ner=-1", ["ner"])


@pytest.mark.parametrize("args, message", [
    (["--tasks", "ner,pos"], "unknown task 'pos'"),
    (["--freeze", "bottom:9"], "K=9 is out of range"),
    (["--pooling", "avg"], "unknown pooling 'avg'"),
    (["--llrd-decay", "1.5"], r"decay must be in \(0, 1\]"),
    (["--data-dir", "/nonexistent/data"], "does not exist"),
])
def test_cli_errors_are_one_clear_line(args, message, tmp_path):
    result = subprocess.run([sys.executable, "-m", "mtl_utils.train", *args, "--output-dir", str(tmp_path), "--quiet",
                             "--max-train-samples", "8", "--epochs", "1", "--no-stsb"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    import re
    assert re.search(message, result.stderr), result.stderr[-500:]
