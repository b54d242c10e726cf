"""Inference in batches of similar length: sort by length, batch, run, put the results back in order.

Sorted batches carry little padding, which is most of the speed of encoding and evaluation on a CPU;
the caller sees its outputs in input order, as if every sentence had been run alone.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from tqdm.auto import tqdm


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Row indices cut into batches, longest first (ties keep input order)."""
    order = np.argsort([-n for n in lengths], kind="stable").tolist()
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def map_in_length_order(lengths: Sequence[int], batch_size: int, run: Callable[[list[int]], Sequence],
                        progress: str | None = None) -> list:
    """`run(rows)` returns one output per row of a length-sorted batch; the outputs come back in input order.

    `progress` names a tqdm bar (None: no bar).
    """
    outputs: list = [None] * len(lengths)
    batches = length_sorted_batches(lengths, batch_size)
    for rows in tqdm(batches, desc=progress, disable=progress is None):
        for row, output in zip(rows, run(rows)):
            outputs[row] = output
    return outputs


def select(features: dict[str, list], rows: Sequence[int], keys: Sequence[str]) -> list[dict]:
    """The examples at `rows`, each a dict of the `keys` present in `features`."""
    keys = [k for k in keys if k in features]
    return [{k: features[k][i] for k in keys} for i in rows]
