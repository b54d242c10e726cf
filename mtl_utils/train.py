"""Train the multi-task model from the command line.

    python -m mtl_utils.train                          # defaults: NER + sentiment on real data
    python -m mtl_utils.train --max-train-samples 500 --epochs 1 --quiet
    torchrun --nproc_per_node N -m mtl_utils.train ... # N processes (GPUs, or CPUs with gloo); or accelerate launch
    python -m mtl_utils.train --resume runs/default    # after a kill: on from the last checkpoint

Writes <output-dir>/metrics.json (held-out metrics per task), history.json and model/ (the main process alone)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import datasets
import transformers
from accelerate.utils import broadcast_object_list, set_seed

from .data import DataUnavailableError, resolve_data_dir
from .distributed import distributed_state
from .evaluation import evaluate_task, pair_cosines, similarity_kept, stsb_spearman
from .freezing import format_report, parameter_report
from .model import ModelConfig, MultiTaskModel
from .nonfinite import NonFiniteLossError
from .prepare import PreparedTasks, first, prepare_tasks
from .selection import check_fraction
from .settings import add_settings, settings_from
from .tasks import BUILTIN_TASKS, get_task
from .training import TrainConfig, check_trainable, summarize, train

def parse_caps(text: str | None, tasks: list[str], option: str = "--max-train-samples") -> dict[str, int]:
    """'N' caps every task, 'ner=N,...' each one, '' or 'all' none; untrained tasks are ignored (defaults name them)."""
    if not text or text == "all":
        return {}
    caps = {}
    for part in text.split(","):
        task, _, number = part.rpartition("=")
        if task and task not in BUILTIN_TASKS:
            raise ValueError(f"{option}: unknown task {task!r}; known tasks: {', '.join(BUILTIN_TASKS)}")
        if not number.isdigit() or int(number) < 1:
            raise ValueError(f"{option}: {number!r} is not a positive integer")
        caps |= {name: int(number) for name in ([task] if task else tasks) if name in tasks}
    return caps


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mtl_utils.train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", default="ner,sentiment", help=f"comma-separated, of: {', '.join(BUILTIN_TASKS)}")
    p.add_argument("--data-dir", default=None, help="a folder like shared/data (default: $MTL_DATA_DIR, else the Hub)")
    p.add_argument("--output-dir", default="runs/default", help="for metrics.json, history.json, model/, checkpoint/")
    p.add_argument("--max-train-samples", default=None,
                   help="per-task cap on training examples (a fixed random subset): N for every task, or TASK=N,...")
    p.add_argument("--max-eval-samples", type=int, default=None, help="cap on held-out examples (quick runs only)")
    p.add_argument("--no-stsb", action="store_true", help="skip the STS-B retention probe")
    p.add_argument("--dev-fraction", type=float, default=None,
                   help="carve this share of each task's training data as a dev split (whole CoNLL-2003 documents, "
                        "whole SST-2 sentences with their phrases) and score every epoch on it; the validation "
                        "and test sets and STS-B are then scored once, at the end")
    p.add_argument("--dev-seed", type=int, default=None, help="which dev split (default 0; the same for every --seed)")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the interrupted run whose --output-dir was DIR, with its saved arguments")
    add_settings(p, ModelConfig, "model")
    add_settings(p, TrainConfig, "training")
    return p


# What a resumed run may change (`--resume DIR --skip-nonfinite` after a NaN): how it survives faults, not its result.
RESUME_OVERRIDES = ("skip_nonfinite", "checkpoint_every", "keep_checkpoints", "quiet")


def resumed_args(given: argparse.Namespace, saved: dict, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Those saved in args.json (defaults for options added since), with RESUME_OVERRIDES from the command line."""
    defaults = vars(parser.parse_args([]))
    args = argparse.Namespace(**(defaults | saved))
    for name in RESUME_OVERRIDES:
        if getattr(given, name) != defaults[name]:
            setattr(args, name, getattr(given, name))
    args.output_dir = args.resume = given.resume
    return args


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume:  # then the interrupted run's arguments (see resumed_args)
        saved = Path(args.resume) / "args.json"
        if not saved.is_file():
            raise FileNotFoundError(f"--resume {args.resume}: {saved.name} not found there; "
                                    "is it the --output-dir of an earlier `python -m mtl_utils.train` run?")
        args = resumed_args(args, json.loads(saved.read_text()), parser)
    task_names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    specs = [get_task(name) for name in task_names]
    caps = parse_caps(args.max_train_samples, task_names)
    per_epoch = parse_caps(args.examples_per_epoch, task_names, "--examples-per-epoch")
    # Check every argument before the slow parts start.
    config = settings_from(args, TrainConfig, examples_per_epoch=per_epoch or None)
    model_config = settings_from(args, ModelConfig)
    model_config.routes()
    resolve_data_dir(args.data_dir)
    if args.dev_fraction is not None:
        check_fraction(args.dev_fraction)
    if args.dev_seed is not None and (args.dev_fraction is None or args.dev_seed < 0):
        raise ValueError(f"--dev-seed {args.dev_seed}: needs --dev-fraction and a seed of 0 or more")
    dev_seed = args.dev_seed or 0
    # With several processes (torchrun, accelerate launch) all train, but only the main one prints and writes files.
    state = distributed_state()
    log = print if state.is_main_process else (lambda *values, **kwargs: None)
    accelerate_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() == "true"
    if state.num_processes == 1 and accelerate_cpu and os.environ.get("MASTER_ADDR"):  # several asked for
        print("warning: `accelerate launch --cpu` starts one process, whatever --num_processes says; for several "
              "CPU processes use `torchrun --nproc_per_node N -m mtl_utils.train ...`", file=sys.stderr)
    out = Path(args.output_dir)
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        if not args.resume:
            (out / "args.json").write_text(json.dumps(vars(args), indent=2))
    # One progress bar, training's own (none with --quiet): none from transformers (weights) or datasets.
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    started = time.perf_counter()

    set_seed(args.seed)  # the heads' (and adapters') initial weights: --seed decides them, not what ran before
    model = MultiTaskModel.from_config(model_config, specs)
    check_trainable(model, task_names)  # e.g. --freeze all: say so now, not after encoding the training set
    log(format_report(parameter_report(model)))
    data = prepare_tasks(specs, model.encoder.tokenizer, args.max_length, args.data_dir, max_train=caps,
                         max_eval=args.max_eval_samples, seed=args.seed, stsb=not args.no_stsb,
                         context=args.context_sentences, dev_fraction=args.dev_fraction, dev_seed=dev_seed)
    for task, split in data.train_splits.items():  # "(N per epoch)" where fewer than all, else every example each epoch
        capped = f" ({per_epoch[task]:,} per epoch)" if per_epoch.get(task, len(split)) < len(split) else ""
        log(f"{task}: {len(split):,} training examples{capped}; held out: " + ", ".join(
            f"{name} {len(sets[task][0]):,}" for name, sets in data.held_out.items() if task in sets))
    # With a dev split, every epoch is scored on it; the reported sets once, after training (final_metrics).
    selection = "dev" if args.dev_fraction is not None else "validation"
    probe = selection == "dev" and state.is_main_process  # (before training: the pretrained encoder's view)
    dev_texts, reference = selection_probe(model, data) if probe else (None, None)
    history = train(model, data.train_features, data.held_out.get(selection, {}), config,
                    data.stsb_pairs if selection == "validation" else None, args.output_dir, resume=bool(args.resume))
    # The main process alone scores the test splits (all have the same weights); the others wait in the broadcast.
    metrics = {"command": "python -m mtl_utils.train " + " ".join(argv if argv is not None else sys.argv[1:]),
               "arguments": vars(args)}
    if state.is_main_process:
        metrics |= final_metrics(model, data, history, state.num_processes, started, selection)
        if selection == "dev":
            metrics["selection"] |= {"fraction": args.dev_fraction, "seed": dev_seed}
        if dev_texts is not None and len(dev_texts) > 2:  # (a correlation needs three pairs)
            metrics["selection"] |= {"dev_similarity_kept": similarity_kept(model.encoder, dev_texts, reference),
                                     "dev_similarity_sentences": len(dev_texts)}
        model.save_pretrained(out / "model")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        for task, splits in metrics["tasks"].items():
            for split_name, m in splits.items():
                print(f"{task} {split_name}: {summarize({task: m}, model.tasks)}")
        if "dev_similarity_kept" in metrics["selection"]:
            print(f"dev similarity kept: {metrics['selection']['dev_similarity_kept']:.4f}")
        if "stsb_spearman" in metrics:
            print(f"STS-B validation Spearman: {metrics['stsb_spearman']:.4f}")
        print(f"wrote {out / 'metrics.json'} and {out / 'model'} ({metrics['total_seconds'] / 60:.1f} min)")
    return broadcast_object_list([metrics])[0]


def selection_probe(model: MultiTaskModel, data: PreparedTasks, per_task: int = 500) -> tuple[list[str], object]:
    """Up to `per_task` dev sentences of each task and the pretrained encoder's pair cosines of them (before
    training), for `similarity_kept` after it: a retention score that never looks at STS-B."""
    firsts = [first(split, per_task) for split, _ in data.held_out["dev"].values()]
    texts = [text for rows in firsts for text in
             (rows["text"] if "text" in rows.column_names else [" ".join(words) for words in rows["tokens"]])]
    return texts, pair_cosines(model.encoder.encode(texts))


def final_metrics(model: MultiTaskModel, data: PreparedTasks, history: dict, processes: int, started: float,
                  selection: str = "validation") -> dict:
    """Held-out scores, times and sizes. The `selection` split's (and, without a dev split, STS-B's) as the last
    epoch's record has them (train() scored the same model on the same sets there); the others here, once."""
    last, tasks = history["epochs"][-1], {}
    for split_name, sets in data.held_out.items():  # (tasks: in training order, dev, validation, test)
        for task, (split, features) in sets.items():
            tasks.setdefault(task, {})[split_name] = (last["validation"][task] if split_name == selection
                                                      else evaluate_task(model, task, split, features))
    stsb = {} if data.stsb_pairs is None else {"stsb_spearman": last["stsb_spearman"] if selection == "validation"
                                               else stsb_spearman(model.encoder, data.stsb_pairs)}
    chosen_on = {"split": selection} | ({} if selection == "validation" else {
        "carved": data.dev_carved, "scored": {t: len(s) for t, (s, _) in data.held_out["dev"].items()}})
    return {"tasks": tasks, **stsb, "selection": chosen_on,
            "train_seconds": sum(e["train_seconds"] for e in history["epochs"]),
            "total_seconds": time.perf_counter() - started,
            "train_examples": {t: len(f["input_ids"]) for t, f in data.train_features.items()}, "processes": processes}


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError, DataUnavailableError, NonFiniteLossError) as err:
        # Bad input, a NaN loss, an unusable checkpoint (CheckpointError is a ValueError): one line, no traceback.
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
