"""LoRA adapters on the shared encoder (with `peft`): each adapted weight computes W x + (alpha / r) B A x.

W stays frozen (bitwise: it is not in the optimizer); only A (r x in) and B (out x r, zero at the
start, so training starts from the pretrained encoder) are trained, with the heads. Two modes:

    shared     one adapter ("shared") that every task trains: one backbone pass serves every head
    per task   one adapter per task (peft named adapters): a batch runs its task's adapter, so
               predict() makes one backbone pass per task, and encode() is the plain pretrained encoder

Saved as the unchanged base encoder plus peft's adapter folders (safetensors + JSON);
`merged_encoder` folds an adapter into the weights for a plain encoder folder.
"""
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


def _peft():
    try:
        import peft
    except ImportError:
        raise ValueError("LoRA needs the `peft` package (pip install peft); it is not installed") from None
    return peft


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


def add_lora(model: nn.Module, rank: int, alpha: float | None = None, targets: str = "attention",
             per_task: bool = False, dropout: float = 0.1) -> nn.Module:
    """Wrap the model's backbone with LoRA adapters (one shared, or one per task); the rest of the
    backbone is frozen. Returns the model."""
    check_lora(rank, targets)
    peft = _peft()
    config = peft.LoraConfig(r=rank, lora_alpha=alpha or 2 * rank, target_modules=TARGETS[targets],
                             lora_dropout=dropout, bias="none")
    names = list(model.tasks) if per_task else [SHARED]
    with _quiet_peft():
        backbone = peft.get_peft_model(model.encoder.backbone, config, adapter_name=names[0])
        for name in names[1:]:
            backbone.add_adapter(name, config)
    all_adapters_trainable(backbone)
    model.encoder.backbone = backbone
    model.encoder.encode_without_adapters = per_task  # per task: encode() is the pretrained encoder
    model.lora = {"rank": rank, "alpha": alpha or 2 * rank, "targets": targets, "per_task": per_task}
    return model


def add_task_adapter(backbone: nn.Module, task: str) -> None:
    """A new task's own adapter, configured as the others are, starting at zero (B = 0): the model
    is unchanged until it trains, and training it leaves every other adapter alone."""
    existing = next(iter(backbone.peft_config.values()))
    with _quiet_peft():
        backbone.add_adapter(task, copy.deepcopy(existing))
    for parameter in adapter_parameters(backbone, task):
        parameter.requires_grad_(True)


def adapter_parameters(backbone: nn.Module, task: str) -> list[nn.Parameter]:
    """The LoRA parameters of one task's adapter (per-task mode)."""
    names = (f".lora_A.{task}.", f".lora_B.{task}.")  # peft's names: "...query.lora_A.<adapter>.weight"
    return [p for n, p in backbone.named_parameters() if any(name in n for name in names)]


def all_adapters_trainable(backbone: nn.Module) -> None:
    """Every adapter stays in the optimizer, the base weights never train; a batch gives gradients only to
    the adapter it ran, and AdamW skips parameters without a gradient (no update, no weight decay)."""
    for name, parameter in backbone.named_parameters():
        parameter.requires_grad_("lora_" in name)


@contextmanager
def trainable_flags_kept(backbone: nn.Module):
    """peft's adapter switches (set_adapter, and leaving disable_adapter) also set requires_grad: on
    for the adapter they activate, off for every other. What trains is training's decision, so the
    flags are put back as they were."""
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    try:
        yield
    finally:
        for n, p in backbone.named_parameters():
            p.requires_grad_(n in trainable)


def use_adapter(backbone: nn.Module, name: str) -> None:
    """Make `name` the adapter the next backbone pass runs."""
    if backbone.active_adapter != name:
        with trainable_flags_kept(backbone):
            backbone.set_adapter(name)


@contextmanager
def without_adapters(backbone: nn.Module):
    """Run the pretrained encoder itself (encode() in per-task mode). Without the kept flags, an
    encode() between epochs stopped every adapter but the active one for the rest of training."""
    with trainable_flags_kept(backbone), backbone.disable_adapter():
        yield


def adapter_of(model: nn.Module, task: str | None) -> str | None:
    """The adapter a task's batches run (None: the model has no LoRA)."""
    lora = getattr(model, "lora", None)
    if lora is None:
        return None
    return task if lora["per_task"] else SHARED


def save_adapters(backbone: nn.Module, directory: Path) -> None:
    backbone.save_pretrained(directory)  # one folder per adapter, adapter_model.safetensors + adapter_config.json
    give_default_mode(*Path(directory).rglob("*.safetensors"))


def load_adapters(model: nn.Module, directory: Path, lora: dict) -> None:
    """Put the saved adapters on a model built from the saved base encoder."""
    peft = _peft()
    names = list(model.tasks) if lora["per_task"] else [SHARED]
    with _quiet_peft():
        backbone = peft.PeftModel.from_pretrained(model.encoder.backbone, directory / names[0],
                                                  adapter_name=names[0], is_trainable=True)
        for name in names[1:]:
            backbone.load_adapter(directory / name, adapter_name=name, is_trainable=True)
    all_adapters_trainable(backbone)
    model.encoder.backbone = backbone
    model.encoder.encode_without_adapters = lora["per_task"]
    model.lora = dict(lora)


def base_backbone(backbone: nn.Module) -> nn.Module:
    """A copy of the backbone without adapters: the pretrained weights, unchanged."""
    return copy.deepcopy(backbone).unload()


def merged_backbone(backbone: nn.Module, adapter: str) -> nn.Module:
    """A copy of the backbone with one adapter folded into its weights (W + (alpha / r) B A)."""
    merged = copy.deepcopy(backbone)
    merged.set_adapter(adapter)
    return merged.merge_and_unload(adapter_names=[adapter])
