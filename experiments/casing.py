"""Does a word-shape (casing) embedding help the NER head of an uncased backbone?

Trains NER alone with and without the feature, same configuration and seeds, and writes
results/casing.json with CoNLL-2003 test and validation strict entity F1 per run.

    python experiments/casing.py --epochs 1 --seeds 1 2
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from mtl_utils.train import main as train_main


def run(word_shape_dim: int, seed: int, epochs: int, output_root: Path) -> dict:
    out = output_root / f"shape{word_shape_dim}-seed{seed}"
    metrics = train_main(["--tasks", "ner", "--epochs", str(epochs), "--seed", str(seed), "--no-stsb", "--quiet",
                          "--word-shape-dim", str(word_shape_dim), "--output-dir", str(out)])
    ner = metrics["tasks"]["ner"]
    return {"word_shape_dim": word_shape_dim, "seed": seed, "epochs": epochs,
            "test_f1": ner["test"]["f1"], "validation_f1": ner["validation"]["f1"],
            "test_per_type_f1": {t: v["f1"] for t, v in ner["test"]["per_type"].items()},
            "minutes": metrics["total_seconds"] / 60}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--output", default="results/casing.json")
    parser.add_argument("--runs-dir", default="runs/casing")
    args = parser.parse_args()
    runs = [run(dim, seed, args.epochs, Path(args.runs_dir)) for seed in args.seeds for dim in (0, 16)]
    summary = {}
    for dim in (0, 16):
        f1 = [r["test_f1"] for r in runs if r["word_shape_dim"] == dim]
        summary[f"word_shape_dim={dim}"] = {"test_f1_mean": statistics.mean(f1), "test_f1_per_seed": f1}
    result = {"command": f"python experiments/casing.py --epochs {args.epochs} --seeds {' '.join(map(str, args.seeds))}",
              "setting": "NER only (CoNLL-2003, all 14,041 training sentences), defaults otherwise", "runs": runs,
              "summary": summary}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(json.dumps(summary, indent=2))
