"""A compiled training step (`torch.compile`, inductor) against eager PyTorch on CoNLL-2003 NER: the
same model, length-grouped batches (a new sequence length almost every batch) and fused AdamW.

The model is compiled with `dynamic=True`, so that the batches' changing lengths are one symbolic size
rather than one compilation each; the script counts the graphs compiled. The arms alternate in one
process (median of the repeats after the compiling round); the compile time is the compiling round's
time minus an eager round's, and `pays_back_after_steps` says after how many steps it is paid back
(none if the compiled step is not faster).

    python benchmarks/train_compiled.py [--steps 30 --repeats 3 --batch-size 32]
"""
from __future__ import annotations

import statistics
import time

import torch
from torch._dynamo.utils import counters

from ner_training import grouped_batches, ner_setup, parse_arguments, train_steps
from timing import machine, report

DEFAULT_RUN_STEPS_PER_EPOCH = 1141  # results/default/history.json: 3,423 steps in 3 epochs

args = parse_arguments(__doc__.split("\n")[0])
encoder, model, optimizer, features = ner_setup()
keys = ["input_ids", "attention_mask", "word_shape_ids", "labels"]
batches = grouped_batches(features, keys, args.batch_size, args.steps, encoder.tokenizer.pad_token_id)
compiled = torch.compile(model, dynamic=True)

train_steps(model, optimizer, batches)  # eager warm-up
start = time.perf_counter()
train_steps(compiled, optimizer, batches)  # compiles (once per graph), then runs
first_compiled_round = time.perf_counter() - start
times = {"eager": [], "compiled": []}
for _ in range(args.repeats):
    for name, module in (("eager", model), ("compiled", compiled)):
        start = time.perf_counter()
        train_steps(module, optimizer, batches)
        times[name].append(time.perf_counter() - start)
seconds = {name: statistics.median(t) for name, t in times.items()}
compile_seconds = first_compiled_round - seconds["eager"]
saved_per_step = (seconds["eager"] - seconds["compiled"]) / args.steps
pays_after = compile_seconds / saved_per_step if saved_per_step > 0 else None
graphs = counters["stats"]["unique_graphs"]
print(f"eager {seconds['eager']:.2f} s, compiled {seconds['compiled']:.2f} s per {args.steps} steps; compiling "
      f"{compile_seconds:.0f} s, {graphs} graphs for {len({b['input_ids'].shape[1] for b in batches})} lengths; "
      + (f"paid back after {pays_after:.0f} steps" if pays_after else "never paid back"))
report({"train_compiled_vs_eager_ratio": seconds["eager"] / seconds["compiled"]},
       {"eager_seconds": seconds["eager"], "compiled_seconds": seconds["compiled"], "seconds_per_repeat": times,
        "compile_seconds": compile_seconds, "graphs_compiled": graphs,
        "batch_lengths": sorted({b["input_ids"].shape[1] for b in batches}),
        "pays_back_after_steps": pays_after, "default_run_steps_per_epoch": DEFAULT_RUN_STEPS_PER_EPOCH,
        "steps": args.steps, "batch_size": args.batch_size, "repeats": args.repeats, **machine()})
