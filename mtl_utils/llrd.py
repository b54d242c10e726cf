"""Layer-wise learning-rate decay (LLRD): lower layers, which hold general language knowledge, move less.
Layer i of L gets lr * decay ** (L - 1 - i), the embeddings lr * decay ** L, the heads head_lr; biases and
LayerNorm weights get no weight decay, and frozen parameters are left out (AdamW's decay would move them)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from .backbone import backbone_layout

if TYPE_CHECKING:
    from .model import MultiTaskModel


def check_decay(decay: float) -> float:
    if not 0 < decay <= 1:
        raise ValueError(f"LLRD decay must be in (0, 1], got {decay}")
    return decay


def llrd_parameter_groups(model: "MultiTaskModel", lr: float, head_lr: float | None = None, decay: float = 1.0,
                          weight_decay: float = 0.01) -> list[dict]:
    """Optimizer parameter groups; every trainable parameter appears in exactly one group."""
    check_decay(decay)
    head_lr = lr if head_lr is None else head_lr
    layout = backbone_layout(model.encoder.backbone)
    n_layers = len(layout.layers)
    blocks: list[tuple[str, nn.Module, float]] = [("embeddings", layout.embeddings, lr * decay ** n_layers)]
    blocks += [(f"layer.{i}", layer, lr * decay ** (n_layers - 1 - i)) for i, layer in enumerate(layout.layers)]
    blocks += [(f"head.{name}", head, head_lr) for name, head in model.heads.items()]
    groups, seen = [], set()
    for block, module, block_lr in blocks:
        with_decay, without_decay = [], []
        for name, parameter in module.named_parameters():
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            no_decay = parameter.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
            (without_decay if no_decay else with_decay).append(parameter)
        for params, wd, suffix in ((with_decay, weight_decay, ""), (without_decay, 0.0, " (no decay)")):
            if params:
                groups.append({"name": block + suffix, "params": params, "lr": block_lr, "weight_decay": wd})
    missed = [name for name, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
    if missed:
        raise ValueError(f"LLRD: trainable parameters outside embeddings, layers and heads: {missed[:5]} "
                         "(load_backbone removes the pooler; freeze or remove any other extra module)")
    return groups


def llrd_table(groups: list[dict]) -> list[dict]:
    return [{"group": g["name"], "lr": g["lr"], "weight_decay": g["weight_decay"],
             "parameters": sum(p.numel() for p in g["params"])} for g in groups]


def format_llrd_table(groups: list[dict]) -> str:
    lines = [f"{'group':<28}{'lr':>10}{'wd':>7}{'params':>12}"]
    lines += [f"{r['group']:<28}{r['lr']:>10.2e}{r['weight_decay']:>7.3f}{r['parameters']:>12,}" for r in llrd_table(groups)]
    return "\n".join(lines)


def plot_llrd(groups: list[dict], ax=None):
    """Bar chart of the learning rate per block, bottom (embeddings) to top (heads)."""
    import matplotlib.pyplot as plt
    rates = {g["name"].removesuffix(" (no decay)"): g["lr"] for g in groups}  # a block's two groups share its lr
    ax = plt.subplots(figsize=(7, 3))[1] if ax is None else ax
    ax.bar(list(rates), list(rates.values()), color="tab:blue")
    ax.set(ylabel="learning rate", yscale="log", title="Learning rate per block (LLRD)")
    ax.tick_params(axis="x", rotation=45)
    return ax
