"""Train the multi-task model from the command line.

    python -m mtl_utils.train                          # defaults: NER + sentiment on real data
    python -m mtl_utils.train --max-train-samples 500 --epochs 1 --quiet
    accelerate launch -m mtl_utils.train ...           # several GPUs

Writes <output-dir>/metrics.json (held-out metrics per task), history.json and the saved model.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .backbone import DEFAULT_MODEL
from .data import DataUnavailableError, load_stsb_validation, load_task_data, resolve_data_dir
from .encoder import SentenceEncoder
from .evaluation import evaluate_task, stsb_spearman
from .freezing import apply_freezing, format_report, parameter_report, route_task
from .model import MultiTaskModel
from .pooling import check_pooling
from .tasks import BUILTIN_TASKS, get_task
from .tokenization import tokenize_split
from .training import TrainConfig, summarize, train

DEFAULTS = TrainConfig()


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mtl_utils.train", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--tasks", default="ner,sentiment", help="comma-separated: ner, sentiment")
    p.add_argument("--model", default=DEFAULT_MODEL, help="backbone: Hub id or local folder")
    p.add_argument("--pooling", default="mean", help="mean, cls or max")
    p.add_argument("--max-length", type=int, default=256, help="tokens per sentence (longer ones are truncated)")
    p.add_argument("--word-shape-dim", type=int, default=16, help="casing embedding for token heads (0 = off)")
    p.add_argument("--freeze", default="none", help="none, all, backbone, embeddings, bottom:K, head:TASK (comma-separated)")
    p.add_argument("--route", action="append", default=[], metavar="TASK:K", help="let TASK train only the top K layers")
    p.add_argument("--llrd-decay", type=float, default=DEFAULTS.llrd_decay, help="learning-rate factor per layer down (1 = uniform)")
    p.add_argument("--lr", type=float, default=DEFAULTS.lr, help="learning rate of the top layer")
    p.add_argument("--head-lr", type=float, default=DEFAULTS.head_lr)
    p.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay)
    p.add_argument("--warmup-ratio", type=float, default=DEFAULTS.warmup_ratio)
    p.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    p.add_argument("--sampler", default=DEFAULTS.sampler, help="proportional, temperature or round_robin")
    p.add_argument("--temperature", type=float, default=DEFAULTS.temperature)
    p.add_argument("--max-train-samples", default=None,
                   help="per-task cap on training examples (a fixed random subset): N for every task, or TASK=N,...")
    p.add_argument("--examples-per-epoch", default="sentiment=22450",
                   help="per-task examples per epoch, a new slice each epoch (3 x 22,450 covers SST-2's 67,349 once): "
                        "N or TASK=N,...; 'all' for every example every epoch")
    p.add_argument("--max-eval-samples", type=int, default=None, help="cap on held-out examples (quick runs only)")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    p.add_argument("--data-dir", default=None, help="folder laid out like shared/data (default: $MTL_DATA_DIR, else the Hub)")
    p.add_argument("--output-dir", default="runs/default")
    p.add_argument("--mixed-precision", default="no", help="no, bf16 or fp16 (GPU)")
    p.add_argument("--no-stsb", action="store_true", help="skip the STS-B retention probe")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the interrupted run whose --output-dir was DIR, with its saved arguments")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.resume:
        saved = Path(args.resume) / "args.json"
        if not saved.is_file():
            raise FileNotFoundError(f"--resume {args.resume}: {saved.name} not found there; "
                                    "is it the --output-dir of an earlier `python -m mtl_utils.train` run?")
        resume_dir = args.resume
        args = argparse.Namespace(**json.loads(saved.read_text()))
        args.output_dir, args.resume = resume_dir, resume_dir
    task_names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    specs = [get_task(name) for name in task_names]
    caps = parse_caps(args.max_train_samples, task_names)
    per_epoch = parse_caps(args.examples_per_epoch, task_names, "--examples-per-epoch")
    # Check every argument before the slow parts start.
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, head_lr=args.head_lr,
                         llrd_decay=args.llrd_decay, weight_decay=args.weight_decay, warmup_ratio=args.warmup_ratio,
                         sampler=args.sampler, temperature=args.temperature, seed=args.seed,
                         examples_per_epoch=per_epoch or None,
                         mixed_precision=args.mixed_precision, quiet=args.quiet)
    check_pooling(args.pooling)
    resolve_data_dir(args.data_dir)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not args.resume:
        (out / "args.json").write_text(json.dumps(vars(args), indent=2))
    if args.quiet:
        import datasets
        import transformers
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
    started = time.perf_counter()

    encoder = SentenceEncoder.from_pretrained(args.model, pooling=args.pooling, max_length=args.max_length)
    model = MultiTaskModel(encoder, specs, word_shape_dim=args.word_shape_dim)
    apply_freezing(model, args.freeze)
    for route in args.route:
        task, _, k = route.partition(":")
        route_task(model, task, int(k) if k.isdigit() else k)
    print(format_report(parameter_report(model)))

    train_features, held_out = {}, {}
    for spec in specs:
        splits = load_task_data(spec.name, args.data_dir)
        train_split = splits["train"]
        if spec.name in caps and caps[spec.name] < len(train_split):
            train_split = train_split.shuffle(seed=args.seed).select(range(caps[spec.name]))
        train_features[spec.name] = tokenize_split(train_split, spec, encoder.tokenizer, args.max_length)
        for split_name in ("validation", "test"):
            if split_name in splits:
                split = splits[split_name]
                if args.max_eval_samples:
                    split = split.select(range(min(args.max_eval_samples, len(split))))
                held_out[(spec.name, split_name)] = (split, tokenize_split(split, spec, encoder.tokenizer, args.max_length))
        per_epoch_note = f" ({per_epoch[spec.name]:,} per epoch)" if spec.name in per_epoch else ""
        print(f"{spec.name}: {len(train_split):,} training examples{per_epoch_note}; held out: "
              + ", ".join(f"{s} {len(held_out[(spec.name, s)][0]):,}" for s in ("validation", "test") if (spec.name, s) in held_out))
    stsb = None if args.no_stsb else load_stsb_validation(args.data_dir)

    validation = {task: held_out[(task, "validation")] for task in task_names if (task, "validation") in held_out}
    history = train(model, train_features, validation, config, stsb, args.output_dir, resume=bool(args.resume))

    # Final held-out scores: validation (as after the last epoch) and test where the split has labels.
    metrics = {"command": "python -m mtl_utils.train " + " ".join(argv if argv is not None else sys.argv[1:]),
               "arguments": vars(args), "tasks": {}}
    for (task, split_name), (split, features) in held_out.items():
        metrics["tasks"].setdefault(task, {})[split_name] = evaluate_task(model, task, split, features)
    if stsb is not None:
        metrics["stsb_spearman"] = stsb_spearman(model.encoder, stsb)
    metrics["train_seconds"] = sum(e["train_seconds"] for e in history["epochs"])
    metrics["total_seconds"] = time.perf_counter() - started
    metrics["train_examples"] = {task: len(f["input_ids"]) for task, f in train_features.items()}

    model.save_pretrained(out / "model")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    for task, splits in metrics["tasks"].items():
        for split_name, m in splits.items():
            print(f"{task} {split_name}: {summarize({task: m})}")
    if stsb is not None:
        print(f"STS-B validation Spearman: {metrics['stsb_spearman']:.4f}")
    print(f"wrote {out / 'metrics.json'} and {out / 'model'} ({metrics['total_seconds'] / 60:.1f} min)")
    return metrics


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError, DataUnavailableError) as err:
        # Bad input: one clear line, not a traceback through torch.
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
