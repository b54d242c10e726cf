"""Document context for a token task: the neighbouring sentences of the same document as extra input words
without labels (FLERT, Schweter & Akbik 2020). The tagger reads "Jordan" in a sentence about basketball, but
learns and is scored on the sentence's own words only (the token kind puts labels there alone)."""
from __future__ import annotations

import warnings

from datasets import Dataset


def check_context(sentences: int) -> int:
    if not isinstance(sentences, int) or sentences < 0:
        raise ValueError(f"context sentences must be a whole number, 0 or more; got {sentences!r}")
    return sentences


def add_document_context(split: Dataset, sentences: int) -> Dataset:
    """The split with `context_before` and `context_after`: the words of up to `sentences` sentences before and
    after each one in its document, in file order. Call it before shuffling or subsetting the split. A split
    without a `document` column (the Hub copy of CoNLL-2003) takes its neighbours in file order, with a warning."""
    if not check_context(sentences):
        return split
    words = list(split["tokens"])
    if "document" in split.column_names:
        documents = list(split["document"])
    else:
        warnings.warn("no document boundaries in this copy of the data: the context sentences are the file's "
                      "neighbours, across documents", stacklevel=2)
        documents = [0] * len(words)

    def joined(rows: range, i: int) -> list[str]:
        return [word for j in rows if 0 <= j < len(words) and documents[j] == documents[i] for word in words[j]]

    before = [joined(range(i - sentences, i), i) for i in range(len(words))]
    after = [joined(range(i + 1, i + 1 + sentences), i) for i in range(len(words))]
    return split.add_column("context_before", before).add_column("context_after", after)
