"""The task head on top of the shared encoder, for a label per sentence and a label per word alike."""
from __future__ import annotations

import torch
from torch import nn

from .tokenization import WORD_SHAPES


class ClassificationHead(nn.Module):
    """Pooled sentence vector, or token states (+ optional word-shape embedding) -> dropout -> linear -> logits."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1, word_shape_dim: int = 0):
        super().__init__()
        self.shape_embedding = nn.Embedding(len(WORD_SHAPES), word_shape_dim, padding_idx=0) if word_shape_dim else None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size + word_shape_dim, num_labels)

    def forward(self, token_states: torch.Tensor, word_shape_ids: torch.Tensor | None = None) -> torch.Tensor:
        if self.shape_embedding is not None:
            if word_shape_ids is None:
                raise ValueError("this token head uses word shapes: the batch needs 'word_shape_ids'")
            token_states = torch.cat([token_states, self.shape_embedding(word_shape_ids)], dim=-1)
        return self.classifier(self.dropout(token_states))
