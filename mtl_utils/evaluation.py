"""Run a model over a held-out split and score it."""
from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset

from .encoder import SentenceEncoder
from .metrics import classification_metrics, entity_metrics, spearman
from .model import MultiTaskModel, word_tags
from .tokenization import pad_batch


@torch.inference_mode()
def evaluate_task(model: MultiTaskModel, task: str, split: Dataset, features: dict[str, list],
                  batch_size: int = 128) -> dict:
    """Metrics of one task on one labelled split (features = tokenize_split of the same split)."""
    spec = model.tasks[task]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n = len(features["input_ids"])
    order = np.argsort([-len(ids) for ids in features["input_ids"]], kind="stable")
    keys = [k for k in ("input_ids", "attention_mask", "word_shape_ids") if k in features]
    gold = list(split["tags"]) if spec.kind == "token" else features["labels"]
    predictions: list = [None] * n
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        batch = pad_batch([{k: features[k][i] for k in keys} for i in rows], model.encoder.tokenizer.pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(task, **batch)["logits"].float().cpu()
        for j, i in enumerate(rows):
            if spec.kind == "sentence":
                predictions[i] = int(logits[j].argmax())
            else:
                predictions[i] = word_tags(spec, logits[j], features["labelled_words"][i], features["word_starts"][i],
                                           len(gold[i]))
    model.train(was_training)
    if spec.kind == "sentence":
        return classification_metrics(gold, predictions, list(spec.labels))
    return entity_metrics(gold, predictions)


@torch.inference_mode()
def stsb_spearman(encoder: SentenceEncoder, pairs: Dataset, batch_size: int = 128) -> float:
    """How much general sentence knowledge the encoder keeps: Spearman(cosine, gold) on STS-B pairs."""
    first = torch.as_tensor(encoder.encode(list(pairs["sentence1"]), batch_size=batch_size))
    second = torch.as_tensor(encoder.encode(list(pairs["sentence2"]), batch_size=batch_size))
    cosine = torch.nn.functional.cosine_similarity(first, second).tolist()
    return spearman(cosine, list(pairs["score"]))
