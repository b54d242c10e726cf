"""One shared encoder, one head per task. Each batch belongs to one task and runs the backbone once."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .backbone import DEFAULT_MODEL, backbone_layout
from .encoder import SentenceEncoder
from .freezing import apply_freezing, lower_layers_without_grad, route_task
from .lora import add_lora, add_task_adapter, adapter_of, base_backbone, check_lora, load_adapters, save_adapters, use_adapter
from .pooling import check_pooling, pool
from .predict import predict
from .serialization import read_model, write_model
from .tasks import TaskSpec


@dataclass
class ModelConfig:
    """The model's settings, shared by the CLI (one option each), the notebooks and a saved model's JSON."""

    backbone: str = field(default=DEFAULT_MODEL, metadata={"help": "pretrained encoder: Hub id or local folder"})
    pooling: str = field(default="mean", metadata={"help": "sentence vector: mean, cls or max"})
    max_length: int = field(default=256, metadata={"help": "tokens per sentence (longer ones are truncated)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout before each head's classifier"})
    word_shape_dim: int = field(default=16, metadata={"help": "casing embedding of token heads (0 = off)"})
    freeze: str = field(default="none", metadata={
        "help": "none, all, backbone, embeddings, bottom:K, head:TASK, adapter:TASK (comma-separated, applied in order)"})
    route: str = field(default="", metadata={"help": "TASK:K,...: TASK's batches train only the top K layers"})
    lora: int | None = field(default=None, metadata={"help": "LoRA rank R (unset: no LoRA, the weights themselves train)"})
    lora_alpha: float = field(default=0.0, metadata={"help": "LoRA scale numerator alpha (0 = 2 x rank)"})
    lora_targets: str = field(default="attention", metadata={"help": "LoRA on: attention (query, key, value) or all"})
    lora_per_task: bool = field(default=False, metadata={"help": "one LoRA adapter per task (else one shared)"})

    def __post_init__(self) -> None:
        check_pooling(self.pooling)
        check_lora(self.lora, self.lora_targets)
        if self.max_length < 2 or not 0 <= self.dropout < 1 or self.word_shape_dim < 0:
            raise ValueError(f"model settings out of range: max_length {self.max_length} (>= 2), dropout "
                             f"{self.dropout} (0 <= p < 1), word_shape_dim {self.word_shape_dim} (>= 0)")

    def routes(self) -> dict[str, int]:
        """'sentiment:2,ner:4' -> {'sentiment': 2, 'ner': 4}."""
        routes = {}
        for part in filter(None, (p.strip() for p in self.route.split(","))):
            task, _, k = part.partition(":")
            if not k.isdigit():
                raise ValueError(f"route {part!r}: expected TASK:K with K a positive integer")
            routes[task] = int(k)
        return routes


class MultiTaskModel(nn.Module):
    def __init__(self, encoder: SentenceEncoder, tasks: list[TaskSpec], dropout: float = 0.1, word_shape_dim: int = 16):
        super().__init__()
        self.encoder = encoder
        self.dropout = dropout
        self.word_shape_dim = word_shape_dim
        self.tasks: dict[str, TaskSpec] = {}
        self.heads = nn.ModuleDict()
        self.layer_routing: dict[str, int] = {}  # task -> number of top layers its batches train
        self.freeze = "none"  # every freezing scenario applied so far, in order (apply_freezing records it)
        self.lora: dict | None = None  # LoRA settings once lora.add_lora has wrapped the backbone
        for spec in tasks:
            self.add_task(spec)

    @classmethod
    def from_config(cls, config: ModelConfig, tasks: list[TaskSpec]) -> "MultiTaskModel":
        """The pretrained encoder with new heads, frozen and routed as `config` says."""
        encoder = SentenceEncoder.from_pretrained(config.backbone, pooling=config.pooling, max_length=config.max_length)
        model = cls(encoder, tasks, config.dropout, config.word_shape_dim)
        if config.lora:
            add_lora(model, config.lora, config.lora_alpha or None, config.lora_targets, config.lora_per_task)
        return model.configure(config)

    def configure(self, config: ModelConfig) -> "MultiTaskModel":
        apply_freezing(self, config.freeze)
        for task, k in config.routes().items():
            route_task(self, task, k)
        return self

    @property
    def config(self) -> ModelConfig:
        lora = self.lora or {"rank": None, "alpha": 0.0, "targets": "attention", "per_task": False}
        return ModelConfig(self.encoder.name_or_path, self.encoder.pooling, self.encoder.max_length, self.dropout,
                           self.word_shape_dim, self.freeze, ",".join(f"{t}:{k}" for t, k in self.layer_routing.items()),
                           lora["rank"], lora["alpha"], lora["targets"], lora["per_task"])

    def add_task(self, spec: TaskSpec) -> nn.Module:
        """Adding a task is adding a head (and, with one LoRA adapter per task, its adapter, which
        starts at zero); nothing else in the model changes."""
        if spec.name in self.tasks:
            raise ValueError(f"task {spec.name!r} already exists")
        if self.lora is not None and self.lora["per_task"]:
            add_task_adapter(self.encoder.backbone, spec.name)
        head = spec.task_kind.make_head(self.encoder.hidden_size, spec.num_labels, self.dropout, self.word_shape_dim)
        self.tasks[spec.name] = spec
        self.heads[spec.name] = head
        return head

    def _spec(self, task: str) -> TaskSpec:
        if task not in self.tasks:
            raise ValueError(f"unknown task {task!r}; this model has tasks: {', '.join(self.tasks)}")
        return self.tasks[task]

    def token_states(self, task: str | None, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One backbone pass (with the task's LoRA adapter, if any); a routed task runs its lower layers
        without gradients."""
        adapter = adapter_of(self, task)
        if adapter is not None:
            use_adapter(self.encoder.backbone, adapter)
        top_k = self.layer_routing.get(task) if task is not None else None
        if top_k is None:
            return self.encoder.token_states(input_ids, attention_mask)
        n_lower = len(backbone_layout(self.encoder.backbone).layers) - top_k
        with lower_layers_without_grad(self.encoder.backbone, n_lower):
            return self.encoder.token_states(input_ids, attention_mask)

    def head_input(self, task: str, token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """What a task's head reads (its kind decides: the pooled sentence vector, every token state, ...)."""
        return self._spec(task).task_kind.head_input(token_states, attention_mask, self.encoder.pooling)

    def forward(self, task: str, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, head_input: torch.Tensor | None = None,
                sentence_vectors: bool = False, **extra: torch.Tensor) -> dict[str, torch.Tensor]:
        """One backbone pass and the task's head; given `head_input` (cached features of a frozen
        backbone, see feature_cache.py), the head alone. `extra`: inputs a kind's head reads (word shapes).
        `sentence_vectors`: also the pooled sentence vectors of the same pass (for distillation.py)."""
        spec = self._spec(task)
        out = {}
        if head_input is None:
            states = self.token_states(task, input_ids, attention_mask)
            head_input = self.head_input(task, states, attention_mask)
            if sentence_vectors:
                out["sentence_vectors"] = pool(states, attention_mask, self.encoder.pooling)  # not normalised
        out["logits"] = spec.task_kind.logits(self.heads[task], head_input, extra)
        if labels is not None:
            out["loss"] = spec.task_kind.loss(spec, out["logits"], labels)
        return out

    def predict(self, texts: list[str], batch_size: int = 32) -> list[dict]:
        """Per sentence, every task's prediction (see predict.py); one backbone pass serves all heads."""
        return predict(self, texts, batch_size)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """encoder/ (safetensors, sentence-transformers layout), heads.safetensors and mtl_config.json."""
        encoder = self.encoder
        if self.lora is not None:  # the unchanged base encoder, and the adapters beside it
            encoder = encoder.with_backbone(base_backbone(encoder.backbone))
            save_adapters(self.encoder.backbone, Path(directory) / "adapters")
        write_model(directory, encoder, self.heads.state_dict(), list(self.tasks.values()), asdict(self.config))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, expected_tasks: dict[str, list[str]] | None = None) -> "MultiTaskModel":
        """Restore a saved model, frozen and routed as it was. `expected_tasks` ({task: label names})
        guards against loading the wrong checkpoint."""
        encoder_dir, tasks, settings, load_heads = read_model(directory, expected_tasks)
        config = ModelConfig(**{**settings, "backbone": str(encoder_dir)})
        model = cls(SentenceEncoder.from_pretrained(str(encoder_dir)), tasks, config.dropout, config.word_shape_dim)
        load_heads(model.heads)
        if config.lora:
            load_adapters(model, Path(directory) / "adapters", {"rank": config.lora, "alpha": config.lora_alpha,
                                                               "targets": config.lora_targets,
                                                               "per_task": config.lora_per_task})
        return model.configure(config)
