"""Raw text in, every task's prediction out: split words, tokenise, one backbone pass, decode per task."""
from __future__ import annotations

import re

import torch

from .batching import run_in_eval, select
from .tokenization import pad_batch, tokenize_words

WORD_PATTERN = re.compile(r"\w+(?:[-'’.]\w+)*|[^\w\s]")  # words and single punctuation marks, CoNLL-like


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Words with their character offsets in `text`."""
    return [(m.group(), m.start(), m.end()) for m in WORD_PATTERN.finditer(text)]


@torch.inference_mode()
def predict(model, texts: list[str], batch_size: int = 32) -> list[dict]:
    """Per sentence: {"text", "num_words", "words_seen", task: prediction, ...}: a sentence task's label and
    probability, a token task's entity spans. `words_seen` < `num_words`: cut at max_length (the rest: no entity)."""
    if isinstance(texts, str):
        raise TypeError("predict() takes a list of sentences; wrap a single sentence in a list")
    device = next(model.parameters()).device
    words = [split_words(text) for text in texts]
    # Every head reads the words' token ids: one backbone pass serves them all. Each kind adds its
    # per-token inputs (word shapes) and the columns its `describe` reads.
    kinds = [spec.task_kind for spec in model.tasks.values()]
    word_features = {name: feature for kind in kinds for name, feature in kind.word_features.items()}
    features = tokenize_words(model.encoder.tokenizer, [[w for w, _, _ in ws] for ws in words],
                              model.encoder.max_length, word_features=word_features)
    examples = select(features, range(len(texts)), [key for kind in kinds for key in kind.example_keys])

    def run(rows: list[int]) -> list[dict]:
        batch = pad_batch(select(features, rows, ("input_ids", "attention_mask", *word_features)),
                          model.encoder.tokenizer.pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        states = {}  # one backbone pass for all heads (one per adapter with per-task LoRA adapters)
        results = [{"text": texts[i], "num_words": len(words[i]), "words_seen": features["words_kept"][i]}
                   for i in rows]
        for task, part in model.parts.items():
            if part.adapter not in states:
                states[part.adapter] = model.token_states(task, batch["input_ids"], batch["attention_mask"])
            head_input = model.head_input(task, states[part.adapter], batch["attention_mask"])
            kind = part.spec.task_kind
            logits = kind.logits(part.head, head_input, batch).float().cpu()
            for result, i, row_logits in zip(results, rows, logits):
                result[task] = kind.describe(part.spec, row_logits, examples[i], words[i], texts[i])
        return results

    return run_in_eval(model, features, batch_size, run) if texts else []
