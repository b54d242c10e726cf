"""Write book/results_table.md, the results at a glance, from results/ (the book includes it).

    python book/results_table.py

Full data: the runs of `python -m mtl_utils.train` in results/<run>/metrics.json (fp32, every seed
there is). Subsets: notebook 6's rows in results/retention.json (one epoch on 4,000 + 4,000 sentences,
validation sets). Trainable parameters are counted on the models these settings build. Minutes: each
recipe's runs measured alone in one session (provenance page); the other runs' times are not comparable.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "book" / "results_table.md"
FULL = {  # recipe: (command-line options, result folders, the folders timed alone in one session)
    "full fine-tuning (default)": ("", ["default", "default-seed1", "default-seed2"], ["default-seed2"]),
    "distillation": ("`--keep-embeddings 1`", ["distil-cosine-1", "distil-cosine-1-seed1", "distil-cosine-1-seed2",
                                              "distil-cosine-1-seed3", "distil-cosine-1-rerun"],
                     ["distil-cosine-1-seed3"]),
    "per-task LoRA": ("`--lora 16 --lora-targets all --lora-per-task --lr 1e-3 --llrd-decay 1`",
                      ["lora16-per-task-lr1e-3", "lora16-per-task-lr1e-3-seed1", "lora16-per-task-lr1e-3-seed2"],
                      ["lora16-per-task-lr1e-3-seed1", "lora16-per-task-lr1e-3-seed2"]),
}
SUBSETS = {"full fine-tuning (default)": "full fine-tuning", "distillation": "distil cosine 1",
           "per-task LoRA": "LoRA 16, per task", "interpolation (a = 0.3)": "interpolated a=0.3"}
SETTINGS = {"full fine-tuning (default)": {}, "distillation": {},
            "per-task LoRA": {"lora": 16, "lora_targets": "all", "lora_per_task": True}}
# One model per task against the shared encoder, on the same training rows (the development split carved
# out), bf16; runs are paired by the seed in their metrics.json.
SINGLE = {"ner": ["ner-alone", "ner-alone-seed1", "ner-alone-seed2"],
          "sentiment": ["sentiment-alone", "sentiment-alone-seed1", "sentiment-alone-seed2"]}
TIMED_WITH_OTHERS = {"ner-alone-seed2"}  # shared the cores (provenance page): left out of the minutes
# The shared encoder: the recipe the dev sweep chose (book/dev_sweep.py), then the sweep's base.
SHARED = [("distillation at lr 3e-4, chosen on the dev split", "`--keep-embeddings 1 --lr 3e-4`",
           ["dev-distil-lr3e-4", "dev-distil-lr3e-4-seed1", "dev-distil-lr3e-4-seed2"]),
          ("distillation at lr 2e-4, the sweep's base", "`--keep-embeddings 1`",
           ["dev-distil", "dev-distil-seed1", "dev-distil-seed2"])]


def mean_std(values: list[float], digits: int) -> str:
    """mean ± sample standard deviation (narrow no-break spaces keep a cell on one line)."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f}\u202f±\u202f{statistics.stdev(values):.{digits}f}"


def trainable(settings: dict) -> int:
    import transformers

    from mtl_utils.model import ModelConfig, MultiTaskModel

    transformers.utils.logging.disable_progress_bar()
    from mtl_utils.tasks import BUILTIN_TASKS

    model = MultiTaskModel.from_config(ModelConfig(**settings), [BUILTIN_TASKS["ner"], BUILTIN_TASKS["sentiment"]])
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def full_data_scores() -> dict[str, dict[str, list[float]]]:
    scores = {}
    for name, (_, folders, _) in FULL.items():
        runs = [json.loads((ROOT / "results" / f / "metrics.json").read_text()) for f in folders]
        scores[name] = {"f1": [r["tasks"]["ner"]["test"]["f1"] for r in runs],
                        "acc": [r["tasks"]["sentiment"]["validation"]["accuracy"] for r in runs],
                        "stsb": [r["stsb_spearman"] for r in runs]}
    return scores


def gap(base: list[float], other: list[float]) -> str:
    """How far `other` lies below `base`: the difference of means and its 95% interval (Welch's t: the
    runs are not paired), "within noise" where the interval holds zero."""
    from scipy import stats

    difference = statistics.mean(base) - statistics.mean(other)
    a, b = statistics.variance(base) / len(base), statistics.variance(other) / len(other)
    dof = (a + b) ** 2 / (a ** 2 / (len(base) - 1) + b ** 2 / (len(other) - 1))
    half = stats.t.ppf(0.975, dof) * (a + b) ** 0.5
    noise = "within noise, " if difference - half <= 0 <= difference + half else ""
    return f"{difference:.4f} ({noise}95% interval {difference - half:.4f} to {difference + half:.4f})"


def paired(shared: dict[int, float], single: dict[int, float]) -> str:
    """shared - single over the seeds both have (same seed, same training rows): the mean difference and its
    95% interval (t with n - 1 degrees of freedom), "within noise" where the interval holds zero."""
    from scipy import stats

    differences = [shared[seed] - single[seed] for seed in shared if seed in single]
    mean = statistics.mean(differences)
    half = stats.t.ppf(0.975, len(differences) - 1) * statistics.stdev(differences) / len(differences) ** 0.5
    noise = "within noise, " if mean - half <= 0 <= mean + half else ""
    return f"{mean:+.4f} ({noise}{mean - half:+.4f} to {mean + half:+.4f}; {len(differences)} seeds)"


def single_task_rows() -> list[str]:
    def runs(folders: list[str]) -> list[dict]:
        return [json.loads((ROOT / "results" / f / "metrics.json").read_text()) for f in folders]

    def minutes(folders: list[str]) -> str:
        timed = runs([f for f in folders if f not in TIMED_WITH_OTHERS])
        return f"{statistics.mean(r['total_seconds'] for r in timed) / 60:.1f}"

    ner, sentiment = runs(SINGLE["ner"]), runs(SINGLE["sentiment"])

    def by_seed(group: list[dict], score) -> dict[int, float]:
        return {r["arguments"]["seed"]: score(r) for r in group}

    def f1(group: list[dict]) -> dict[int, float]:
        return by_seed(group, lambda r: r["tasks"]["ner"]["test"]["f1"])

    def acc(group: list[dict]) -> dict[int, float]:
        return by_seed(group, lambda r: r["tasks"]["sentiment"]["validation"]["accuracy"])

    def spread(scores: dict[int, float]) -> str:
        return mean_std(list(scores.values()), 4)

    def stsb(group: list[dict]) -> str:
        return mean_std([r["stsb_spearman"] for r in group], 3)

    rows = [f"| NER alone | {spread(f1(ner))} | - | {stsb(ner)} | {minutes(SINGLE['ner'])} |",
            f"| SST-2 alone | - | {spread(acc(sentiment))} | {stsb(sentiment)} | {minutes(SINGLE['sentiment'])} |"]
    for label, _, folders in SHARED:
        shared = runs(folders)
        rows += [f"| one shared encoder: {label} | {spread(f1(shared))} | {spread(acc(shared))} "
                 f"| {stsb(shared)} | {minutes(folders)} |",
                 f"| its difference to one model per task, paired by seed (95% interval) "
                 f"| {paired(f1(shared), f1(ner))} | {paired(acc(shared), acc(sentiment))} | | |"]
    return rows


def decision_rows() -> list[str]:
    """You need X -> use Y, because Z: Z's numbers from the tables above."""
    full = full_data_scores()
    base, distil, lora = full["full fine-tuning (default)"], full["distillation"], full["per-task LoRA"]
    mean = statistics.mean
    retention = json.loads((ROOT / "results" / "retention.json").read_text())["rows"]
    sub = {name: {key: statistics.mean(r[key] for r in retention if r["name"] == recipe)
                  for key in ("ner_f1", "stsb_spearman")} for name, recipe in SUBSETS.items()}
    mixed, distilled = sub["interpolation (a = 0.3)"], sub["distillation"]
    return [
        f"| the best NER and sentiment scores; the encoder's own sentence vectors do not matter | full "
        f"fine-tuning, the default | the highest mean scores ({mean(base['f1']):.3f} test F1, {mean(base['acc']):.3f} "
        f"SST-2); STS-B falls to {mean(base['stsb']):.2f} |",
        f"| both tasks, and the encoder still good for similarity search, in one backbone pass | distillation "
        f"(`--keep-embeddings 1`) | STS-B {mean(distil['stsb']):.3f}; below the default by "
        f"{gap(base['f1'], distil['f1'])} test F1 and {gap(base['acc'], distil['acc'])} SST-2 |",
        f"| `encode()` exactly the pretrained encoder, or tasks added later without touching the others | "
        f"per-task LoRA | STS-B {mean(lora['stsb']):.3f}, unchanged by construction, with 1.33M parameters "
        f"trained; below the default by {gap(base['f1'], lora['f1'])} test F1 and {gap(base['acc'], lora['acc'])} "
        f"SST-2; `predict()` runs one backbone pass per task |",
        f"| to keep the encoder of a model already fine-tuned, without training | interpolation, expecting a "
        f"large cost | on the subsets, a = 0.3 keeps STS-B {mixed['stsb_spearman']:.3f} (distillation "
        f"{distilled['stsb_spearman']:.3f}) but loses {distilled['ner_f1'] - mixed['ner_f1']:.2f} more NER F1 |",
    ]


def seeds(folders: list[str]) -> str:
    """The runs' seeds; a second run of a seed says so."""
    runs = [json.loads((ROOT / "results" / f / "metrics.json").read_text()) for f in folders]
    return ", ".join(str(r["arguments"]["seed"]) + (" again" if f.endswith("rerun") else "")
                     for r, f in zip(runs, folders))


def full_data_rows() -> list[str]:
    rows = []
    for name, (options, folders, timed) in FULL.items():
        runs = [json.loads((ROOT / "results" / f / "metrics.json").read_text()) for f in folders]
        minutes = ", ".join(f"{json.loads((ROOT / 'results' / f / 'metrics.json').read_text())['total_seconds'] / 60:.1f}"
                            for f in timed)
        rows.append(f"| {name}, {len(runs)} runs "
                    f"| {mean_std([r['tasks']['ner']['test']['f1'] for r in runs], 4)} "
                    f"| {mean_std([r['tasks']['sentiment']['validation']['accuracy'] for r in runs], 4)} "
                    f"| {mean_std([r['stsb_spearman'] for r in runs], 3)} | {minutes} "
                    f"| {trainable(SETTINGS[name]) / 1e6:.2f}M |")
    return rows


def subset_rows() -> list[str]:
    retention = json.loads((ROOT / "results" / "retention.json").read_text())
    rows = []
    for name, recipe in SUBSETS.items():
        runs = [r for r in retention["rows"] if r["name"] == recipe]
        rows.append(f"| {name} | {len(runs)} "
                    f"| {mean_std([r['ner_f1'] for r in runs], 3)} "
                    f"| {mean_std([r['sentiment_accuracy'] for r in runs], 3)} "
                    f"| {mean_std([r['stsb_spearman'] for r in runs], 3)} |")
    return rows


def render() -> str:
    lines = ["<!-- Written by book/results_table.py from results/; do not edit. -->", "",
             "**Full data** (all 14,041 CoNLL-2003 and 67,349 SST-2 training sentences, three epochs; fp32; "
             "mean ± standard deviation over the runs):", "",
             "| recipe | NER test F1 | SST-2 acc. | STS-B | min | trained |",
             "|---|---:|---:|---:|---:|---:|", *full_data_rows(), "",
             "Each is `python -m mtl_utils.train --mixed-precision no` with " + "; ".join(
                 f"{name}: {options or 'no other option'}" for name, (options, _, _) in FULL.items()) + ". Seeds: "
             + "; ".join(f"{name} {seeds(folders)}" for name, (_, folders, _) in FULL.items()) + ". NER: CoNLL-2003 strict entity "
             "F1; min: minutes of a whole run; trained: trainable parameters.", "",
             "**One model per task or one shared encoder**, on the same training rows (10 % of each task's "
             "training data held out as the development split on which settings are chosen), bf16; seeds: NER "
             f"alone {seeds(SINGLE['ner'])}, SST-2 alone {seeds(SINGLE['sentiment'])}, "
             f"shared {seeds(SHARED[0][2])} "
             "(mean ± standard deviation over the runs; min: mean minutes of a whole run, of the runs timed "
             "alone):", "",
             "| model | NER test F1 | SST-2 acc. | STS-B | min |", "|---|---:|---:|---:|---:|", *single_task_rows(),
             "", "Each is `python -m mtl_utils.train --dev-fraction 0.1 --mixed-precision bf16` with `--tasks ner`, "
             f"`--tasks sentiment`, or " + " or ".join(options for _, options, _ in SHARED) + ".", "",
             "Interpolation has not been run on the full data. **Notebook 6's subsets** (4,000 + 4,000 training "
             "sentences, one epoch, validation sets; seeds 1, 2 and 3) compare all four:", "",
             "| recipe | runs | NER validation F1 | SST-2 acc. | STS-B |",
             "|---|---|---:|---:|---:|", *subset_rows(), "",
             "| you need | use | because |", "|---|---|---|", *decision_rows(), "",
             "STS-B: Spearman correlation of the encoder's cosine similarities with human scores on the 1,500 "
             "validation pairs (the pretrained encoder: 0.810). SST-2 accuracy is on its GLUE validation set "
             "(872 sentences: one sentence is 0.11 points). Minutes: the runs measured alone in one session "
             "on 2 CPU cores ({doc}`provenance </book/provenance>`).", ""]
    return "\n".join(lines)


def main() -> None:
    TABLE.write_text(render())
    print(f"wrote {TABLE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
