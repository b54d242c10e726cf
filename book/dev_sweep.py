"""Write results/dev_sweep.json and book/dev_sweep_table.md: every setting tried on the development split.

    python book/dev_sweep.py

Each row is one run in results/<name>/ of `python -m mtl_utils.train --dev-fraction 0.1 --mixed-precision bf16
--seed 42` plus the options it lists. Settings are chosen by `choose()` from the development-split scores
alone; the reported sets (CoNLL-2003 test, SST-2 validation, STS-B) are in each run's metrics.json and are
not read here.
"""
from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP_JSON = ROOT / "results" / "dev_sweep.json"
TABLE = ROOT / "book" / "dev_sweep_table.md"
BASE = "dev-distil"  # distillation (`--keep-embeddings 1`), the recipe that keeps the encoder
ROWS = ["dev-distil", "dev-distil-ctx1", "dev-distil-lambda0.5", "dev-distil-e4"]
KEPT_TOLERANCE = 0.01  # a setting may keep the dev similarity this much less than BASE and still be chosen
BUDGET_MINUTES = 20  # a whole run on the 2-core CPU, bf16
IGNORED = {"output_dir", "quiet"}


def load(name: str) -> dict:
    return json.loads((ROOT / "results" / name / "metrics.json").read_text())


def options(arguments: dict, base: dict) -> str:
    """The command-line options in which a run differs from BASE."""
    changed = [f"--{key.replace('_', '-')} {value}" for key, value in arguments.items()
               if key not in IGNORED and value != base.get(key)]
    return " ".join(changed) or "(base)"


def row(name: str, base: dict) -> dict:
    run = load(name)
    history = json.loads((ROOT / "results" / name / "history.json").read_text())
    per_epoch = {"ner_f1": [e["validation"]["ner"]["f1"] for e in history["epochs"]],
                 "sentiment_accuracy": [e["validation"]["sentiment"]["accuracy"] for e in history["epochs"]]}
    return {"name": name, "options": options(run["arguments"], base["arguments"]),
            "dev_ner_f1": run["tasks"]["ner"]["dev"]["f1"],
            "dev_sentiment_accuracy": run["tasks"]["sentiment"]["dev"]["accuracy"],
            "dev_similarity_kept": run["selection"]["dev_similarity_kept"],
            "dev_per_epoch": per_epoch, "train_minutes": run["train_seconds"] / 60,
            "run_minutes": run["total_seconds"] / 60}


def excluded(row: dict, base: dict) -> str:
    """Why the rule may not choose `row` ("" if it may)."""
    reasons = []
    if row["dev_similarity_kept"] < base["dev_similarity_kept"] - KEPT_TOLERANCE:
        reasons.append("forgets more")
    if row["run_minutes"] > BUDGET_MINUTES:
        reasons.append("over the time budget")
    return ", ".join(reasons)


def choose(rows: list[dict]) -> str:
    """The rule: the highest mean of the two dev scores among the settings that keep the dev similarity within
    KEPT_TOLERANCE of BASE's (the distillation recipe, whose STS-B holds at 0.81) and run within the budget."""
    base = next(r for r in rows if r["name"] == BASE)
    allowed = [r for r in rows if not excluded(r, base)]
    return max(allowed, key=lambda r: (r["dev_ner_f1"] + r["dev_sentiment_accuracy"]) / 2)["name"]


def render(rows: list[dict], chosen: str) -> str:
    lines = ["<!-- Written by book/dev_sweep.py from results/; do not edit. -->", "",
             "| setting | dev NER F1 | dev SST-2 acc. | mean | dev similarity kept | min | rule |",
             "|---|---:|---:|---:|---:|---:|---|"]
    base = next(r for r in rows if r["name"] == BASE)
    for r in rows:
        verdict = "chosen" if r["name"] == chosen else excluded(r, base) or "lower mean"
        label = "base: `--keep-embeddings 1`" if r["name"] == BASE else f"base, then `{r['options']}`"
        lines.append(f"| {label} | {r['dev_ner_f1']:.4f} | {r['dev_sentiment_accuracy']:.4f} "
                     f"| {(r['dev_ner_f1'] + r['dev_sentiment_accuracy']) / 2:.4f} "
                     f"| {r['dev_similarity_kept']:.3f} | {r['run_minutes']:.1f} | {verdict} |")
    return "\n".join(lines) + "\n"


def sweep() -> tuple[dict, str]:
    base = load(BASE)
    rows = [row(name, base) for name in ROWS]
    chosen = choose(rows)
    document = {"note": "Every setting tried on the development split (10 % of each task's training data, "
                        "dev seed 0), one seed (42) each; chosen by the rule in book/dev_sweep.py's choose().",
                "base_command": base["command"], "kept_tolerance": KEPT_TOLERANCE,
                "budget_minutes": BUDGET_MINUTES, "chosen": chosen,
                "rows": rows}
    return document, render(rows, chosen)


def main() -> None:
    document, table = sweep()
    SWEEP_JSON.write_text(json.dumps(document, indent=1) + "\n")
    TABLE.write_text(table)
    print(f"wrote {SWEEP_JSON.relative_to(ROOT)} and {TABLE.relative_to(ROOT)}; chosen: {document['chosen']}")


if __name__ == "__main__":
    main()
