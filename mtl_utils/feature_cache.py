"""Features of a frozen backbone, computed once.

When nothing below the heads trains, every epoch would run the backbone over the same sentences
and get the same token states. So run it once, keep what each head reads (the pooled vector for a
sentence task, the token states for a token task) and train the heads on that cache.

A frozen backbone runs without dropout (`train()` puts it in eval mode), so the cached features are
exactly what re-encoding would give every epoch: caching changes the speed, not the result.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from .tokenization import IGNORE_INDEX, pad_batch

if TYPE_CHECKING:
    from .model import MultiTaskModel


def backbone_is_frozen(model: "MultiTaskModel") -> bool:
    """True when no parameter of the encoder is trainable (the freezing scenarios "backbone" and "all")."""
    return not any(p.requires_grad for p in model.encoder.parameters())


@torch.no_grad()
def cache_head_inputs(model: "MultiTaskModel", task: str, features: dict[str, list],
                      batch_size: int = 128) -> list[torch.Tensor]:
    """Per example, in order: the tensor `task`'s head reads, on the CPU ((hidden,) or (tokens, hidden))."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = np.argsort([-len(ids) for ids in features["input_ids"]], kind="stable")  # similar lengths, little padding
    cached: list[torch.Tensor | None] = [None] * len(order)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = pad_batch([{k: features[k][i] for k in ("input_ids", "attention_mask")} for i in rows],
                          model.encoder.tokenizer.pad_token_id)
        mask = batch["attention_mask"].to(device)
        states = model.token_states(None, batch["input_ids"].to(device), mask)
        head_input = model.head_input(task, states, mask).float().cpu()
        for j, i in enumerate(rows):
            # clone: a slice would keep the whole padded batch alive
            cached[i] = head_input[j].clone() if head_input.dim() == 2 else head_input[j, :int(mask[j].sum())].clone()
    model.train(was_training)
    return cached


class CachedExamples(torch.utils.data.Dataset):
    """Cached head inputs of several tasks, with their labels (and word shapes), indexed by (task, row).

    Labels and word shapes become tensors once, here, so that a batch is only stacked or padded:
    with the backbone gone from the step, python-side batch building is a large part of what is left.
    """

    def __init__(self, cache: dict[str, list[torch.Tensor]], features: dict[str, dict[str, list]]):
        self.examples: dict[str, list[dict[str, torch.Tensor]]] = {}
        for task, head_inputs in cache.items():
            columns = [k for k in ("labels", "word_shape_ids") if k in features[task]]
            self.examples[task] = [{"head_input": head_input, **{k: torch.tensor(features[task][k][row]) for k in columns}}
                                   for row, head_input in enumerate(head_inputs)]

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.examples.values())

    def __getitem__(self, index: tuple[str, int]) -> tuple[str, dict]:
        task, row = index
        return task, self.examples[task][row]


def pad_cached_batch(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack sentence vectors, or pad token states with zeros to the longest sentence (labels with -100)."""
    if examples[0]["head_input"].dim() == 1:
        return {"head_input": torch.stack([e["head_input"] for e in examples]),
                "labels": torch.stack([torch.as_tensor(e["labels"]) for e in examples])}
    padding = {"head_input": 0.0, "labels": IGNORE_INDEX, "word_shape_ids": 0}
    return {key: torch.nn.utils.rnn.pad_sequence([torch.as_tensor(e[key]) for e in examples], batch_first=True,
                                                 padding_value=value)
            for key, value in padding.items() if key in examples[0]}
