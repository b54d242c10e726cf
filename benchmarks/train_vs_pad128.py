"""Training throughput on CoNLL-2003 NER: length-grouped batches with dynamic padding (what mtl_utils does)
vs random batches padded to 128 tokens (what many tutorials do). Same model, loop, optimizer and batch size.

    python benchmarks/train_vs_pad128.py [--steps 30 --repeats 3 --batch-size 32]
"""
from __future__ import annotations

import argparse

import torch

from mtl_utils.data import load_conll2003
from mtl_utils.encoder import SentenceEncoder
from mtl_utils.llrd import llrd_parameter_groups
from mtl_utils.model import MultiTaskModel
from mtl_utils.sampling import length_grouped_batches
from mtl_utils.tasks import BUILTIN_TASKS
from mtl_utils.tokenization import IGNORE_INDEX, pad_batch, tokenize_split
from mtl_utils.training import make_adamw
from timing import median_seconds, report

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=32)
args = parser.parse_args()

spec = BUILTIN_TASKS["ner"]
encoder = SentenceEncoder.from_pretrained()
model = MultiTaskModel(encoder, [spec])
optimizer = make_adamw(llrd_parameter_groups(model, 2e-4, 1e-3, 0.9, 0.01), 2e-4)
features = tokenize_split(load_conll2003()["train"], spec, encoder.tokenizer, max_length=128)
keys = ["input_ids", "attention_mask", "word_shape_ids", "labels"]
lengths = [len(ids) for ids in features["input_ids"]]
generator = torch.Generator().manual_seed(0)
n = args.steps * args.batch_size


def batch_of(rows: list[int], pad_to: int | None = None) -> dict[str, torch.Tensor]:
    examples = [{k: features[k][i] for k in keys} for i in rows]
    if pad_to is not None:  # the fixed-length habit: every sequence padded to pad_to tokens
        fill = {"input_ids": encoder.tokenizer.pad_token_id, "attention_mask": 0, "word_shape_ids": 0, "labels": IGNORE_INDEX}
        examples = [{k: e[k] + [fill[k]] * (pad_to - len(e[k])) for k in keys} for e in examples]
    return pad_batch(examples, encoder.tokenizer.pad_token_id)


grouped = [batch_of(rows) for rows in length_grouped_batches(lengths, args.batch_size, generator)[: args.steps]]
random_rows = torch.randperm(len(lengths), generator=generator)[:n].tolist()
padded = [batch_of(random_rows[i:i + args.batch_size], pad_to=128) for i in range(0, n, args.batch_size)]


def train_steps(batches: list[dict]) -> None:
    model.train()
    for batch in batches:
        model("ner", **batch)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


t_grouped = median_seconds(lambda: train_steps(grouped), args.repeats)
t_padded = median_seconds(lambda: train_steps(padded), args.repeats)
tokens = {name: sum(b["input_ids"].numel() for b in bs) / len(bs) for name, bs in (("grouped", grouped), ("pad128", padded))}
print(f"length-grouped + dynamic padding: {n / t_grouped:.1f} sentences/s ({tokens['grouped']:.0f} tokens per batch); "
      f"padded to 128: {n / t_padded:.1f} sentences/s ({tokens['pad128']:.0f} tokens per batch)")
report({"train_vs_pad128_ratio": t_padded / t_grouped},
       {"grouped_sentences_per_s": n / t_grouped, "pad128_sentences_per_s": n / t_padded,
        "tokens_per_batch": tokens, "steps": args.steps, "batch_size": args.batch_size, "repeats": args.repeats,
        "torch_threads": torch.get_num_threads()})
