"""Features of a frozen backbone, computed once.

When nothing below the heads trains, every epoch would run the backbone over the same sentences
and get the same token states. So run it once, keep what each head reads (the pooled vector for a
sentence task, the states of the labelled tokens for a token task) and train the heads on that cache.

A frozen backbone runs without dropout (`train()` puts it in eval mode), so the cached features are
exactly what re-encoding would give every epoch: caching changes the speed, not the computation. (A
token head's dropout then draws masks for the labelled rows alone: other random draws, same model.)
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .batching import map_backbone

if TYPE_CHECKING:
    from .model import MultiTaskModel
    from .task_kinds import TaskKind


def backbone_is_frozen(model: "MultiTaskModel") -> bool:
    """True when no parameter of the encoder is trainable (the freezing scenarios "backbone" and "all")."""
    return not any(p.requires_grad for p in model.encoder.parameters())


def cache_head_inputs(model: "MultiTaskModel", task: str, features: dict[str, list],
                      batch_size: int = 128) -> list[torch.Tensor]:
    """Per example, in order: the tensor `task`'s head reads, on the CPU ((hidden,) or (tokens, hidden))."""
    kind = model.tasks[task].task_kind
    return map_backbone(model, features, batch_size,
                        lambda states, mask: kind.cache_rows(model.head_input(task, states, mask).float().cpu(), mask.cpu()))


class CachedExamples(torch.utils.data.Dataset):
    """Cached head inputs of several tasks, with their labels (and word shapes), indexed by (task, row);
    each example as its task's kind keeps it (`TaskKind.cached_example`).

    Labels and word shapes become tensors once, here, so that a batch is only stacked or concatenated:
    with the backbone gone from the step, python-side batch building is a large part of what is left.
    """

    def __init__(self, cache: dict[str, list[torch.Tensor]], features: dict[str, dict[str, list]],
                 kinds: dict[str, "TaskKind"]):
        self.examples: dict[str, list[dict[str, torch.Tensor]]] = {}
        for task, head_inputs in cache.items():
            kind = kinds[task]
            columns = [k for k in kind.batch_keys if k in features[task] and k not in ("input_ids", "attention_mask")]
            self.examples[task] = [kind.cached_example(head_input, {k: torch.tensor(features[task][k][row]) for k in columns})
                                   for row, head_input in enumerate(head_inputs)]

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.examples.values())

    def __getitem__(self, index: tuple[str, int]) -> tuple[str, dict]:
        task, row = index
        return task, self.examples[task][row]
