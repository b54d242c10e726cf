"""Selective freezing and per-task layer routing.

A frozen parameter gets `requires_grad=False` and is left out of the optimizer (llrd.py): in it, AdamW's
weight decay would still shrink it every step. Scenarios (comma-separated, applied in order):
    none         everything trainable (undoes earlier freezing)    all          the entire network
    backbone     embeddings and every transformer layer             embeddings   the embedding layer only
    bottom:K     embeddings and the lowest K layers                 head:TASK    one task's head
    adapter:TASK one task's LoRA adapter (one adapter per task, lora.py)
Frozen lower layers keep their dropout in training (it regularises the layers above); only a wholly frozen
backbone runs in eval mode (`training.train`): the same features every epoch, so cached (feature_cache.py)."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from .backbone import backbone_layout, named_blocks
from .lora import adapter_parameters, all_adapters_trainable

SCENARIOS = ("none", "all", "backbone", "embeddings", "bottom:K", "head:TASK", "adapter:TASK")


def apply_freezing(model: nn.Module, scenario: str) -> nn.Module:
    """Freeze the parts a scenario names (comma-separated scenarios apply in order)."""
    layout = backbone_layout(model.encoder.backbone)
    parts = [p.strip() for p in scenario.split(",") if p.strip()]
    for part in parts:
        name, _, argument = part.partition(":")
        if name == "none" and not argument:
            model.requires_grad_(True)
            if model.lora:  # with LoRA, the base weights never train
                all_adapters_trainable(model.encoder.backbone)
        elif name == "all" and not argument:
            model.requires_grad_(False)
        elif name == "backbone" and not argument:
            model.encoder.backbone.requires_grad_(False)
        elif name == "embeddings" and not argument:
            layout.embeddings.requires_grad_(False)
        elif name == "bottom" and argument:
            k = _parse_k(argument, part, lowest=0, highest=len(layout.layers))
            layout.embeddings.requires_grad_(False)
            layout.layers[:k].requires_grad_(False)
        elif name == "head" and argument:
            model.part(argument).head.requires_grad_(False)
        elif name == "adapter" and argument:
            if not (model.lora and model.lora["lora_per_task"]):
                raise ValueError(f"freezing {part!r}: the model has no per-task LoRA adapters")
            for parameter in adapter_parameters(model.encoder.backbone, model.part(argument).adapter):
                parameter.requires_grad_(False)
        else:
            raise ValueError(f"unknown freezing scenario {part!r}; choose from {', '.join(SCENARIOS)}")
    model.record_freezing(parts)  # a saved model is restored frozen as it was: applied again, in order
    return model


def gradual_unfreezing(n_layers: int, stages: int) -> list[str]:
    """One freezing scenario per stage of gradual unfreezing from the top (ULMFiT): stage 1 trains the
    heads and the top layers, each later stage unfreezes more layers, the last stage trains everything."""
    if not 1 <= stages <= n_layers + 1:
        raise ValueError(f"gradual unfreezing: {stages} stages for {n_layers} layers; choose 1..{n_layers + 1}")
    n_trained = [max(1, round(n_layers * stage / stages)) for stage in range(1, stages)]
    return [f"none,bottom:{n_layers - n}" for n in n_trained] + ["none"]


def _parse_k(argument: str, part: str, lowest: int, highest: int) -> int:
    try:
        k = int(argument)
    except ValueError:
        raise ValueError(f"{part!r}: K must be an integer, got {argument!r}") from None
    if not lowest <= k <= highest:
        raise ValueError(f"{part!r}: K={k} is out of range; this backbone has {highest} layers ({lowest}..{highest})")
    return k


def route_task(model: nn.Module, task: str, top_k: int | None) -> None:
    """Let `task`'s batches train only the top K layers and its head (None: all). The layers below still run,
    without gradients: no backward pass, and AdamW skips them (their .grad stays None)."""
    model.part(task)  # an unknown task fails here, whatever K is
    n_layers = len(backbone_layout(model.encoder.backbone).layers)
    model.route(task, None if top_k is None else _parse_k(str(top_k), f"{task}:{top_k}", lowest=1, highest=n_layers))


@contextlib.contextmanager
def lower_layers_without_grad(backbone: nn.Module, n_lower: int) -> Iterator[None]:
    """Run the embeddings and the lowest `n_lower` layers with autograd off, the rest as usual."""
    layout = backbone_layout(backbone)
    boundary = layout.layers[n_lower - 1] if n_lower > 0 else layout.embeddings
    grad_was_enabled = torch.is_grad_enabled()

    def switch_off(module, args):
        torch.set_grad_enabled(False)

    def switch_back(module, args, output):
        torch.set_grad_enabled(grad_was_enabled)

    handles = [layout.embeddings.register_forward_pre_hook(switch_off),
               boundary.register_forward_hook(switch_back)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        torch.set_grad_enabled(grad_was_enabled)


def parameter_report(model: nn.Module) -> list[dict]:
    """Trainable and frozen parameter counts per module (embeddings, each layer, each head)."""
    rows = [{"module": name, "trainable": sum(p.numel() for p in module.parameters() if p.requires_grad),
             "frozen": sum(p.numel() for p in module.parameters() if not p.requires_grad)}
            for name, module in named_blocks(model.encoder.backbone, model.heads)]
    rows.append({"module": "total", **{key: sum(r[key] for r in rows) for key in ("trainable", "frozen")}})
    return rows


def format_report(rows: list[dict]) -> str:
    lines = [f"{'module':<16}{'trainable':>12}{'frozen':>12}"]
    lines += [f"{r['module']:<16}{r['trainable']:>12,}{r['frozen']:>12,}" for r in rows]
    return "\n".join(lines)
