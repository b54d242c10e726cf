"""bf16 autocast against fp32 on this CPU: NER training steps and sentence encoding, same model and data.

Measured only where bf16 is fast here (`mtl_utils.precision.cpu_bf16_is_fast`: AVX512-BF16 or AMX);
elsewhere the CPU emulates bf16, many times slower, and training falls back to fp32: the script then
records why, with one bf16-vs-fp32 matrix product, and measures nothing else (`--force` measures anyway).
The arms alternate in one process, median of the repeats after a warm-up.

    python benchmarks/train_bf16.py [--steps 30 --repeats 3 --batch-size 32] [--force]
"""
from __future__ import annotations

import contextlib
import statistics
import sys
import time

import torch

from mtl_utils.data import load_sst2
from mtl_utils.precision import cpu_bf16_is_fast, matmul_seconds
from ner_training import grouped_batches, ner_setup, parse_arguments, train_steps
from timing import machine, report

force = "--force" in sys.argv
if force:
    sys.argv.remove("--force")
args = parse_arguments(__doc__.split("\n")[0])


matmul = {name: 2 * 512 ** 3 / matmul_seconds(dtype, size=512, repeats=1) / 1e9
          for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
names = ("train_bf16_vs_fp32_ratio", "encode_bf16_vs_fp32_ratio")
if not cpu_bf16_is_fast() and not force:
    print(f"this CPU has no fast bf16 (512 x 512 matmul: bf16 {matmul['bf16']:.1f} vs fp32 {matmul['fp32']:.1f} "
          "GFLOP/s): training falls back to fp32 here; nothing measured (--force to measure anyway)")
    report({name: None for name in names},
           {"not_measured": "this CPU has no fast bf16 units: bf16 is emulated and training falls back to fp32",
            "matmul_512_gflop_per_s": matmul, **machine()})
    sys.exit(0)

encoder, model, optimizer, features = ner_setup()
keys = ["input_ids", "attention_mask", "word_shape_ids", "labels"]
batches = grouped_batches(features, keys, args.batch_size, args.steps, encoder.tokenizer.pad_token_id)
sentences = list(load_sst2()["validation"]["text"])


def bf16(enabled: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


arms = {"fp32": False, "bf16": True}
train_times = {name: [] for name in arms}
encode_times = {name: [] for name in arms}
for round_ in range(args.repeats + 1):  # round 0: warm-up
    for name, enabled in arms.items():
        with bf16(enabled):
            t_train = timed(lambda: train_steps(model, optimizer, batches))
            t_encode = timed(lambda: encoder.encode(sentences, batch_size=128))
        if round_:
            train_times[name].append(t_train)
            encode_times[name].append(t_encode)
train = {name: statistics.median(t) for name, t in train_times.items()}
encode = {name: statistics.median(t) for name, t in encode_times.items()}
print(f"training {train['fp32']:.2f} s fp32 vs {train['bf16']:.2f} s bf16 per {args.steps} steps; encoding "
      f"{len(sentences)} sentences {encode['fp32']:.2f} s vs {encode['bf16']:.2f} s")
report({"train_bf16_vs_fp32_ratio": train["fp32"] / train["bf16"],
        "encode_bf16_vs_fp32_ratio": encode["fp32"] / encode["bf16"]},
       {"train_seconds": train, "encode_seconds": encode, "encode_sentences": len(sentences),
        "matmul_512_gflop_per_s": matmul, "forced": force, "steps": args.steps, "batch_size": args.batch_size,
        "repeats": args.repeats, **machine()})
