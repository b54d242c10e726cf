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
    """Cached head inputs of several tasks, with their labels (and word shapes), indexed by (task, row)."""

    def __init__(self, cache: dict[str, list[torch.Tensor]], features: dict[str, dict[str, list]]):
        self.cache = cache
        self.features = features

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.cache.values())

    def __getitem__(self, index: tuple[str, int]) -> tuple[str, dict]:
        task, row = index
        example = {"head_input": self.cache[task][row], "labels": self.features[task]["labels"][row]}
        if "word_shape_ids" in self.features[task]:
            example["word_shape_ids"] = self.features[task]["word_shape_ids"][row]
        return task, example


def pad_cached_batch(examples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack sentence vectors, or pad token states with zeros to the longest sentence (labels with -100)."""
    inputs = [e["head_input"] for e in examples]
    if inputs[0].dim() == 1:
        return {"head_input": torch.stack(inputs), "labels": torch.tensor([e["labels"] for e in examples])}
    batch = {"head_input": torch.nn.utils.rnn.pad_sequence(inputs, batch_first=True),
             "labels": torch.nn.utils.rnn.pad_sequence([torch.tensor(e["labels"]) for e in examples],
                                                       batch_first=True, padding_value=IGNORE_INDEX)}
    if "word_shape_ids" in examples[0]:
        batch["word_shape_ids"] = torch.nn.utils.rnn.pad_sequence(
            [torch.tensor(e["word_shape_ids"]) for e in examples], batch_first=True, padding_value=0)
    return batch
