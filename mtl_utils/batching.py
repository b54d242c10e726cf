"""Inference in batches of similar length: sort by length, batch, run, put the results back in input order.
Sorted batches carry little padding, which is most of the speed of encoding and evaluation on a CPU."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .tokenization import pad_batch


def map_in_length_order(lengths: Sequence[int], batch_size: int, run: Callable[[list[int]], Sequence],
                        progress: str | None = None) -> list:
    """`run(rows)`: one output per row of a length-sorted batch, returned in input order (`progress`: tqdm bar)."""
    outputs: list = [None] * len(lengths)
    order = np.argsort([-n for n in lengths], kind="stable").tolist()  # longest first, ties in input order
    for start in tqdm(range(0, len(order), batch_size), desc=progress, disable=progress is None):
        rows = order[start:start + batch_size]
        for row, output in zip(rows, run(rows)):
            outputs[row] = output
    return outputs


def run_in_eval(module: torch.nn.Module, features: dict[str, list], batch_size: int,
                run: Callable[[list[int]], Sequence], progress: str | None = None) -> list:
    """map_in_length_order over the rows of `features` (by input_ids length), `module` in eval mode meanwhile."""
    was_training = module.training
    module.eval()
    outputs = map_in_length_order([len(ids) for ids in features["input_ids"]], batch_size, run, progress)
    module.train(was_training)
    return outputs


@torch.no_grad()
def map_backbone(model, features: dict[str, list], batch_size: int, read: Callable) -> list:
    """`read(token_states, attention_mask)` (one output per row) of every length-sorted batch of `features`,
    one backbone pass each, in eval mode, without a task (no adapter, no routing)."""
    device = next(model.parameters()).device

    def run(rows: list[int]) -> Sequence:
        batch = pad_batch(select(features, rows, ("input_ids", "attention_mask")), model.encoder.tokenizer.pad_token_id)
        mask = batch["attention_mask"].to(device)
        return read(model.token_states(None, batch["input_ids"].to(device), mask), mask)

    return run_in_eval(model, features, batch_size, run)


def select(features: dict[str, list], rows: Sequence[int], keys: Sequence[str]) -> list[dict]:
    keys = [k for k in keys if k in features]
    return [{k: features[k][i] for k in keys} for i in rows]
