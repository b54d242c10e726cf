"""Task heads on top of the shared encoder: one per sentence label, one per word label."""
from __future__ import annotations

import torch
from torch import nn

from .tokenization import WORD_SHAPES


class SentenceClassificationHead(nn.Module):
    """Pooled sentence vector -> dropout -> linear -> one logit per label."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def forward(self, sentence_vectors: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(sentence_vectors))


class TokenClassificationHead(nn.Module):
    """Token states (+ optional word-shape embedding) -> dropout -> linear -> logits per token."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1, word_shape_dim: int = 0):
        super().__init__()
        self.word_shape_dim = word_shape_dim
        self.shape_embedding = nn.Embedding(len(WORD_SHAPES), word_shape_dim, padding_idx=0) if word_shape_dim else None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size + word_shape_dim, num_labels)

    def forward(self, token_states: torch.Tensor, word_shape_ids: torch.Tensor | None = None) -> torch.Tensor:
        if self.shape_embedding is not None:
            if word_shape_ids is None:
                raise ValueError("this token head uses word shapes: the batch needs 'word_shape_ids'")
            token_states = torch.cat([token_states, self.shape_embedding(word_shape_ids)], dim=-1)
        return self.classifier(self.dropout(token_states))
