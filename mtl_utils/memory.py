"""What a training step holds in memory, part by part.

On a GPU, torch.cuda.max_memory_allocated gives the peak; on a CPU there is no such counter, so we
count the parts that grow with what is trained: the weights, a gradient and AdamW's two moments per
trainable parameter, and the activations autograd saves for the backward pass (measured on a real
batch with saved-tensor hooks). Frozen layers at the bottom save no activations: nothing below them
needs a gradient.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .model import MultiTaskModel

ADAMW_STATES = 2  # first and second moment per trainable parameter


def training_memory(model: "MultiTaskModel", task: str, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """MiB held by one training step of `task` on `batch`: weights, gradients, optimizer state, saved activations."""
    parameters = list(model.parameters())
    trainable = [p for p in parameters if p.requires_grad]
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
        loss = model(task, **batch)["loss"]
    del loss  # the graph (and its saved tensors) goes with it; nothing is stepped
    model.train(was_training)
    mib = 2 ** 20
    weights = sum(p.numel() * p.element_size() for p in parameters) / mib
    trained = sum(p.numel() * p.element_size() for p in trainable) / mib
    parts = {"weights": weights, "gradients": trained, "optimizer_state": ADAMW_STATES * trained,
             "activations": sum(saved.values()) / mib}
    parts["total"] = sum(parts.values())
    return parts
