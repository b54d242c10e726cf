"""Task heads, each saved by itself (after sentence-transformers' models/Module.py): the constructor arguments
named by `config_keys` in config.json, the weights in model.safetensors."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .serialization import CheckpointError, load_weights, read_json, save_tensors, write_json


class Head(nn.Module):
    config_keys: tuple[str, ...] = ("hidden_size", "num_labels", "dropout")

    def __init__(self, hidden_size: int, num_labels: int):
        super().__init__()
        self.hidden_size, self.num_labels = hidden_size, num_labels

    def save(self, folder: str | os.PathLike) -> None:
        config = {key: getattr(self, key) for key in self.config_keys}
        write_json(Path(folder) / "config.json",
                   {key: value.p if isinstance(value, nn.Dropout) else value for key, value in config.items()})
        save_tensors(self.state_dict(), Path(folder) / "model.safetensors")

    @classmethod
    def load(cls, folder: str | os.PathLike, **settings) -> "Head":
        """The head saved in `folder`; `settings` (the model's width, the task's label count) replace saved ones,
        so a head that does not match them fails here, on its weights."""
        config = read_json(Path(folder) / "config.json") | settings
        if missing := [key for key in cls.config_keys if key not in config]:
            raise CheckpointError(f"{folder}: config.json lacks {', '.join(missing)} (a {cls.__name__} needs them)")
        head = cls(**{key: config[key] for key in cls.config_keys})
        load_weights(head, Path(folder) / "model.safetensors")
        return head


class ClassificationHead(Head):
    """A sentence vector (or any other head input) -> dropout -> linear -> logits."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1):
        super().__init__(hidden_size, num_labels)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, head_input: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(head_input))
