"""A development split carved from the training data, for choosing settings (learning rate, epochs, lambda,
context) without looking at the sets the book reports. Seeded, so every run of every setting sees the same one.
Rows that share a source stay on one side: whole CoNLL-2003 documents (neighbouring sentences share entities and
context), all the phrases of an SST-2 sentence (GLUE's SST-2 trains on phrases, which repeat inside their
sentence); a split with neither is stratified by label, else drawn by row."""
from __future__ import annotations

import numpy as np
from datasets import Dataset


def check_fraction(fraction: float) -> float:
    if not 0 < fraction < 1:
        raise ValueError(f"dev fraction must be between 0 and 1 (exclusive), got {fraction}")
    return fraction


def carve_dev(split: Dataset, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset, str]:
    """(training rows left, development rows, what was drawn: "document", "source_sentence", "label" or
    "row"). Rows
    keep the file's order on both sides; the draw depends on `seed` and the data alone."""
    check_fraction(fraction)
    rng = np.random.default_rng(seed)
    by = next((column for column in ("document", "source_sentence", "label") if column in split.column_names), "row")
    keys = np.array(split[by] if by != "row" else range(len(split)))
    if by == "label":  # the same fraction of every label, drawn within it
        dev = [i for value in sorted(set(keys)) for i in draw(rng, np.flatnonzero(keys == value), fraction)]
    else:  # whole documents, sentences (or rows), drawn among them
        chosen = draw(rng, np.unique(keys), fraction)
        dev = np.flatnonzero(np.isin(keys, chosen)).tolist()
    dev_rows = set(dev)
    train_rows = [i for i in range(len(split)) if i not in dev_rows]
    if not dev_rows or not train_rows:
        raise ValueError(f"dev fraction {fraction} of {len(set(keys.tolist()))} {by}s leaves one side empty")
    return split.select(train_rows), split.select(sorted(dev_rows)), by


def draw(rng: np.random.Generator, units: np.ndarray, fraction: float) -> list:
    """round(fraction * len(units)) of `units`, at random."""
    return rng.permutation(units)[:round(fraction * len(units))].tolist()
