"""One shared encoder, one head per task. Each batch belongs to one task and runs the backbone once.
A task's parts are found from the task (`model.part(task)`, after sentence-transformers' Router)."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from .backbone import DEFAULT_MODEL, backbone_layout
from .context import check_context
from .encoder import SentenceEncoder
from .freezing import apply_freezing, lower_layers_without_grad, route_task
from .heads import Head
from .lora import SHARED, add_task_adapter, adapter_of, base_backbone, check_lora, save_adapters, use_adapter
from .lora import with_adapters
from .pooling import check_pooling, pool
from .predict import predict
from .serialization import FORMAT_2_HEADS, HEADS_DIR, load_weights, read_config, write_config
from .settings import setting
from .tasks import TaskSpec


@dataclass
class ModelConfig:
    """The model's settings, shared by the CLI (one option each), the notebooks and a saved model's JSON."""

    backbone: str = setting(DEFAULT_MODEL, "pretrained encoder: Hub id or local folder")
    pooling: str = setting("mean", "sentence vector: mean, cls or max")
    max_length: int = setting(256, "tokens per sentence (longer ones are truncated)")
    dropout: float = setting(0.1, "dropout before each new head's classifier")
    word_shape_dim: int = setting(16, "casing embedding of new token heads (0 = off)")
    freeze: str = setting("none", "none, all, backbone, embeddings, bottom:K, head:TASK, adapter:TASK "
                                  "(comma-separated, applied in order)")
    route: str = setting("", "TASK:K,...: TASK's batches train only the top K layers")
    lora: int | None = setting(None, "LoRA rank R (unset: no LoRA, the weights themselves train)")
    lora_alpha: float = setting(0.0, "LoRA scale numerator alpha (0 = 2 x rank)")
    lora_targets: str = setting("attention", "LoRA on: attention (query, key, value) or all")
    lora_per_task: bool = setting(False, "one LoRA adapter per task (else one shared)")
    context_sentences: int = setting(0, "token tasks: up to N sentences of the same document on each side, "
                                        "as input without labels")

    def __post_init__(self) -> None:
        check_pooling(self.pooling)
        check_context(self.context_sentences)
        check_lora(self.lora, self.lora_targets)
        if self.max_length < 2 or not 0 <= self.dropout < 1 or self.word_shape_dim < 0:
            raise ValueError(f"model settings out of range: max_length {self.max_length} (>= 2), dropout "
                             f"{self.dropout} (0 <= p < 1), word_shape_dim {self.word_shape_dim} (>= 0)")

    def routes(self) -> dict[str, int]:
        """'sentiment:2,ner:4' -> {'sentiment': 2, 'ner': 4}."""
        parts = [part.strip() for part in self.route.split(",") if part.strip()]
        if bad := [part for part in parts if not part.partition(":")[2].isdigit()]:
            raise ValueError(f"route {bad[0]!r}: expected TASK:K with K a positive integer")
        return {task: int(k) for task, _, k in (part.partition(":") for part in parts)}


@dataclass
class TaskParts:
    """One task's parts: its spec, head, LoRA adapter (None: no LoRA) and top layers trained (None: all)."""

    spec: TaskSpec
    head: Head
    adapter: str | None = None
    top_k: int | None = None


class MultiTaskModel(nn.Module):
    def __init__(self, encoder: SentenceEncoder, tasks: list[TaskSpec], dropout: float = 0.1, word_shape_dim: int = 16):
        super().__init__()
        self.encoder = encoder
        self.head_settings = {"dropout": dropout, "word_shape_dim": word_shape_dim}  # of new heads
        self.heads = nn.ModuleDict()  # also in `parts`; here for the parameters' names, heads.<task>.<weight>
        self.parts: dict[str, TaskParts] = {}
        self.freeze = "none"  # every freezing scenario applied so far, in order (`record_freezing`)
        self.lora: dict | None = None  # ModelConfig's lora* settings once the backbone has LoRA adapters
        self.context_sentences = 0  # how its token tasks' data is prepared (context.py): kept with the model
        for spec in tasks:
            self.add_task(spec)

    @classmethod
    def from_config(cls, config: ModelConfig, tasks: list[TaskSpec]) -> "MultiTaskModel":
        """The pretrained encoder with new heads, frozen and routed as `config` says."""
        encoder = SentenceEncoder.from_pretrained(config.backbone, pooling=config.pooling, max_length=config.max_length)
        model = cls(encoder, tasks, config.dropout, config.word_shape_dim)
        if config.lora:  # the adapters after the heads: both draw their initial weights, in this order
            model.use_lora(config)
        return model.configure(config)

    def configure(self, config: ModelConfig) -> "MultiTaskModel":
        self.context_sentences = config.context_sentences
        apply_freezing(self, config.freeze)
        for task, k in config.routes().items():
            route_task(self, task, k)
        return self

    @property
    def config(self) -> ModelConfig:
        return ModelConfig(backbone=self.encoder.name_or_path, pooling=self.encoder.pooling,
                           max_length=self.encoder.max_length, freeze=self.freeze,
                           route=",".join(f"{t}:{k}" for t, k in self.layer_routing.items()),
                           context_sentences=self.context_sentences, **self.head_settings, **(self.lora or {}))

    @property
    def tasks(self) -> dict[str, TaskSpec]:
        return {name: part.spec for name, part in self.parts.items()}

    @property
    def layer_routing(self) -> dict[str, int]:
        return {name: part.top_k for name, part in self.parts.items() if part.top_k is not None}

    def part(self, task: str) -> TaskParts:
        if task not in self.parts:
            raise ValueError(f"unknown task {task!r}; this model has tasks: {', '.join(self.parts)}")
        return self.parts[task]

    def add_task(self, spec: TaskSpec, head: Head | None = None) -> Head:
        """Adding a task adds its head (new unless given) and, per-task LoRA, its adapter (starting at zero)."""
        if spec.name in self.parts:
            raise ValueError(f"task {spec.name!r} already exists")
        if self.lora is not None and self.lora["lora_per_task"]:
            add_task_adapter(self.encoder.backbone, spec.name)
        if head is None:
            head = spec.task_kind.make_head(self.encoder.hidden_size, spec.num_labels, self.head_settings)
        self.heads[spec.name] = head
        self.parts[spec.name] = TaskParts(spec, head, adapter_of(spec.name, self.lora))
        return head

    def use_lora(self, config: ModelConfig, saved: Path | None = None) -> None:
        """Run the backbone with LoRA adapters (lora.py) as `config` says: new ones, or those saved in `saved`."""
        lora = {f.name: getattr(config, f.name) for f in fields(config) if f.name.startswith("lora")}
        lora["lora_alpha"] = config.lora_alpha or 2 * config.lora
        adapters = list(self.parts) if lora["lora_per_task"] else [SHARED]
        self.encoder.set_backbone(with_adapters(self.encoder.backbone, adapters, lora, saved),
                                  encode_without_adapters=lora["lora_per_task"])
        self.lora = lora
        for name, part in self.parts.items():
            part.adapter = adapter_of(name, lora)

    def route(self, task: str, top_k: int | None) -> None:
        """Let `task`'s batches train only the top `top_k` layers (None: all); freezing.route_task checks K."""
        self.part(task).top_k = top_k

    def record_freezing(self, scenarios: list[str]) -> None:
        """Remember the freezing scenarios applied: a saved model is restored frozen as it was."""
        self.freeze = ",".join(scenarios) if self.freeze == "none" else ",".join([self.freeze, *scenarios])

    def token_states(self, task: str | None, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One backbone pass: the task's LoRA adapter, a routed task's lower layers without grad (no task: neither)."""
        adapter, top_k = (None, None) if task is None else (self.part(task).adapter, self.part(task).top_k)
        if adapter is not None:
            use_adapter(self.encoder.backbone, adapter)
        if top_k is None:
            return self.encoder.token_states(input_ids, attention_mask)
        n_lower = len(backbone_layout(self.encoder.backbone).layers) - top_k
        with lower_layers_without_grad(self.encoder.backbone, n_lower):
            return self.encoder.token_states(input_ids, attention_mask)

    def head_input(self, task: str, token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """What a task's head reads, as its kind decides (pooled sentence vector, every token state, ...)."""
        return self.part(task).spec.task_kind.head_input(token_states, attention_mask, self.encoder.pooling)

    def forward(self, task: str, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, head_input: torch.Tensor | None = None,
                sentence_vectors: bool = False, **extra: torch.Tensor) -> dict[str, torch.Tensor]:
        """One backbone pass and the task's head; given a cached `head_input` (feature_cache.py), the head alone.
        `extra`: inputs a kind's head reads; `sentence_vectors`: also the pass's unnormalised pooled vectors."""
        part = self.part(task)
        out = {}
        if head_input is None:
            states = self.token_states(task, input_ids, attention_mask)
            head_input = self.head_input(task, states, attention_mask)
            if sentence_vectors:
                out["sentence_vectors"] = pool(states, attention_mask, self.encoder.pooling)
        out["logits"] = part.spec.task_kind.logits(part.head, head_input, extra)
        if labels is not None:
            out["loss"] = part.spec.task_kind.loss(part.spec, out["logits"], labels)
        return out

    def predict(self, texts: list[str], batch_size: int = 32) -> list[dict]:
        """Per sentence, every task's prediction (see predict.py); one backbone pass serves all heads."""
        return predict(self, texts, batch_size)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """The folder layout of serialization.py; with LoRA, adapters/ beside the unchanged base encoder."""
        directory, encoder = Path(directory), self.encoder
        if self.lora is not None:
            encoder = encoder.with_backbone(base_backbone(encoder.backbone))
            save_adapters(self.encoder.backbone, directory / "adapters")
        encoder.save_pretrained(directory / "encoder")
        for name, part in self.parts.items():
            part.head.save(directory / HEADS_DIR / name)
        write_config(directory, list(self.tasks.values()), asdict(self.config))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, expected_tasks: dict[str, list[str]] | None = None
                        ) -> "MultiTaskModel":
        """A saved model, frozen and routed as it was; `expected_tasks` ({task: labels}) guards against a wrong one."""
        directory = Path(directory)
        tasks, settings, format_version = read_config(directory, expected_tasks)
        config = ModelConfig(**{**settings, "backbone": str(directory / "encoder")})
        model = cls(SentenceEncoder.from_pretrained(config.backbone), [], config.dropout, config.word_shape_dim)
        for spec in (TaskSpec(*task) for task in tasks):
            if format_version >= 3:
                head = spec.task_kind.head_type.load(directory / HEADS_DIR / spec.name, num_labels=spec.num_labels,
                                                     hidden_size=model.encoder.hidden_size)
                model.add_task(spec, head)
            else:  # format 2: a new head, as the model had then, and its weights
                load_weights(model.add_task(spec), directory / FORMAT_2_HEADS, prefix=spec.name)
        if config.lora:
            model.use_lora(config, directory / "adapters")
        return model.configure(config)
