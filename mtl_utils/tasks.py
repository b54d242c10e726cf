"""What a task is: a name, a kind (see task_kinds.py), its label names and where its data comes from.

`BUILTIN_TASKS` is the one registry of tasks by name; a new task of a known kind is an entry there and in TASK_LOADERS.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from datasets import DatasetDict

from .data import CONLL_NER_LABELS, SNIPS_INTENT_LABELS, SST2_LABELS, load_conll2003, load_snips_intent, load_sst2
from .task_kinds import TaskKind, get_task_kind


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: str  # a registered task kind: "sentence" or "token" (see task_kinds.py)
    labels: tuple[str, ...]
    load: Callable[..., DatasetDict] | None = field(default=None, compare=False, repr=False)  # (data_dir) -> splits

    def __post_init__(self) -> None:
        try:
            get_task_kind(self.kind)
        except ValueError as err:
            raise ValueError(f"task {self.name!r}: {err}") from None
        if len(self.labels) < 2:
            raise ValueError(f"task {self.name!r}: needs at least two labels, got {list(self.labels)}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"task {self.name!r}: duplicate label names in {list(self.labels)}")
        object.__setattr__(self, "labels", tuple(self.labels))

    @property
    def task_kind(self) -> TaskKind:
        return get_task_kind(self.kind)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def load_data(self, data_dir: str | os.PathLike | None = None) -> DatasetDict:
        if (load := self.load or TASK_LOADERS.get(self.name)) is None:
            raise ValueError(f"task {self.name!r}: no data loader is known for it (known: {', '.join(TASK_LOADERS)})")
        return load(data_dir)

    def label_id(self, label: str) -> int:
        try:
            return self.labels.index(label)
        except ValueError:
            raise ValueError(f"task {self.name!r}: label {label!r} is not in its label set {list(self.labels)}") from None


TASK_LOADERS = {"ner": load_conll2003, "sentiment": load_sst2, "intent": load_snips_intent}  # by task name

BUILTIN_TASKS: dict[str, TaskSpec] = {"ner": TaskSpec("ner", "token", tuple(CONLL_NER_LABELS)),
                                      "sentiment": TaskSpec("sentiment", "sentence", tuple(SST2_LABELS))}

# Not built in (the CLI does not train it): the task notebook 05 adds to a trained model.
SNIPS_INTENT_TASK = TaskSpec("intent", "sentence", tuple(SNIPS_INTENT_LABELS))


def get_task(name: str) -> TaskSpec:
    if name not in BUILTIN_TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(BUILTIN_TASKS)}")
    return BUILTIN_TASKS[name]
