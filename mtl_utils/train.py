"""Train the multi-task model from the command line.

    python -m mtl_utils.train                          # defaults: NER + sentiment on real data
    python -m mtl_utils.train --max-train-samples 500 --epochs 1 --quiet
    accelerate launch -m mtl_utils.train ...           # several GPUs
    torchrun --nproc_per_node N -m mtl_utils.train ... # N processes (GPUs, or CPUs with gloo)
    python -m mtl_utils.train --resume runs/default    # after a kill: on from the last checkpoint

Writes <output-dir>/metrics.json (held-out metrics per task), history.json and the saved model
(with several processes, the main process alone writes them).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import typing
from pathlib import Path

import datasets
import transformers
from accelerate.utils import broadcast_object_list, set_seed

from .data import DataUnavailableError, load_stsb_validation, resolve_data_dir
from .evaluation import evaluate_task, stsb_spearman
from .freezing import format_report, parameter_report
from .model import ModelConfig, MultiTaskModel
from .tasks import BUILTIN_TASKS, get_task
from .tokenization import tokenize_split
from .training import NonFiniteLossError, TrainConfig, check_trainable, distributed_state, summarize, train

def parse_caps(text: str | None, tasks: list[str], option: str = "--max-train-samples") -> dict[str, int]:
    """'5000' caps every training task; 'ner=5000,sentiment=20000' caps each one; '' or 'all' caps none.

    A built-in task that is not being trained is ignored (so defaults work with --tasks ner alone).
    """
    if not text or text == "all":
        return {}
    caps = {}
    for part in text.split(","):
        task, _, number = part.rpartition("=")
        if task and task not in BUILTIN_TASKS:
            raise ValueError(f"{option}: unknown task {task!r}; known tasks: {', '.join(BUILTIN_TASKS)}")
        if not number.isdigit() or int(number) < 1:
            raise ValueError(f"{option}: {number!r} is not a positive integer")
        for name in [task] if task else tasks:
            if name in tasks:
                caps[name] = int(number)
    return caps


def add_settings(parser: argparse.ArgumentParser, settings: type, title: str) -> None:
    """One option per field of a settings dataclass (ModelConfig, TrainConfig), with its help and default."""
    group = parser.add_argument_group(title)
    types = typing.get_type_hints(settings)
    for f in dataclasses.fields(settings):
        default = f.metadata.get("cli_default", f.default)
        flag = "--" + f.name.replace("_", "-")
        if types[f.name] is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=f.metadata["help"])
        else:
            hint = next((t for t in typing.get_args(types[f.name]) if t is not type(None)), types[f.name])
            kind = hint if hint in (int, float, str) else str
            group.add_argument(flag, type=kind, default=default, help=f.metadata["help"])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mtl_utils.train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", default="ner,sentiment", help=f"comma-separated, of: {', '.join(BUILTIN_TASKS)}")
    p.add_argument("--data-dir", default=None, help="folder laid out like shared/data (default: $MTL_DATA_DIR, else the Hub)")
    p.add_argument("--output-dir", default="runs/default", help="where metrics.json, history.json, model/ and checkpoint/ go")
    p.add_argument("--max-train-samples", default=None,
                   help="per-task cap on training examples (a fixed random subset): N for every task, or TASK=N,...")
    p.add_argument("--max-eval-samples", type=int, default=None, help="cap on held-out examples (quick runs only)")
    p.add_argument("--no-stsb", action="store_true", help="skip the STS-B retention probe")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the interrupted run whose --output-dir was DIR, with its saved arguments")
    add_settings(p, ModelConfig, "model")
    add_settings(p, TrainConfig, "training")
    return p


def settings_from(args: argparse.Namespace, settings: type, **overrides):
    """The dataclass of `settings` filled from the parsed options of its fields."""
    return settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(settings)} | overrides)


# Settings a resumed run may change (`--resume DIR --skip-nonfinite`, after a NaN stopped it): they
# change how the run survives faults, not what it computes. Every other option comes from args.json.
RESUME_OVERRIDES = ("skip_nonfinite", "checkpoint_every", "keep_checkpoints", "quiet")


def resumed_args(given: argparse.Namespace, saved: dict, parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The arguments of a resumed run: those saved in its args.json (the defaults for options added
    since), with RESUME_OVERRIDES taken from the command line where given there."""
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
    if args.resume:
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
    # One process, or one of several (torchrun, accelerate launch): then only the main one writes
    # files (args.json here, checkpoints and history.json in train(), metrics.json and model/ below)
    # and prints; every process loads the data and trains.
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
    # No progress bars from transformers (loading, saving weights) or datasets: a run shows one bar,
    # training's own (none with --quiet).
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    started = time.perf_counter()

    set_seed(args.seed)  # the heads' (and adapters') initial weights: --seed decides them, not what ran before
    model = MultiTaskModel.from_config(model_config, specs)
    check_trainable(model, task_names)  # e.g. --freeze all: say so now, not after encoding the training set
    tokenizer = model.encoder.tokenizer
    log(format_report(parameter_report(model)))

    train_features, held_out = {}, {}
    for spec in specs:
        splits = spec.load(args.data_dir)
        train_split = splits["train"]
        if spec.name in caps and caps[spec.name] < len(train_split):
            train_split = train_split.shuffle(seed=args.seed).select(range(caps[spec.name]))
        train_features[spec.name] = tokenize_split(train_split, spec, tokenizer, args.max_length)
        for split_name in (name for name in ("validation", "test") if name in splits):
            split = splits[split_name]
            if args.max_eval_samples:
                split = split.select(range(min(args.max_eval_samples, len(split))))
            held_out[(spec.name, split_name)] = (split, tokenize_split(split, spec, tokenizer, args.max_length))
        capped = spec.name in per_epoch and per_epoch[spec.name] < len(train_split)  # else every example, each epoch
        per_epoch_note = f" ({per_epoch[spec.name]:,} per epoch)" if capped else ""
        log(f"{spec.name}: {len(train_split):,} training examples{per_epoch_note}; held out: "
              + ", ".join(f"{s} {len(held_out[(spec.name, s)][0]):,}" for s in ("validation", "test") if (spec.name, s) in held_out))
    stsb = None if args.no_stsb else load_stsb_validation(args.data_dir)

    validation = {task: held_out[(task, "validation")] for task in task_names if (task, "validation") in held_out}
    history = train(model, train_features, validation, config, stsb, args.output_dir, resume=bool(args.resume))

    # Final held-out scores: validation (as after the last epoch) and test where the split has labels,
    # on the whole splits, computed once by the main process (every process has the same weights);
    # the others wait in the broadcast, and every process returns the same metrics.
    metrics = {"command": "python -m mtl_utils.train " + " ".join(argv if argv is not None else sys.argv[1:]),
               "arguments": vars(args), "tasks": {}}
    if state.is_main_process:
        for (task, split_name), (split, features) in held_out.items():
            metrics["tasks"].setdefault(task, {})[split_name] = evaluate_task(model, task, split, features)
        if stsb is not None:
            metrics["stsb_spearman"] = stsb_spearman(model.encoder, stsb)
        metrics["train_seconds"] = sum(e["train_seconds"] for e in history["epochs"])
        metrics["total_seconds"] = time.perf_counter() - started
        metrics["train_examples"] = {task: len(f["input_ids"]) for task, f in train_features.items()}
        metrics["processes"] = state.num_processes

        model.save_pretrained(out / "model")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        for task, splits in metrics["tasks"].items():
            for split_name, m in splits.items():
                print(f"{task} {split_name}: {summarize({task: m}, model.tasks)}")
        if stsb is not None:
            print(f"STS-B validation Spearman: {metrics['stsb_spearman']:.4f}")
        print(f"wrote {out / 'metrics.json'} and {out / 'model'} ({metrics['total_seconds'] / 60:.1f} min)")
    return broadcast_object_list([metrics])[0]


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError, DataUnavailableError, NonFiniteLossError) as err:
        # Bad input, a NaN loss, a checkpoint that cannot be written or read (CheckpointError is a
        # ValueError): one clear line, not a traceback through torch.
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
