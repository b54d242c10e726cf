"""Task kinds: everything that differs between a label per sentence and a label per word.

The model, training, evaluation, predict() and the feature cache never ask which kind a task is; they
call its kind. A new kind (sentence pairs, multi-label, ...) is one `TaskKind` subclass, registered."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from datasets import Dataset
from seqeval.scheme import IOB2, Entities
from torch import nn

from .context import add_document_context
from .heads import ClassificationHead, Head
from .metrics import classification_metrics, entity_metrics
from .pooling import pool
from .tokenization import IGNORE_INDEX, pad_batch, tokenize_sentences, tokenize_words

# Word-shape classes. The default backbone is uncased, so its tokens never show capitalisation,
# the strongest single cue for named entities; the token head gets it back from the original words.
WORD_SHAPES = ("pad", "lower", "Title", "UPPER", "mixed", "digits", "other")


def word_shape(word: str) -> int:
    """Index into WORD_SHAPES for one word (never 0: that is for special tokens and padding)."""
    if any(c.isdigit() for c in word):
        return WORD_SHAPES.index("digits")
    letters = [c for c in word if c.isalpha()]
    if not letters:
        return WORD_SHAPES.index("other")
    if all(c.islower() for c in letters):
        return WORD_SHAPES.index("lower")
    if all(c.isupper() for c in letters):
        return WORD_SHAPES.index("UPPER")
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return WORD_SHAPES.index("Title")
    return WORD_SHAPES.index("mixed")


class TaskKind:
    """What a kind of task decides. A subclass defines these (`register_task_kind` checks) and may override the rest:

        tokenize(split, spec, tokenizer, max_length) -> model inputs as python lists, once before training
        head_input(token_states, attention_mask, pooling) -> what the head reads from one backbone pass
        decode(spec, logits, example) -> one example's prediction, in the form `score` compares with `gold`
        score(spec, gold, predictions) -> metrics (including `headline`)
        describe(spec, logits, example, words, text) -> what `predict()` returns for one sentence"""

    REQUIRED = ("name", "headline", "tokenize", "head_input", "decode", "score", "describe")
    name: str
    headline: str  # the metric a one-line summary shows
    head_type: type[Head] = ClassificationHead  # makes, saves and loads the task's head
    batch_keys: tuple[str, ...] = ("input_ids", "attention_mask", "labels")
    example_keys: tuple[str, ...] = ()  # the feature columns `decode` and `describe` read
    # Per-token inputs computed from each token's word, in training and in predict()
    word_features: dict[str, Callable[[str], int]] = {}

    def add_context(self, split: Dataset, sentences: int) -> Dataset:
        """The split with what `tokenize` reads as context (see context.py); a kind without context: unchanged."""
        return split

    def make_head(self, hidden_size: int, num_labels: int, settings: dict[str, Any]) -> Head:
        """A new head; of the model's head settings (dropout, word_shape_dim) it takes those its type declares."""
        keys = self.head_type.config_keys
        return self.head_type(hidden_size, num_labels, **{k: v for k, v in settings.items() if k in keys})

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

    def cache_rows(self, head_input: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """For the feature cache, one tensor per example: its vector, or its real tokens' rows (no padding)."""
        if head_input.dim() == 2:
            return [row.clone() for row in head_input]
        return [row[:int(n)].clone() for row, n in zip(head_input, attention_mask.sum(1))]

    def cached_example(self, head_input: torch.Tensor, columns: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"head_input": head_input, **columns}

    def collate_cached(self, examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        return {key: torch.stack([torch.as_tensor(e[key]) for e in examples]) for key in examples[0]}


class SentenceClassification(TaskKind):
    """One label per sentence, read from the pooled sentence vector."""

    name, headline = "sentence", "accuracy"

    def tokenize(self, split, spec, tokenizer, max_length):
        features = tokenize_sentences(tokenizer, list(split["text"]), max_length, f"task {spec.name!r}")
        return {**features, "labels": [spec.label_id(label) for label in split["label"]]}

    def head_input(self, token_states, attention_mask, pooling):
        # Not L2-normalised: that is for similarity search, and would only slow the classifier down.
        return pool(token_states, attention_mask, pooling)

    def decode(self, spec, logits, example):
        return int(logits.argmax())

    def score(self, spec, gold, predictions):
        return classification_metrics(gold, predictions, list(spec.labels))

    def describe(self, spec, logits, example, words, text):
        probabilities = logits.float().softmax(-1)
        return {"label": spec.labels[int(probabilities.argmax())], "probability": float(probabilities.max())}


class WordShapeHead(ClassificationHead):
    """Token states and the embedding of each token's word shape -> dropout -> linear -> logits."""

    config_keys = ("hidden_size", "num_labels", "dropout", "word_shape_dim")

    def __init__(self, hidden_size: int, num_labels: int, dropout: float = 0.1, word_shape_dim: int = 16):
        Head.__init__(self, hidden_size, num_labels)
        self.word_shape_dim = word_shape_dim
        # Before the classifier: both draw their initial weights from torch's generator, in this order.
        self.shape_embedding = nn.Embedding(len(WORD_SHAPES), word_shape_dim, padding_idx=0) if word_shape_dim else None
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size + word_shape_dim, num_labels)

    def forward(self, token_states: torch.Tensor, word_shape_ids: torch.Tensor | None = None) -> torch.Tensor:
        if self.shape_embedding is not None:
            if word_shape_ids is None:
                raise ValueError("this token head uses word shapes: the batch needs 'word_shape_ids'")
            token_states = torch.cat([token_states, self.shape_embedding(word_shape_ids)], dim=-1)
        return super().forward(token_states)


class TokenClassification(TaskKind):
    """One IOB2 tag per word, read from the token state of the word's first subword (and the word's shape)."""

    name, headline = "token", "f1"
    head_type = WordShapeHead
    word_features = {"word_shape_ids": word_shape}
    batch_keys = ("input_ids", "attention_mask", *word_features, "labels")
    example_keys = ("labelled_words", "word_starts", "num_words")

    def tokenize(self, split, spec, tokenizer, max_length):
        # Neighbouring sentences (context.add_document_context) go in beside the sentence, without labels.
        contexts = (list(zip(split["context_before"], split["context_after"]))
                    if "context_before" in split.column_names else None)
        return tokenize_words(tokenizer, list(split["tokens"]), max_length, list(split["tags"]), spec,
                              self.word_features, contexts)

    def add_context(self, split, sentences):
        return add_document_context(split, sentences)

    def head_input(self, token_states, attention_mask, pooling):
        return token_states

    def logits(self, head, head_input, batch):
        return head(head_input, batch.get("word_shape_ids"))

    def cached_example(self, head_input, columns):
        # Only the labelled positions (each word's first subword) are kept: the loss reads nothing else.
        # A cached batch concatenates them, unpadded; dropout then draws masks for those rows alone.
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
    """IOB2 word tags -> entities with type, words and character offsets in `text`, decoded as seqeval's
    strict IOB2 metric counts them: an I- tag that does not continue a B- of its type starts no entity."""
    spans = []
    for entity in Entities([tags], IOB2, suffix=False).entities[0]:
        first, last = entity.start, entity.end - 1
        start, end = words[first][1], words[last][2]
        spans.append({"type": entity.tag, "text": text[start:end], "start": start, "end": end,
                      "words": [w for w, _, _ in words[first:last + 1]]})
    return spans


TASK_KINDS: dict[str, TaskKind] = {}


def register_task_kind(kind: TaskKind) -> TaskKind:
    """Make `kind` known by its name; one that lacks what the others call fails here."""
    missing = [m for m in TaskKind.REQUIRED if not hasattr(kind, m)]
    if missing:
        raise TypeError(f"task kind {type(kind).__name__} lacks {', '.join(missing)} (see TaskKind)")
    TASK_KINDS[kind.name] = kind
    return kind


def get_task_kind(name: str) -> TaskKind:
    if name not in TASK_KINDS:
        raise ValueError(f"unknown task kind {name!r}; choose one of {', '.join(TASK_KINDS)}")
    return TASK_KINDS[name]


register_task_kind(SentenceClassification())
register_task_kind(TokenClassification())
