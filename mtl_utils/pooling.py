"""Turn token states into one sentence vector: mean (padding excluded), CLS or max."""
from __future__ import annotations

import torch
import torch.nn.functional as F

POOLING_MODES = ("mean", "cls", "max")


def check_pooling(mode: str) -> str:
    if mode not in POOLING_MODES:
        raise ValueError(f"unknown pooling {mode!r}; choose one of {', '.join(POOLING_MODES)}")
    return mode


def pool(token_states: torch.Tensor, attention_mask: torch.Tensor, mode: str = "mean") -> torch.Tensor:
    """(batch, seq, hidden) states and (batch, seq) mask -> (batch, hidden) sentence vectors."""
    check_pooling(mode)
    if mode == "mean":
        # Average over real tokens only: padding would pull every short sentence towards the pad state.
        # In fp32 at least (bf16 states under mixed precision: a bf16 sum keeps ~3 digits).
        states = token_states.float() if token_states.dtype in (torch.bfloat16, torch.float16) else token_states
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    if mode == "cls":
        return token_states[:, 0]
    return token_states.masked_fill(  # "max": padding can never be the maximum
        attention_mask.unsqueeze(-1) == 0, torch.finfo(token_states.dtype).min).max(1).values


def normalize(vectors: torch.Tensor) -> torch.Tensor:
    """L2-normalise so that a dot product is a cosine similarity."""
    return F.normalize(vectors, p=2, dim=-1)
