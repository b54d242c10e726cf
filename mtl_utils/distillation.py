"""Keep the encoder's general knowledge: distil its own starting sentence vectors while it learns
(learning without forgetting, Li & Hoiem 2016): loss = task loss + lambda * distance(student, teacher),
the teacher's pooled vectors computed once before the first step (no second backbone in training), the
student's from the pass that feeds the heads."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .batching import map_backbone
from .pooling import pool

DISTANCES = ("cosine", "mse")


def check_distillation(weight: float, distance: str) -> None:
    if not weight >= 0:
        raise ValueError(f"keep-embeddings weight (lambda) must be >= 0, got {weight}")
    if distance not in DISTANCES:
        raise ValueError(f"unknown distillation distance {distance!r}; choose one of {', '.join(DISTANCES)}")


def teacher_vectors(model, features: dict[str, list], batch_size: int = 128) -> torch.Tensor:
    """(examples, hidden): the encoder's pooled vector of every example, now, without dropout."""
    return torch.stack(map_backbone(model, features, batch_size,
                                    lambda states, mask: pool(states, mask, model.encoder.pooling).float().cpu()))


def embedding_distance(student: torch.Tensor, teacher: torch.Tensor, distance: str = "cosine") -> torch.Tensor:
    """Mean over the batch: 1 - cosine (direction only, what similarity search uses), or the mean
    squared difference per dimension (direction and length)."""
    student, teacher = student.float(), teacher.to(student.device).float()
    if distance == "cosine":
        return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()
    return F.mse_loss(student, teacher)
