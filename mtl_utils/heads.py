"""Task heads on top of the shared encoder: one per sentence label, one per word label."""
from __future__ import annotations

import torch
from torch import nn

# Word-shape classes. The default backbone is uncased, so its tokens never show capitalisation,
# the strongest single cue for named entities; the token head gets it back from the original words.
WORD_SHAPES = ("pad", "lower", "Title", "UPPER", "mixed", "digits", "other")


def word_shape(word: str) -> int:
    """Index into WORD_SHAPES for one word (never 0: that is for special tokens and padding)."""
    if any(c.isdigit() for c in word):
        return WORD_SHAPES.index("digits")
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return WORD_SHAPES.index("other")
    if all(c.islower() for c in letters):
        return WORD_SHAPES.index("lower")
    if all(c.isupper() for c in letters):
        return WORD_SHAPES.index("UPPER")
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return WORD_SHAPES.index("Title")
    return WORD_SHAPES.index("mixed")


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
