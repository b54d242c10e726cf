"""LoRA adapters on the shared encoder (with `peft`): each adapted weight computes W x + (alpha / r) B A x.

W stays frozen (not in the optimizer); A and B (zero at the start: training starts from the pretrained encoder)
train with the heads. One "shared" adapter serves every head in one pass; or one peft named adapter per task:
a batch runs its task's adapter, predict() one pass per task, and encode() is the pretrained encoder."""
from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from pathlib import Path

from torch import nn

from .serialization import give_default_mode

SHARED = "shared"
TARGETS = {"attention": ["query", "key", "value"],  # BERT / MiniLM / RoBERTa module names
           "all": ["query", "key", "value", "dense"]}  # + attention output and both FFN projections


@contextmanager
def _quiet_peft():
    """peft (0.21) asks transformers (5.x) a deprecated question on wrapping; not the user's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def check_lora(rank: int | None, targets: str) -> None:
    if rank is not None and rank < 1:
        raise ValueError(f"LoRA rank must be a positive integer, got {rank}")
    if targets not in TARGETS:
        raise ValueError(f"unknown LoRA targets {targets!r}; choose one of {', '.join(TARGETS)}")


def adapter_of(task: str, lora: dict | None) -> str | None:
    """The adapter a task's batches run under these LoRA settings (`MultiTaskModel.lora`; None: no LoRA)."""
    return None if lora is None else task if lora["lora_per_task"] else SHARED


def with_adapters(backbone: nn.Module, adapters: list[str], lora: dict, saved: Path | None = None,
                  dropout: float = 0.1) -> nn.Module:
    """The backbone with the named LoRA adapters, new (as `lora` says) or saved in `saved`; only they train."""
    try:
        import peft
    except ImportError:
        raise ValueError("LoRA needs the `peft` package (pip install peft); it is not installed") from None
    config = peft.LoraConfig(r=lora["lora"], lora_alpha=lora["lora_alpha"], lora_dropout=dropout, bias="none",
                             target_modules=TARGETS[lora["lora_targets"]])
    with _quiet_peft():
        if saved is None:
            backbone = peft.get_peft_model(backbone, config, adapter_name=adapters[0])
        else:
            backbone = peft.PeftModel.from_pretrained(backbone, saved / adapters[0], adapter_name=adapters[0],
                                                      is_trainable=True)
        for name in adapters[1:]:
            if saved is None:
                backbone.add_adapter(name, config)
            else:
                backbone.load_adapter(saved / name, adapter_name=name, is_trainable=True)
    all_adapters_trainable(backbone)
    return backbone


def add_task_adapter(backbone: nn.Module, task: str) -> None:
    """A new task's own adapter, configured as the others, starting at zero (B = 0): the model is unchanged
    until it trains, and training it leaves every other adapter alone."""
    existing = next(iter(backbone.peft_config.values()))
    with _quiet_peft():
        backbone.add_adapter(task, copy.deepcopy(existing))
    for parameter in adapter_parameters(backbone, task):
        parameter.requires_grad_(True)


def adapter_parameters(backbone: nn.Module, task: str) -> list[nn.Parameter]:
    names = (f".lora_A.{task}.", f".lora_B.{task}.")  # peft's names: "...query.lora_A.<adapter>.weight"
    return [p for n, p in backbone.named_parameters() if any(name in n for name in names)]


def all_adapters_trainable(backbone: nn.Module) -> None:
    """Every adapter stays in the optimizer, the base weights never train; a batch gives gradients only to
    the adapter it ran, and AdamW skips parameters without a gradient (no update, no weight decay)."""
    for name, parameter in backbone.named_parameters():
        parameter.requires_grad_("lora_" in name)


@contextmanager
def trainable_flags_kept(backbone: nn.Module):
    """peft's adapter switches (set_adapter, leaving disable_adapter) also set requires_grad (on for the
    adapter activated, off for the others); what trains is training's decision, so the flags are restored."""
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    try:
        yield
    finally:
        for n, p in backbone.named_parameters():
            p.requires_grad_(n in trainable)


def use_adapter(backbone: nn.Module, name: str) -> None:
    if backbone.active_adapter != name:
        with trainable_flags_kept(backbone):
            backbone.set_adapter(name)


@contextmanager
def without_adapters(backbone: nn.Module):
    """Run the pretrained encoder itself (encode() in per-task mode). Without the kept flags, an encode()
    between epochs stopped every adapter but the active one for the rest of training."""
    with trainable_flags_kept(backbone), backbone.disable_adapter():
        yield


def save_adapters(backbone: nn.Module, directory: Path) -> None:
    backbone.save_pretrained(directory)  # one folder per adapter, adapter_model.safetensors + adapter_config.json
    give_default_mode(*Path(directory).rglob("*.safetensors"))


def base_backbone(backbone: nn.Module) -> nn.Module:
    """A copy without adapters: the pretrained weights, unchanged."""
    return copy.deepcopy(backbone).unload()


def merged_backbone(backbone: nn.Module, adapter: str) -> nn.Module:
    """A copy with one adapter folded into its weights (W + (alpha / r) B A)."""
    merged = copy.deepcopy(backbone)
    merged.set_adapter(adapter)
    return merged.merge_and_unload(adapter_names=[adapter])
