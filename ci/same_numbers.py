"""Same seeded settings, same numbers: run small trainings and dump everything a change could move.

    python ci/same_numbers.py run OUT.json [NAME ...] # with the checkout's code (PYTHONPATH decides)
    python ci/same_numbers.py compare A.json B.json # bitwise: step losses, metrics, predictions, vectors

For a change that must not change any number (a refactor), run it on both commits and compare. Each
setting trains through the command line on a few real sentences (2 epochs, fp32, a checkpoint every
5 steps), then its saved model is loaded back for predict() and encode(). Floats are compared as
written by json (repr round-trips exactly), so equal means bitwise equal. The bf16 setting tells the
command that this CPU computes bf16 fast (its timing probe can say no on a busy machine).
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

COMMON = ["--max-train-samples", "48", "--max-eval-samples", "48", "--epochs", "2", "--batch-size", "8",
          "--mixed-precision", "no", "--checkpoint-every", "5", "--quiet"]
SETTINGS = {
    "plain": [],
    "bottom2": ["--freeze", "bottom:2", "--no-stsb"],
    "frozen_cached": ["--freeze", "backbone", "--no-stsb"],
    "routed": ["--route", "sentiment:2", "--no-stsb"],
    "lora_per_task": ["--lora", "4", "--lora-per-task", "--no-stsb"],
    "distillation": ["--keep-embeddings", "1"],
    "bf16": ["--mixed-precision", "bf16", "--no-stsb"],  # the command's default where the CPU has bf16 units
    "dev_context": ["--dev-fraction", "0.1", "--context-sentences", "1"],  # (new with the dev split: no base)
}
TEXTS = ["EU rejects German call to boycott British lamb.", "a gripping, beautifully acted film",
         "Peter Blackburn flew from Brussels to New York on Monday.", "the plot is thin and the jokes fall flat",
         "Japan's Nikkei closed at 21,000.", "I"]
STEP_KEYS = ("step", "epoch", "task", "loss", "lr", "keep")
COMMAND = ("import sys, mtl_utils.precision as p; from mtl_utils.train import main\n"
           "if 'bf16' in sys.argv: p.cpu_bf16_is_fast = lambda: True\n"
           "main(sys.argv[1:])")


def run_all(out: Path, names: list[str]) -> None:
    import torch
    from mtl_utils.model import MultiTaskModel
    torch.set_num_threads(2)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or SETTINGS:
            run_dir = Path(tmp) / name
            subprocess.run([sys.executable, "-c", COMMAND, *COMMON, *SETTINGS[name], "--output-dir", str(run_dir)],
                           check=True)
            history = json.loads((run_dir / "history.json").read_text())
            metrics = json.loads((run_dir / "metrics.json").read_text())
            model = MultiTaskModel.from_pretrained(run_dir / "model")
            result[name] = {
                "steps": [{k: s[k] for k in STEP_KEYS if k in s} for s in history["steps"]],
                "epochs": [{k: e[k] for k in ("validation", "stsb_spearman") if k in e} for e in history["epochs"]],
                "metrics": {"tasks": metrics["tasks"], "stsb_spearman": metrics.get("stsb_spearman")},
                "predict": model.predict(TEXTS),
                "encode": model.encoder.encode(TEXTS).tolist(),
            }
            print(f"{name}: {len(history['steps'])} steps, last loss {history['steps'][-1]['loss']!r}", flush=True)
    out.write_text(json.dumps(result))


def differences(a, b, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        found = [f"{where}: keys {sorted(set(a) ^ set(b))}"] if set(a) != set(b) else []
        return found + [d for k in sorted(set(a) & set(b)) for d in differences(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


def main() -> None:
    if sys.argv[1:2] == ["run"] and len(sys.argv) >= 3:
        run_all(Path(sys.argv[2]), sys.argv[3:])
    elif sys.argv[1:2] == ["compare"] and len(sys.argv) == 4:
        a, b = (json.loads(Path(p).read_text()) for p in sys.argv[2:])
        found = differences(a, b)
        counts = {name: (len(a[name]["steps"]), len(a[name]["encode"])) for name in a}
        print("\n".join(found[:20]) if found else f"bitwise identical: {counts} (steps, encoded sentences)")
        sys.exit(1 if found else 0)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
