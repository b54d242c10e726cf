"""Draw results/benchmarks.json for the book: each measured figure against its goal.

    python benchmarks/plot_benchmarks.py

Writes book/images/benchmarks.png (a bar per figure, its goal marked, log scale) and
book/benchmarks_table.md (the table that book/performance.md includes). A figure that is not in the
JSON yet is drawn and listed as "not measured yet". Run it again after any benchmark script.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "benchmarks.json"
FIGURE = ROOT / "book" / "images" / "benchmarks.png"
TABLE = ROOT / "book" / "benchmarks_table.md"

# name in the JSON, short label, what is compared, goal (value >= goal), command, details from the JSON entry
BENCHMARKS = [
    ("train_vs_trainer_ratio", "training loop\nvs Trainer",
     "NER training, like for like (the same sentences, batch size, clipping, schedule and weight decay; each "
     "side one whole call, set-up included): `mtl_utils.training.train` over Hugging Face `Trainer` at its best "
     "(length-grouped batches, fused AdamW)",
     1.1, "python benchmarks/train_vs_trainer.py",
     lambda d: (f"{d['ours_sentences_per_s']:.1f} vs {d['trainer_sentences_per_s']:.1f} sentences/s; Trainer on "
                f"its defaults {d['trainer_defaults_sentences_per_s']:.1f}, ratio {d['trainer_defaults_ratio']:.2f}")),
    ("train_vs_pad128_ratio", "length-grouped\nvs pad to 128",
     "NER training speed: length-grouped batches with dynamic padding over random batches padded to 128 tokens "
     "(same model, loop and optimizer)",
     3.0, "python benchmarks/train_vs_pad128.py",
     lambda d: (f"{d['grouped_sentences_per_s']:.1f} vs {d['pad128_sentences_per_s']:.1f} sentences/s; "
                f"{d['tokens_per_batch']['grouped']:.0f} vs {d['tokens_per_batch']['pad128']:.0f} tokens per batch")),
    ("cached_head_epoch_speedup", "cached head\nepoch",
     "frozen backbone: one epoch of NER head training on cached features over re-encoding every batch",
     20.0, "python benchmarks/cached_head.py",
     lambda d: (f"{d['cached_epoch_seconds']:.2f} s vs {d['reencoding_epoch_seconds']:.1f} s per epoch of "
                f"{d['sentences']} sentences; building the cache {d['cache_build_seconds']:.1f} s")),
    ("encode_vs_st_ratio", "encode vs\nsentence-\ntransformers",
     "encoding speed, 5,000 SST-2 sentences: `SentenceEncoder.encode` over `SentenceTransformer.encode` "
     "(same vectors)",
     1.0, "python benchmarks/encode_vs_st.py",
     lambda d: (f"{d['ours_sentences_per_s']:.0f} vs {d['st_sentences_per_s']:.0f} sentences/s; "
                f"max difference {d['max_abs_difference']:.0e}")),
    ("train_flops_fraction", "fp32 training\nFLOP/s / peak",
     "achieved NER training FLOP/s (counted FLOPs, AdamW step timed too) as a fraction of `torch.mm` FLOP/s "
     "on large fp32 matrices, same run",
     0.5, "python benchmarks/train_flops.py",
     lambda d: (f"{d['achieved_gflop_per_s']:.0f} vs {d['large_matmul_gflop_per_s']:.0f} GFLOP/s; "
                f"matmul is {d['matmul_share_of_step_time']:.0%} of the step time"
                + (f"; of the bf16 matmul peak ({d['large_matmul_bf16_gflop_per_s']:.0f} GFLOP/s): "
                   f"{d['fp32_steps_fraction_of_bf16_peak']:.2f}" if "large_matmul_bf16_gflop_per_s" in d else ""))),
    ("train_bf16_flops_fraction", "bf16 training\nFLOP/s / peak",
     "the same NER training steps under bf16 autocast: achieved FLOP/s as a fraction of `torch.mm` FLOP/s "
     "on large bf16 matrices, same run",
     None, "python benchmarks/train_flops.py",
     lambda d: f"{d['achieved_gflop_per_s']:.0f} vs {d['large_matmul_gflop_per_s']:.0f} GFLOP/s"),
    ("train_compiled_vs_eager_ratio", "compiled vs\neager step",
     "NER training speed: `torch.compile(model, dynamic=True)` (inductor) over eager PyTorch, after compiling",
     1.15, "python benchmarks/train_compiled.py",
     lambda d: (f"{d['eager_seconds']:.1f} s vs {d['compiled_seconds']:.1f} s per {d['steps']} steps; compiling "
                f"{d['compile_seconds']:.0f} s, {d['graphs_compiled']} graphs for {len(d['batch_lengths'])} lengths")),
    ("train_bf16_vs_fp32_ratio", "bf16 vs fp32\ntraining",
     "NER training speed under bf16 autocast over fp32",
     1.3, "python benchmarks/train_bf16.py",
     lambda d: f"{d['train_seconds']['fp32']:.1f} s vs {d['train_seconds']['bf16']:.1f} s per {d['steps']} steps"),
    ("encode_bf16_vs_fp32_ratio", "bf16 vs fp32\nencoding",
     "encoding speed (SST-2 validation sentences) under bf16 autocast over fp32",
     None, "python benchmarks/train_bf16.py",
     lambda d: f"{d['encode_seconds']['fp32']:.2f} s vs {d['encode_seconds']['bf16']:.2f} s"),
]


def hardware(entry: dict) -> str:
    """The machine of one entry, by the label the book's provenance page defines (the CPUs are named
    there, not in the chapters). The first benchmarks did not record their CPU: machine A."""
    if "cpu" not in entry:
        return f"machine A, 2 cores, torch threads {entry.get('torch_threads', 2)}, no GPU"
    label = "C" if entry["cpu_fast_bf16"] else "B"
    return (f"machine {label}, {entry['cores']} cores, torch {entry['torch']} threads {entry['torch_threads']}, "
            f"{'GPU' if entry['device'] == 'cuda' else 'no GPU'}, {entry['date']}")


def table(results: dict) -> str:
    """A narrow table (it must fit the book's column) and, below it, what each row compares."""
    lines = ["| benchmark | measured | goal | met? |", "|---|---|---|---|"]
    notes = []
    for key, _, compared, goal, command, details in BENCHMARKS:
        entry = results.get(key)
        goal_text = "report" if goal is None else f"≥ {goal:g}"
        if entry is None:
            measured, met, where = "not measured yet", "–", "not run yet"
        elif entry["value"] is None:  # the script ran and says why it could not measure
            measured, met = "not measurable on that CPU", "–"
            where = f"{hardware(entry)}: {entry['not_measured']}"
        else:
            try:
                extra = f" ({details(entry)})"
            except (KeyError, TypeError, ValueError):
                extra = ""
            measured = f"**{entry['value']:.3g}**{extra}"
            met = "–" if goal is None else "yes" if entry["value"] >= goal else "**no**"
            where = hardware(entry)
        lines.append(f"| `{key}` | {measured} | {goal_text} | {met} |")
        notes.append(f"- `{key}`: {compared}. `{command}`; {where}.")
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def figure(results: dict) -> None:
    fig, ax = plt.subplots(figsize=(9, 4.2))
    values = [(results.get(key) or {}).get("value") for key, *_ in BENCHMARKS]
    goals = [goal for _, _, _, goal, _, _ in BENCHMARKS if goal is not None]
    low, high = min([v for v in values if v] + goals) / 2, max([v for v in values if v] + goals) * 2
    for i, ((key, label, _, goal, _, _), value) in enumerate(zip(BENCHMARKS, values)):
        if value is None:
            why = "not measurable\nhere" if key in results else "not measured\nyet"
            ax.text(i, (low * (goal or 1)) ** 0.5, why, ha="center", va="center", fontsize=8, color="0.35")
        else:
            color = "tab:blue" if goal is None else "tab:green" if value >= goal else "tab:orange"
            ax.bar(i, value - low, bottom=low, color=color, width=0.6)
            top = max(value, goal) if goal is not None and abs(value / goal - 1) < 0.3 else value  # clear the goal line
            ax.text(i, top * 1.08, f"{value:.2f}", ha="center", va="bottom", fontsize=9)
        if goal is not None:
            ax.hlines(goal, i - 0.4, i + 0.4, colors="black", linestyles="--", linewidth=1.5)
    ax.plot([], [], "k--", label="goal (measured ≥ goal)")
    ax.bar([0], [0], color="tab:green", label="goal met")
    ax.bar([0], [0], color="tab:orange", label="goal not met")
    ax.bar([0], [0], color="tab:blue", label="reported (no goal)")
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    ax.set_xlim(-0.6, len(BENCHMARKS) - 0.4)
    ax.set_xticks(range(len(BENCHMARKS)), [label for _, label, *_ in BENCHMARKS], fontsize=7)
    ax.set_ylabel("measured ratio (log scale)")
    ax.set_title("Benchmarks on 2-core x86_64 CPUs (results/benchmarks.json; machines in the table)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=200)


def main() -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    figure(results)
    TABLE.write_text("<!-- Written by benchmarks/plot_benchmarks.py from results/benchmarks.json; do not edit. -->\n\n"
                     + table(results))
    missing = [key for key, *_ in BENCHMARKS if key not in results]
    print(f"wrote {FIGURE.relative_to(ROOT)} and {TABLE.relative_to(ROOT)}"
          + (f"; not measured yet: {', '.join(missing)}" if missing else ""))


if __name__ == "__main__":
    main()
