"""Every `python -m mtl_utils.X` entry point (train, interpolate), end to end on one real tiny run directory."""
import json
import subprocess
import sys

import pytest

from mtl_utils import prepare
from mtl_utils.interpolate import main as interpolate_main
from mtl_utils.train import main as train_main
from tests.conftest import REPO


@pytest.fixture(scope="module")
def run_dir(shared_data, tmp_path_factory):
    """What `python -m mtl_utils.train` writes, for a run of 16 sentences per task (in-process: the
    subprocess cases of the command are in test_cli.py)."""
    out = tmp_path_factory.mktemp("entry_points") / "run"
    train_main(["--data-dir", str(shared_data), "--max-train-samples", "16", "--max-eval-samples", "16",
                "--epochs", "1", "--batch-size", "8", "--max-length", "64", "--mixed-precision", "no", "--quiet",
                "--no-stsb", "--output-dir", str(out)])
    return out


def without_per_type(scores: dict) -> dict:
    return {k: v for k, v in scores.items() if k != "per_type"}


def test_train_writes_a_run_directory(run_dir):
    assert {p.name for p in run_dir.iterdir()} >= {"args.json", "metrics.json", "history.json", "model", "checkpoint"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    splits = {t: set(s) for t, s in metrics["tasks"].items()}
    assert splits == {"ner": {"validation", "test"}, "sentiment": {"validation"}}
    assert "stsb_spearman" not in metrics and metrics["train_examples"] == {"ner": 16, "sentiment": 16}
    history = json.loads((run_dir / "history.json").read_text())
    assert history["epochs"][-1]["validation"] == {t: s["validation"] for t, s in metrics["tasks"].items()}


def test_interpolate_a_real_run(run_dir):
    result = subprocess.run([sys.executable, "-m", "mtl_utils.interpolate", str(run_dir), "--steps", "2", "--quiet"],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0 and result.stderr == "", result.stderr[-2000:]
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["a=0.0", "a=1.0"]
    written = json.loads((run_dir / "interpolation.json").read_text())
    assert written["run"] == "run" and written["validation"] == "validation splits (first 16)"
    assert [point["a"] for point in written["points"]] == [0.0, 1.0]
    for point in written["points"]:
        assert set(point) == {"a", "ner", "sentiment"}  # no STS-B: the run skipped it (--no-stsb)
        assert 0 <= point["ner"]["f1"] <= 1 and point["sentiment"]["support"] == 16
    # a = 1 is the trained model itself, on the run's own validation rows: the run's own scores
    metrics = json.loads((run_dir / "metrics.json").read_text())
    run_scores = {t: without_per_type(s["validation"]) for t, s in metrics["tasks"].items()}
    assert written["points"][-1] == {"a": 1.0, **run_scores}


def test_interpolate_scores_stsb_when_the_run_did(run_dir, tmp_path, monkeypatch):
    """A run with STS-B: every point scores it too (8 pairs here, to stay fast)."""
    settings = json.loads((run_dir / "args.json").read_text()) | {"no_stsb": False}
    (tmp_path / "args.json").write_text(json.dumps(settings))
    (tmp_path / "model").symlink_to(run_dir / "model")
    load_stsb = prepare.load_stsb_validation
    monkeypatch.setattr(prepare, "load_stsb_validation", lambda data_dir: load_stsb(data_dir).select(range(8)))
    points = interpolate_main([str(tmp_path), "--steps", "3", "--quiet"])["points"]
    assert [p["a"] for p in points] == [0.0, 0.5, 1.0]
    assert all(-1 <= p["stsb_spearman"] <= 1 for p in points)


@pytest.mark.parametrize("files, args, message", [(True, ["--steps", "1"], "error: --steps must be at least 2, got 1"),
                                                  (False, [], "error: {run}: not a training run")])
def test_interpolate_bad_input_is_one_line(tmp_path, files, args, message):
    if files:
        (tmp_path / "args.json").write_text("{}")
        (tmp_path / "model").mkdir()
    result = subprocess.run([sys.executable, "-m", "mtl_utils.interpolate", str(tmp_path), *args], capture_output=True,
                            text=True, cwd=REPO, timeout=300)
    message = message.format(run=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
