"""One shared encoder, one head per task. Each batch belongs to one task and runs the backbone once."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from seqeval.metrics.sequence_labeling import get_entities
from torch import nn

from .backbone import backbone_layout
from .encoder import SentenceEncoder
from .freezing import lower_layers_without_grad
from .heads import SentenceClassificationHead, TokenClassificationHead
from .pooling import pool
from .tasks import TaskSpec
from .tokenization import IGNORE_INDEX, pad_batch, tokenize_words

CONFIG_NAME = "mtl_config.json"
HEADS_NAME = "heads.safetensors"
FORMAT_VERSION = 1
WORD_PATTERN = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]")  # words and single punctuation marks, CoNLL-like


class CheckpointError(ValueError):
    """A saved model that is incomplete, corrupt, or not what the caller expected."""


class MultiTaskModel(nn.Module):
    def __init__(self, encoder: SentenceEncoder, tasks: list[TaskSpec], dropout: float = 0.1, word_shape_dim: int = 16):
        super().__init__()
        self.encoder = encoder
        self.dropout = dropout
        self.word_shape_dim = word_shape_dim
        self.tasks: dict[str, TaskSpec] = {}
        self.heads = nn.ModuleDict()
        self.layer_routing: dict[str, int] = {}  # task -> number of top layers its batches train
        for spec in tasks:
            self.add_task(spec)

    def add_task(self, spec: TaskSpec) -> nn.Module:
        """Adding a task is adding a head; nothing else in the model changes."""
        if spec.name in self.tasks:
            raise ValueError(f"task {spec.name!r} already exists")
        hidden = self.encoder.hidden_size
        if spec.kind == "sentence":
            head = SentenceClassificationHead(hidden, spec.num_labels, self.dropout)
        else:
            head = TokenClassificationHead(hidden, spec.num_labels, self.dropout, self.word_shape_dim)
        self.tasks[spec.name] = spec
        self.heads[spec.name] = head
        return head

    def _spec(self, task: str) -> TaskSpec:
        if task not in self.tasks:
            raise ValueError(f"unknown task {task!r}; this model has tasks: {', '.join(self.tasks)}")
        return self.tasks[task]

    def token_states(self, task: str | None, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One backbone pass; a routed task runs its lower layers without gradients."""
        top_k = self.layer_routing.get(task) if task is not None else None
        if top_k is None:
            return self.encoder.token_states(input_ids, attention_mask)
        n_lower = len(backbone_layout(self.encoder.backbone).layers) - top_k
        with lower_layers_without_grad(self.encoder.backbone, n_lower):
            return self.encoder.token_states(input_ids, attention_mask)

    def head_input(self, task: str, token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """What a task's head reads: the pooled sentence vector (sentence task) or every token state (token task)."""
        if self._spec(task).kind == "sentence":
            # The raw pooled vector: L2 normalisation is for similarity search, and unit-length inputs
            # would only slow the classifier down.
            return pool(token_states, attention_mask, self.encoder.pooling)
        return token_states

    def apply_head(self, task: str, head_input: torch.Tensor, word_shape_ids: torch.Tensor | None = None) -> torch.Tensor:
        if self._spec(task).kind == "sentence":
            return self.heads[task](head_input)
        return self.heads[task](head_input, word_shape_ids)

    def head_logits(self, task: str, token_states: torch.Tensor, attention_mask: torch.Tensor,
                    word_shape_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.apply_head(task, self.head_input(task, token_states, attention_mask), word_shape_ids)

    def forward(self, task: str, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, word_shape_ids: torch.Tensor | None = None,
                head_input: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """One backbone pass and the task's head; given `head_input` (cached features of a frozen
        backbone, see feature_cache.py), the head alone."""
        spec = self._spec(task)
        if head_input is None:
            states = self.token_states(task, input_ids, attention_mask)
            head_input = self.head_input(task, states, attention_mask)
        logits = self.apply_head(task, head_input, word_shape_ids)
        out = {"logits": logits}
        if labels is not None:
            real = labels[labels != IGNORE_INDEX]
            if real.numel() and (real.min() < 0 or real.max() >= spec.num_labels):
                raise ValueError(f"task {task!r}: label ids must be in 0..{spec.num_labels - 1} (or {IGNORE_INDEX}), "
                                 f"got {real.min().item()}..{real.max().item()}")
            out["loss"] = F.cross_entropy(logits.reshape(-1, spec.num_labels), labels.reshape(-1), ignore_index=IGNORE_INDEX)
        return out

    @torch.inference_mode()
    def predict(self, texts: list[str], batch_size: int = 32) -> list[dict]:
        """Per sentence: each sentence task's label and probability, each token task's entity spans.

        `words_seen` < `num_words` marks a sentence cut at max_length; its unseen words get no entity.
        """
        if isinstance(texts, str):
            raise TypeError("predict() takes a list of sentences; wrap a single sentence in a list")
        if len(texts) == 0:
            return []
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        words_with_offsets = [[(m.group(), m.start(), m.end()) for m in WORD_PATTERN.finditer(t)] for t in texts]
        features = tokenize_words(self.encoder.tokenizer, [[w for w, _, _ in ws] for ws in words_with_offsets],
                                  self.encoder.max_length)
        # Words past max_length are not seen by the model: say so instead of pretending they were tagged.
        results = [{"text": t, "num_words": len(ws), "words_seen": len(features["labelled_words"][i])}
                   for i, (t, ws) in enumerate(zip(texts, words_with_offsets))]
        for start in range(0, len(texts), batch_size):
            rows = range(start, min(start + batch_size, len(texts)))
            batch = pad_batch([{k: features[k][i] for k in ("input_ids", "attention_mask", "word_shape_ids")} for i in rows],
                              self.encoder.tokenizer.pad_token_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            states = self.token_states(None, batch["input_ids"], batch["attention_mask"])  # once for all heads
            for task, spec in self.tasks.items():
                logits = self.head_logits(task, states, batch["attention_mask"], batch["word_shape_ids"]).float()
                for j, i in enumerate(rows):
                    if spec.kind == "sentence":
                        probs = logits[j].softmax(-1)
                        results[i][task] = {"label": spec.labels[int(probs.argmax())], "probability": float(probs.max())}
                    else:
                        tags = word_tags(spec, logits[j], features["labelled_words"][i], features["word_starts"][i],
                                         len(words_with_offsets[i]))
                        results[i][task] = entity_spans(tags, words_with_offsets[i], texts[i])
        self.train(was_training)
        return results

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """encoder/ (safetensors, sentence-transformers layout), heads.safetensors and a JSON config."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(directory / "encoder")
        save_file({k: v.detach().contiguous().cpu() for k, v in self.heads.state_dict().items()}, directory / HEADS_NAME)
        config = {"format_version": FORMAT_VERSION, "tasks": [spec.to_dict() for spec in self.tasks.values()],
                  "dropout": self.dropout, "word_shape_dim": self.word_shape_dim, "layer_routing": self.layer_routing}
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, expected_tasks: dict[str, list[str]] | None = None) -> "MultiTaskModel":
        """Restore a saved model. `expected_tasks` ({task: label names}) guards against loading the wrong checkpoint."""
        directory = Path(directory)
        config_file = directory / CONFIG_NAME
        if not config_file.is_file():
            raise CheckpointError(f"{directory}: not a saved MultiTaskModel ({CONFIG_NAME} is missing)")
        try:
            config = json.loads(config_file.read_text())
            tasks = [TaskSpec(t["name"], t["kind"], tuple(t["labels"])) for t in config["tasks"]]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise CheckpointError(f"{config_file}: unreadable or incomplete config ({type(err).__name__}: {err})") from None
        if expected_tasks is not None:
            found = {t.name: list(t.labels) for t in tasks}
            if found != {name: list(labels) for name, labels in expected_tasks.items()}:
                raise CheckpointError(f"{directory}: checkpoint has tasks/labels {found}, expected {expected_tasks}")
        model = cls(SentenceEncoder.from_pretrained(str(directory / "encoder")), tasks,
                    dropout=config["dropout"], word_shape_dim=config["word_shape_dim"])
        model.layer_routing = dict(config.get("layer_routing", {}))
        try:
            state = load_file(directory / HEADS_NAME)
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{directory / HEADS_NAME}: missing or corrupt ({err})") from None
        try:
            model.heads.load_state_dict(state)
        except RuntimeError as err:
            raise CheckpointError(f"{directory / HEADS_NAME}: does not match the config ({err})") from None
        return model


def word_tags(spec: TaskSpec, logits: torch.Tensor, labelled_words: list[int], word_starts: list[int], n_words: int) -> list[str]:
    """Per-word tags from the logits at each word's first subword; words with no subword get "O"."""
    predicted = logits.argmax(-1).tolist()
    tags = ["O"] * n_words
    for word, position in zip(labelled_words, word_starts):
        tags[word] = spec.labels[predicted[position]]
    return tags


def entity_spans(tags: list[str], words: list[tuple[str, int, int]], text: str) -> list[dict]:
    """IOB2 word tags -> entities with their type, words and character offsets in `text`."""
    spans = []
    for entity_type, first, last in get_entities(tags):
        start, end = words[first][1], words[last][2]
        spans.append({"type": entity_type, "text": text[start:end], "start": start, "end": end,
                      "words": [w for w, _, _ in words[first:last + 1]]})
    return spans
