"""Training throughput on CoNLL-2003 NER: length-grouped batches with dynamic padding (what mtl_utils does)
vs random batches padded to 128 tokens (what many tutorials do). Same model, loop, optimizer and batch size.

    python benchmarks/train_vs_pad128.py [--steps 30 --repeats 3 --batch-size 32]
"""
from __future__ import annotations

import torch

from mtl_utils.tokenization import IGNORE_INDEX, pad_batch
from ner_training import grouped_batches, ner_setup, parse_arguments, train_steps
from timing import median_seconds, report

args = parse_arguments(__doc__.split("\n")[0])
encoder, model, optimizer, features = ner_setup(max_length=128)
keys = ["input_ids", "attention_mask", "word_shape_ids", "labels"]
n = args.steps * args.batch_size


def batch_of(rows: list[int], pad_to: int | None = None) -> dict[str, torch.Tensor]:
    examples = [{k: features[k][i] for k in keys} for i in rows]
    if pad_to is not None:  # the fixed-length habit: every sequence padded to pad_to tokens
        fill = {"input_ids": encoder.tokenizer.pad_token_id, "attention_mask": 0, "word_shape_ids": 0, "labels": IGNORE_INDEX}
        examples = [{k: e[k] + [fill[k]] * (pad_to - len(e[k])) for k in keys} for e in examples]
    return pad_batch(examples, encoder.tokenizer.pad_token_id)


grouped = grouped_batches(features, keys, args.batch_size, args.steps, encoder.tokenizer.pad_token_id)
random_rows = torch.randperm(len(features["input_ids"]), generator=torch.Generator().manual_seed(1))[:n].tolist()
padded = [batch_of(random_rows[i:i + args.batch_size], pad_to=128) for i in range(0, n, args.batch_size)]
t_grouped = median_seconds(lambda: train_steps(model, optimizer, grouped), args.repeats)
t_padded = median_seconds(lambda: train_steps(model, optimizer, padded), args.repeats)
tokens = {name: sum(b["input_ids"].numel() for b in bs) / len(bs) for name, bs in (("grouped", grouped), ("pad128", padded))}
print(f"length-grouped + dynamic padding: {n / t_grouped:.1f} sentences/s ({tokens['grouped']:.0f} tokens per batch); "
      f"padded to 128: {n / t_padded:.1f} sentences/s ({tokens['pad128']:.0f} tokens per batch)")
report({"train_vs_pad128_ratio": t_padded / t_grouped},
       {"grouped_sentences_per_s": n / t_grouped, "pad128_sentences_per_s": n / t_padded,
        "tokens_per_batch": tokens, "steps": args.steps, "batch_size": args.batch_size, "repeats": args.repeats,
        "torch_threads": torch.get_num_threads()})
