"""Tokenise once, before training, and pad per batch. Word labels go on each word's first subword; other subwords
and special tokens get -100, which the loss ignores. A word cut by truncation (or with no subword) keeps no
label here; evaluation scores it as "O" and counts it, so nothing disappears from the gold data silently."""
from __future__ import annotations

import warnings
from types import SimpleNamespace
from typing import TYPE_CHECKING, Callable

import torch
from transformers import PreTrainedTokenizerBase

if TYPE_CHECKING:
    from datasets import Dataset

IGNORE_INDEX = -100


def tokenize_words(tokenizer: PreTrainedTokenizerBase, sentences: list[list[str]], max_length: int,
                   tags: list[list[str]] | None = None, spec=None,
                   word_features: dict[str, Callable[[str], int]] | None = None,
                   contexts: list[tuple[list[str], list[str]]] | None = None) -> dict[str, list]:
    """Tokenise pre-split sentences; align word labels (when given) to first subwords. Per sentence also:
    `labelled_words[k]`, the word whose first subword is at token position `word_starts[k]`; `num_words`;
    `words_kept` (before the max_length cut); and per token, each of `word_features` (name: function of a
    word) for the token's word (0 at special tokens). `contexts`: per sentence, (words before, words after)
    that go in beside it without labels, as many of their tokens as max_length leaves room for."""
    word_features = word_features or {}
    for i, words in enumerate(sentences):
        if tags is not None and len(words) != len(tags[i]):
            raise ValueError(f"example {i}: {len(words)} tokens but {len(tags[i])} tags")
    encoded = (tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=max_length)
               if contexts is None else in_context(tokenizer, sentences, contexts, max_length))
    keys = ("input_ids", "attention_mask", *word_features, "labelled_words", "word_starts", "num_words",
            "words_kept") + (("labels",) if tags is not None else ())
    out: dict[str, list] = {key: [] for key in keys}
    cut = empty = 0
    for i, words in enumerate(sentences):
        # Word ids count from the first context word: the sentence's own words are offset..offset + len(words) - 1.
        word_ids, offset = encoded.word_ids(i), len(contexts[i][0]) if contexts else 0
        sequence = [*contexts[i][0], *words, *contexts[i][1]] if contexts else words
        starts = [p for p, word in enumerate(word_ids) if word is not None and offset <= word < offset + len(words)
                  and word != (word_ids[p - 1] if p else None)]
        labelled = [word_ids[p] - offset for p in starts]
        per_token = [[0 if word is None else f(sequence[word]) for word in word_ids] for f in word_features.values()]
        labels = [IGNORE_INDEX] * len(word_ids)
        for position, word in zip(starts, labelled if tags is not None else []):
            labels[position] = spec.label_id(tags[i][word])
        # Truncation cuts the words after the last one kept; a word with no subword at all is not "cut".
        kept = labelled[-1] + 1 if encoded.encodings[i].overflowing and labelled else len(words)
        cut += len(words) - kept
        empty += kept - sum(word < kept for word in labelled)
        for key, value in zip(keys, (encoded["input_ids"][i], encoded["attention_mask"][i], *per_token, labelled,
                                     starts, len(words), kept, labels)):
            out[key].append(value)
    if cut or empty:
        warnings.warn(f"{cut} word(s) cut by max_length={max_length} and {empty} word(s) with no subword: "
                      "they carry no label in training and are predicted 'O' in evaluation", stacklevel=2)
    return out


class InContext(dict):
    """What tokenize_words reads from a tokenizer's output (ids, mask, word ids, whether cut), built by hand."""

    def __init__(self, rows: list[tuple[list[int], list[int | None], bool]]):
        super().__init__(input_ids=[ids for ids, _, _ in rows], attention_mask=[[1] * len(ids) for ids, _, _ in rows])
        self._word_ids = [word_ids for _, word_ids, _ in rows]
        self.encodings = [SimpleNamespace(overflowing=cut) for _, _, cut in rows]

    def word_ids(self, i: int) -> list[int | None]:
        return self._word_ids[i]


def in_context(tokenizer: PreTrainedTokenizerBase, sentences: list[list[str]],
               contexts: list[tuple[list[str], list[str]]], max_length: int) -> InContext:
    """Each sentence between its context words: all of the sentence's tokens (cut at the end where it alone
    is too long), then context tokens from both sides, half the room each (more where one side has fewer)."""
    sequences = [[*before, *words, *after] for words, (before, after) in zip(sentences, contexts)]
    encoded = tokenizer(sequences, is_split_into_words=True, add_special_tokens=False)
    # The special tokens the tokenizer puts around a sentence ([CLS] ... [SEP] for BERT), found by example.
    alone, bare = tokenizer("a")["input_ids"], tokenizer("a", add_special_tokens=False)["input_ids"]
    at = next(k for k in range(len(alone)) if alone[k:k + len(bare)] == bare)
    before_ids, after_ids = alone[:at], alone[at + len(bare):]
    room_for_tokens, rows = max_length - len(before_ids) - len(after_ids), []
    for i, (words, (before, _)) in enumerate(zip(sentences, contexts)):
        ids, word_ids = encoded["input_ids"][i], encoded.word_ids(i)
        start = sum(word < len(before) for word in word_ids)  # the sentence's first token
        end = start + sum(len(before) <= word < len(before) + len(words) for word in word_ids)
        kept_end = min(end, start + room_for_tokens)
        room = room_for_tokens - (kept_end - start)
        left = min(start, max(room // 2, room - (len(ids) - end)))
        window = range(start - left, kept_end + min(len(ids) - end, room - left))
        rows.append((before_ids + [ids[p] for p in window] + after_ids,
                     [None] * len(before_ids) + [word_ids[p] for p in window] + [None] * len(after_ids), kept_end < end))
    return InContext(rows)


def tokenize_sentences(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int,
                       name: str = "sentences") -> dict[str, list]:
    """Token ids of whole sentences, truncated to max_length (with a warning that counts the cut ones)."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    if n_cut := sum(bool(e.overflowing) for e in encoded.encodings):
        warnings.warn(f"{name}: {n_cut} sentence(s) truncated to {max_length} tokens", stacklevel=3)
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def tokenize_split(split: Dataset, spec, tokenizer: PreTrainedTokenizerBase, max_length: int = 256) -> dict[str, list]:
    """Model inputs (python lists, unpadded) for one split of a task, as its task kind tokenises it."""
    if len(split) == 0:
        raise ValueError(f"task {spec.name!r}: the split is empty (empty dataset)")
    return spec.task_kind.tokenize(split, spec, tokenizer, max_length)


def pad_batch(examples: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad every per-token column (a list per example) to the batch's longest: input_ids with the pad token,
    labels with IGNORE_INDEX, any other with 0; a column of one value per example is stacked."""
    longest = max(len(e["input_ids"]) for e in examples)
    fill = {"input_ids": pad_token_id, "labels": IGNORE_INDEX}
    return {key: torch.tensor([e[key] + [fill.get(key, 0)] * (longest - len(e[key])) if isinstance(e[key], list)
                               else e[key] for e in examples]) for key in examples[0]}
