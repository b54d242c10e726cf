import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest

import torch

from mtl_utils import train as cli
from mtl_utils.evaluation import evaluate_task
from mtl_utils.precision import bf16_is_fast
from mtl_utils.train import main, parse_caps
from mtl_utils.training import TrainConfig
from tests.conftest import REPO


def gold_entities(path: Path, n_sentences: int) -> collections.Counter:
    """Entities per type in the first `n_sentences` sentences of a CoNLL-2003 file, read from the file itself.

    One entity per B- tag: these files have no I- tag that starts an entity, so this is strict IOB2's count.
    """
    counts, sentences, inside = collections.Counter(), 0, False
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            sentences, inside = sentences + inside, False
            if sentences == n_sentences:
                break
        else:
            inside = True
            if fields[-1].startswith("B-"):
                counts[fields[-1][2:]] += 1
    return counts


def test_tiny_training_run_writes_metrics_and_model(shared_data, tmp_path, capfd, monkeypatch):
    out = tmp_path / "run"
    evaluated = []  # after training, only the test split is scored: validation comes from the last epoch's record
    monkeypatch.setattr(cli, "evaluate_task", lambda model, task, *args: evaluated.append(task) or evaluate_task(
        model, task, *args))
    metrics = main(["--data-dir", str(shared_data), "--max-train-samples", "96", "--max-eval-samples", "64",
                    "--epochs", "1", "--batch-size", "16", "--output-dir", str(out), "--quiet", "--no-stsb"])
    printed = capfd.readouterr()
    assert printed.err == ""  # --quiet: no progress bar (transformers' "Loading weights" included)
    # the default cap of 22,450 sentiment examples per epoch is above the 96 there are: all of them, each epoch
    assert "sentiment: 96 training examples; held out" in printed.out
    written = json.loads((out / "metrics.json").read_text())
    assert written["tasks"].keys() == {"ner", "sentiment"}
    assert set(written["tasks"]["ner"]) == {"validation", "test"}
    assert 0 <= written["tasks"]["ner"]["test"]["f1"] <= 1
    assert written["tasks"]["sentiment"]["validation"]["support"] == 64
    assert metrics["train_examples"] == {"ner": 96, "sentiment": 96}
    assert evaluated == ["ner"]
    history = json.loads((out / "history.json").read_text())
    assert len(history["steps"]) == 12 and len(history["epochs"]) == 1
    # the command's precision is auto (TrainConfig's is fp32): bf16 where this machine is fast in it
    assert history["config"]["mixed_precision"] == "auto" and TrainConfig().mixed_precision == "no"
    assert history["mixed_precision"] == ("bf16" if bf16_is_fast(torch.device("cpu")) else "no")

    # Each held-out score comes from its own split: supports counted in the data files themselves.
    for split_name in ("validation", "test"):
        gold = gold_entities(shared_data / "conll2003" / f"{split_name}.txt", 64)
        scores = written["tasks"]["ner"][split_name]
        assert scores["support"] == sum(gold.values())
        assert {t: m["support"] for t, m in scores["per_type"].items()} == dict(gold)
    assert gold_entities(shared_data / "conll2003" / "validation.txt", 64) != gold  # the check tells them apart
    sst2_validation = (shared_data / "sst2" / "validation.tsv").read_text(encoding="utf-8").splitlines()[1:]
    assert written["tasks"]["sentiment"]["validation"]["support"] == min(64, len(sst2_validation))
    assert set(written["tasks"]["sentiment"]) == {"validation"}  # SST-2's test labels are not public
    # validation as after the last epoch: the same model on the same split, the same numbers
    assert history["epochs"][-1]["validation"] == {task: s["validation"] for task, s in written["tasks"].items()}
    assert (out / "model" / "mtl_config.json").is_file()  # (the heads' files: serialization.py's format)


class _Built(Exception):
    """Raised right after main() has built its model: these tests need nothing more."""


def initial_heads(monkeypatch, shared_data, tmp_path, seed: int) -> dict:
    built = {}

    def stop(model, tasks):
        built.update({name: p.detach().clone() for name, p in model.heads.named_parameters()})
        raise _Built

    monkeypatch.setattr(cli, "check_trainable", stop)
    torch.rand(int(torch.randint(1, 100, ()).item()))  # whatever ran before main() drew from torch's generator
    with pytest.raises(_Built):
        main(["--data-dir", str(shared_data), "--seed", str(seed), "--output-dir", str(tmp_path / "run")])
    return built


def test_seed_decides_the_initial_heads(monkeypatch, shared_data, tmp_path):
    first, again = (initial_heads(monkeypatch, shared_data, tmp_path, 7) for _ in range(2))
    other = initial_heads(monkeypatch, shared_data, tmp_path, 8)
    assert first.keys() == other.keys() and len(first) >= 4
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not any(torch.equal(first[name], other[name]) for name in first if name.endswith("weight"))


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
    (["--freeze", "all"], "^error: freezing 'all' leaves no trainable parameter"),
    (["--dev-fraction", "1.5"], r"^error: dev fraction must be between 0 and 1 \(exclusive\), got 1.5"),
    (["--dev-fraction", "0"], r"^error: dev fraction must be between 0 and 1"),
    (["--dev-seed", "3"], r"^error: --dev-seed 3: needs --dev-fraction"),
    (["--context-sentences", "-1"], r"^error: context sentences must be a whole number, 0 or more; got -1"),
])
def test_cli_errors_are_one_clear_line(args, message, tmp_path):
    result = subprocess.run([sys.executable, "-m", "mtl_utils.train", *args, "--output-dir", str(tmp_path), "--quiet",
                             "--max-train-samples", "8", "--epochs", "1", "--no-stsb"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    import re
    assert re.search(message, result.stderr), result.stderr[-500:]
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr[-500:]
    assert "training examples" not in result.stdout  # found before the data is read, tokenised or encoded
