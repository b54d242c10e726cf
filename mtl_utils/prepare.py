"""One data path: each task's data loaded, subset and tokenised alike for the CLI, the notebooks and interpolation."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from .data import load_stsb_validation
from .selection import carve_dev
from .tasks import TaskSpec
from .tokenization import tokenize_split


@dataclass
class PreparedTasks:
    """Training splits and features by task; held-out (split, features) by split name ("dev" where carved), then
    task; STS-B pairs; per task, how its dev split was drawn (selection.carve_dev) and its rows, if one was."""
    train_splits: dict[str, Dataset]
    train_features: dict[str, dict[str, list]]
    held_out: dict[str, dict[str, tuple[Dataset, dict[str, list]]]]
    stsb_pairs: Dataset | None = None
    dev_carved: dict[str, dict] = field(default_factory=dict)


def first(split: Dataset, n: int | None) -> Dataset:
    """The first `n` rows (None or 0: all of them): held-out caps keep the data's own order."""
    return split.select(range(min(n, len(split)))) if n else split


def prepare_tasks(specs: list[TaskSpec], tokenizer: PreTrainedTokenizerBase, max_length: int,
                  data_dir: str | os.PathLike | None = None, splits: tuple[str, ...] = ("train", "validation", "test"),
                  max_train: int | dict[str, int] | None = None, max_eval: int | None = None, seed: int = 0,
                  stsb: bool = False, max_stsb: int | None = None, context: int = 0,
                  dev_fraction: float | None = None, dev_seed: int = 0) -> PreparedTasks:
    """Load each task's data (see data.resolve_data_dir), add document context (`context` sentences a side, token
    tasks) and tokenise the `splits` asked for. `dev_fraction`: a "dev" split carved from training (selection.py)
    before any cap. Training: `shuffle(seed).select(range(cap))` where a cap (one for all tasks, or {task: cap}) is
    below the split's size, else the whole split in file order. Held-out splits and STS-B pairs (`stsb`): the
    `first` max_eval / max_stsb rows."""
    caps = {spec.name: max_train for spec in specs} if isinstance(max_train, int) else dict(max_train or {})
    prepared = PreparedTasks({}, {}, {}, first(load_stsb_validation(data_dir), max_stsb) if stsb else None)
    for spec in specs:
        loaded = dict(spec.load_data(data_dir))
        if "train" in splits and dev_fraction is not None:
            try:
                loaded["train"], loaded["dev"], drawn_by = carve_dev(loaded["train"], dev_fraction, dev_seed)
            except ValueError as err:
                raise ValueError(f"task {spec.name!r}: {err}") from None
            prepared.dev_carved[spec.name] = {"drawn_by": drawn_by, "rows": len(loaded["dev"])}
        # After carving: a sentence's context never comes from the other side of the split.
        loaded = {name: spec.task_kind.add_context(split, context) for name, split in loaded.items()}
        if "train" in splits:
            train = loaded["train"]
            if spec.name in caps and caps[spec.name] < len(train):
                train = train.shuffle(seed=seed).select(range(caps[spec.name]))
            prepared.train_splits[spec.name] = train
            prepared.train_features[spec.name] = tokenize_split(train, spec, tokenizer, max_length)
        for name in (name for name in ("dev", "validation", "test") if name in splits + ("dev",) and name in loaded):
            rows = first(loaded[name], max_eval)
            prepared.held_out.setdefault(name, {})[spec.name] = rows, tokenize_split(rows, spec, tokenizer, max_length)
    return prepared
