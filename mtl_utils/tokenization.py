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

IGNORE_INDEX = -100
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


def tokenize_words(tokenizer: PreTrainedTokenizerBase, sentences: list[list[str]], max_length: int,
                   tags: list[list[str]] | None = None, spec=None) -> dict[str, list]:
    """Tokenise pre-split sentences; align word labels (when given) to first subwords.

    Per sentence also: `labelled_words[k]`, the word whose first subword sits at token position
    `word_starts[k]`; `num_words`; and `words_kept`, the words before the max_length cut.
    """
    for i, words in enumerate(sentences):
        if tags is not None and len(words) != len(tags[i]):
            raise ValueError(f"example {i}: {len(words)} tokens but {len(tags[i])} tags")
    encoded = tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=max_length)
    keys = ("input_ids", "attention_mask", "word_shape_ids", "labelled_words", "word_starts", "num_words",
            "words_kept") + (("labels",) if tags is not None else ())
    out: dict[str, list] = {key: [] for key in keys}
    cut = empty = 0
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
        # Truncation cuts the words after the last one it kept; a word with no subword at all
        # (e.g. a lone control character) is not "cut".
        kept = labelled[-1] + 1 if encoded.encodings[i].overflowing and labelled else len(words)
        cut += len(words) - kept
        empty += kept - sum(word < kept for word in labelled)
        for key, value in zip(keys, (encoded["input_ids"][i], encoded["attention_mask"][i], shapes, labelled,
                                     starts, len(words), kept, labels)):
            out[key].append(value)
    if cut or empty:
        warnings.warn(f"{cut} word(s) cut by max_length={max_length} and {empty} word(s) with no subword: "
                      "they carry no label in training and are predicted 'O' in evaluation", stacklevel=2)
    return out


def tokenize_sentences(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int,
                       name: str = "sentences") -> dict[str, list]:
    """Token ids of whole sentences, truncated to max_length (with a warning that counts the cut ones)."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    n_cut = sum(bool(e.overflowing) for e in encoded.encodings)
    if n_cut:
        warnings.warn(f"{name}: {n_cut} sentence(s) truncated to {max_length} tokens", stacklevel=3)
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def tokenize_split(split: Dataset, spec, tokenizer: PreTrainedTokenizerBase, max_length: int = 256) -> dict[str, list]:
    """Model inputs (python lists, unpadded) for one split of a task, as its task kind tokenises it."""
    if len(split) == 0:
        raise ValueError(f"task {spec.name!r}: the split is empty (empty dataset)")
    return spec.task_kind.tokenize(split, spec, tokenizer, max_length)


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
        batch["labels"] = padded("labels", IGNORE_INDEX) if isinstance(labels[0], list) else torch.tensor(labels)
    return batch
