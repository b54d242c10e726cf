"""What a training step holds in memory, part by part: weights, a gradient and AdamW's two moments per trainable
parameter, and the activations autograd saves (saved-tensor hooks; a CPU has no peak-memory counter). Frozen
layers at the bottom save none: nothing below them needs a gradient."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .model import MultiTaskModel

ADAMW_STATES = 2  # first and second moment per trainable parameter


def training_memory(model: "MultiTaskModel", task: str, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """MiB held by one training step of `task` on `batch`: weights, gradients, optimizer state, saved activations."""
    parameters = list(model.parameters())
    weight_storages = {p.untyped_storage().data_ptr() for p in parameters}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weight_storages:  # weights are counted once, below
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    was_training = model.training
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(task, **batch)["loss"]  # forward only: loss, graph and saved tensors go at once; nothing is stepped
    model.train(was_training)
    mib = 2 ** 20
    trained = sum(p.numel() * p.element_size() for p in parameters if p.requires_grad) / mib
    parts = {"weights": sum(p.numel() * p.element_size() for p in parameters) / mib, "gradients": trained,
             "optimizer_state": ADAMW_STATES * trained, "activations": sum(saved.values()) / mib}
    return parts | {"total": sum(parts.values())}
