"""Features of a frozen backbone, computed once: every epoch would get the same token states, so the heads
train on what they read (a pooled vector, a token task's labelled states). The frozen backbone runs without
dropout (`train()`), so caching changes the speed, not the computation (token-head dropout: fewer rows)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .batching import map_backbone

if TYPE_CHECKING:
    from .model import MultiTaskModel
    from .task_kinds import TaskKind


def backbone_is_frozen(model: "MultiTaskModel") -> bool:
    """No encoder parameter trains (the freezing scenarios "backbone" and "all")."""
    return not any(p.requires_grad for p in model.encoder.parameters())


def cache_head_inputs(model: "MultiTaskModel", task: str, features: dict[str, list],
                      batch_size: int = 128) -> list[torch.Tensor]:
    """Per example, in order: the tensor `task`'s head reads, on the CPU ((hidden,) or (tokens, hidden))."""
    kind = model.tasks[task].task_kind
    return map_backbone(model, features, batch_size, lambda states, mask: kind.cache_rows(
        model.head_input(task, states, mask).float().cpu(), mask.cpu()))


class CachedExamples(torch.utils.data.Dataset):
    """Cached head inputs of several tasks with their other columns, indexed by (task, row), each as its kind
    keeps it. Columns become tensors once, here: without the backbone, batch building is much of a step."""

    def __init__(self, cache: dict[str, list[torch.Tensor]], features: dict[str, dict[str, list]],
                 kinds: dict[str, "TaskKind"]):
        self.examples: dict[str, list[dict[str, torch.Tensor]]] = {}
        for task, head_inputs in cache.items():
            kind, columns = kinds[task], features[task]
            keys = [k for k in kind.batch_keys if k in columns and k not in ("input_ids", "attention_mask")]
            self.examples[task] = [kind.cached_example(head_input, {k: torch.tensor(columns[k][row]) for k in keys})
                                   for row, head_input in enumerate(head_inputs)]

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.examples.values())

    def __getitem__(self, index: tuple[str, int]) -> tuple[str, dict]:
        task, row = index
        return task, self.examples[task][row]
