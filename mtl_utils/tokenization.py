"""Tokenise once, before training, and pad per batch.

Word labels go on the first subword of each word; the other subwords and the special tokens get
-100, which the loss ignores. A word that is cut by truncation (or that the tokenizer turns into
no subword at all) keeps no label here; evaluation scores it as "O" and counts it, so nothing
disappears from the gold data silently.
"""
from __future__ import annotations

import warnings

import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from .heads import word_shape
from .tasks import TaskSpec

IGNORE_INDEX = -100


def tokenize_words(tokenizer: PreTrainedTokenizerBase, sentences: list[list[str]], max_length: int,
                   tags: list[list[str]] | None = None, spec: TaskSpec | None = None) -> dict[str, list]:
    """Tokenise pre-split sentences; align word labels (when given) to first subwords."""
    for i, words in enumerate(sentences):
        if tags is not None and len(words) != len(tags[i]):
            raise ValueError(f"example {i}: {len(words)} tokens but {len(tags[i])} tags")
    encoded = tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=max_length)
    # labelled_words[k] is the word whose first subword sits at token position word_starts[k]
    out = {"input_ids": [], "attention_mask": [], "word_shape_ids": [], "labelled_words": [], "word_starts": []}
    if tags is not None:
        out["labels"] = []
    cut = 0
    for i, words in enumerate(sentences):
        word_ids = encoded.word_ids(i)
        shapes, labelled, starts, labels = [], [], [], []
        previous = None
        for position, word in enumerate(word_ids):
            shapes.append(0 if word is None else word_shape(words[word]))
            first = word is not None and word != previous
            if first:
                labelled.append(word)
                starts.append(position)
            if tags is not None:
                labels.append(spec.label_id(tags[i][word]) if first else IGNORE_INDEX)
            previous = word
        cut += len(words) - len(labelled)
        out["input_ids"].append(encoded["input_ids"][i])
        out["attention_mask"].append(encoded["attention_mask"][i])
        out["word_shape_ids"].append(shapes)
        out["labelled_words"].append(labelled)
        out["word_starts"].append(starts)
        if tags is not None:
            out["labels"].append(labels)
    if cut:
        warnings.warn(f"{cut} word(s) got no subword within max_length={max_length} (truncated or empty); "
                      "they carry no label in training and are predicted 'O' in evaluation", stacklevel=2)
    return out


def tokenize_split(split: Dataset, spec: TaskSpec, tokenizer: PreTrainedTokenizerBase, max_length: int = 256) -> dict[str, list]:
    """Model inputs (python lists, unpadded) for one split of a task."""
    if len(split) == 0:
        raise ValueError(f"task {spec.name!r}: the split is empty (empty dataset)")
    columns = split.to_dict()  # plain python lists
    if spec.kind == "token":
        return tokenize_words(tokenizer, columns["tokens"], max_length, columns["tags"], spec)
    texts = columns["text"]
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    n_cut = sum(len(ids) >= max_length for ids in encoded["input_ids"])
    if n_cut:
        warnings.warn(f"task {spec.name!r}: {n_cut} sentence(s) truncated to {max_length} tokens", stacklevel=2)
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
            "labels": [spec.label_id(label) for label in split["label"]]}


def pad_batch(examples: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Dynamic padding: pad to the longest sequence in this batch, not to a fixed length."""
    longest = max(len(e["input_ids"]) for e in examples)

    def padded(key: str, value: int) -> torch.Tensor:
        return torch.tensor([e[key] + [value] * (longest - len(e[key])) for e in examples])

    batch = {"input_ids": padded("input_ids", pad_token_id), "attention_mask": padded("attention_mask", 0)}
    if "word_shape_ids" in examples[0]:
        batch["word_shape_ids"] = padded("word_shape_ids", 0)
    if "labels" in examples[0]:
        labels = [e["labels"] for e in examples]
        if isinstance(labels[0], list):
            batch["labels"] = padded("labels", IGNORE_INDEX)
        else:
            batch["labels"] = torch.tensor(labels)
    return batch
