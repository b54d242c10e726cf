"""Task kinds: everything that differs between a label per sentence and a label per word.

The model, the training loop, evaluation and the feature cache never ask which kind a task is;
they call its kind. A new kind (sentence pairs, multi-label, ...) is one subclass of `TaskKind`
registered with `register_task_kind`; nothing else changes.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset
from seqeval.scheme import IOB2, Entities
from torch import nn

from .heads import ClassificationHead
from .metrics import classification_metrics, entity_metrics
from .pooling import pool
from .tokenization import IGNORE_INDEX, pad_batch, tokenize_sentences, tokenize_words


class TaskKind:
    """What a kind of task decides. A subclass defines:

        make_head(hidden_size, num_labels, dropout, word_shape_dim) -> the head module
        tokenize(split, spec, tokenizer, max_length) -> model inputs as python lists, once before training
        head_input(token_states, attention_mask, pooling) -> what the head reads from one backbone pass
        cache_rows(head_input, attention_mask) -> one tensor per example for the feature cache
        collate_cached(examples) -> a batch of cached examples (see `cached_example`)
        decode(spec, logits, example) -> one example's prediction, in the form `score` compares with `gold`
        score(spec, gold, predictions) -> metrics (including `headline`)
        describe(spec, logits, example, words, text) -> what `predict()` returns for one sentence

    and may override the defaults below (collation, the head call, cross-entropy, gold labels).
    """

    name: str
    headline: str  # the metric a one-line summary shows
    batch_keys: tuple[str, ...] = ("input_ids", "attention_mask", "labels")

    def collate(self, examples: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
        return pad_batch(examples, pad_token_id)

    def logits(self, head: nn.Module, head_input: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        return head(head_input)

    def loss(self, spec, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        real = labels[labels != IGNORE_INDEX]
        if real.numel() and (real.min() < 0 or real.max() >= spec.num_labels):
            raise ValueError(f"task {spec.name!r}: label ids must be in 0..{spec.num_labels - 1} (or {IGNORE_INDEX}), "
                             f"got {real.min().item()}..{real.max().item()}")
        return F.cross_entropy(logits.reshape(-1, spec.num_labels), labels.reshape(-1), ignore_index=IGNORE_INDEX)

    def gold(self, split: Dataset, features: dict[str, list]) -> list:
        return features["labels"]

    def cached_example(self, head_input: torch.Tensor, columns: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One example of the feature cache: its cached head input and its other columns (labels, ...)."""
        return {"head_input": head_input, **columns}


class SentenceClassification(TaskKind):
    """One label per sentence, read from the pooled sentence vector."""

    name, headline = "sentence", "accuracy"

    def make_head(self, hidden_size, num_labels, dropout, word_shape_dim):
        return ClassificationHead(hidden_size, num_labels, dropout)

    def tokenize(self, split, spec, tokenizer, max_length):
        features = tokenize_sentences(tokenizer, list(split["text"]), max_length, f"task {spec.name!r}")
        return {**features, "labels": [spec.label_id(label) for label in split["label"]]}

    def head_input(self, token_states, attention_mask, pooling):
        # The raw pooled vector: L2 normalisation is for similarity search, and unit-length inputs
        # would only slow the classifier down.
        return pool(token_states, attention_mask, pooling)

    def cache_rows(self, head_input, attention_mask):
        return [row.clone() for row in head_input]

    def collate_cached(self, examples):
        return {"head_input": torch.stack([e["head_input"] for e in examples]),
                "labels": torch.stack([torch.as_tensor(e["labels"]) for e in examples])}

    def decode(self, spec, logits, example):
        return int(logits.argmax())

    def score(self, spec, gold, predictions):
        return classification_metrics(gold, predictions, list(spec.labels))

    def describe(self, spec, logits, example, words, text):
        probabilities = logits.float().softmax(-1)
        return {"label": spec.labels[int(probabilities.argmax())], "probability": float(probabilities.max())}


class TokenClassification(TaskKind):
    """One IOB2 tag per word, read from the token state of the word's first subword."""

    name, headline = "token", "f1"
    batch_keys = ("input_ids", "attention_mask", "word_shape_ids", "labels")

    def make_head(self, hidden_size, num_labels, dropout, word_shape_dim):
        return ClassificationHead(hidden_size, num_labels, dropout, word_shape_dim)

    def tokenize(self, split, spec, tokenizer, max_length):
        return tokenize_words(tokenizer, list(split["tokens"]), max_length, list(split["tags"]), spec)

    def head_input(self, token_states, attention_mask, pooling):
        return token_states

    def logits(self, head, head_input, batch):
        return head(head_input, batch.get("word_shape_ids"))

    def cache_rows(self, head_input, attention_mask):
        return [row[:int(n)].clone() for row, n in zip(head_input, attention_mask.sum(1))]

    def cached_example(self, head_input, columns):
        # Only the labelled positions (each word's first subword) are kept: the loss reads nothing
        # else. A cached batch is then their concatenation, with no padding, and the head's dropout
        # draws a mask for those rows alone (the same computation as on a padded batch, other draws).
        labelled = columns["labels"] != IGNORE_INDEX
        return {"head_input": head_input[labelled], **{key: value[labelled] for key, value in columns.items()}}

    def collate_cached(self, examples):
        return {key: torch.cat([e[key] for e in examples]) for key in examples[0]}

    def gold(self, split, features):
        return list(split["tags"])

    def decode(self, spec, logits, example):
        """Per-word tags from the logits at each word's first subword; words with no subword get "O"."""
        predicted = logits.argmax(-1).tolist()
        tags = ["O"] * example["num_words"]
        for word, position in zip(example["labelled_words"], example["word_starts"]):
            tags[word] = spec.labels[predicted[position]]
        return tags

    def score(self, spec, gold, predictions):
        return entity_metrics(gold, predictions)

    def describe(self, spec, logits, example, words, text):
        return entity_spans(self.decode(spec, logits, example), words, text)


def entity_spans(tags: list[str], words: list[tuple[str, int, int]], text: str) -> list[dict]:
    """IOB2 word tags -> entities with type, words and character offsets in `text`.

    Decoded exactly as the strict metric counts them (seqeval's strict IOB2): an I- tag that does not
    continue a B- of its type starts no entity, so predict() never returns a span the F1 would reject.
    """
    spans = []
    for entity in Entities([tags], IOB2, suffix=False).entities[0]:
        first, last = entity.start, entity.end - 1
        start, end = words[first][1], words[last][2]
        spans.append({"type": entity.tag, "text": text[start:end], "start": start, "end": end,
                      "words": [w for w, _, _ in words[first:last + 1]]})
    return spans


TASK_KINDS: dict[str, TaskKind] = {}


def register_task_kind(kind: TaskKind) -> TaskKind:
    TASK_KINDS[kind.name] = kind
    return kind


def get_task_kind(name: str) -> TaskKind:
    if name not in TASK_KINDS:
        raise ValueError(f"unknown task kind {name!r}; choose one of {', '.join(TASK_KINDS)}")
    return TASK_KINDS[name]


register_task_kind(SentenceClassification())
register_task_kind(TokenClassification())
