"""Run a model over a held-out split and score it."""
from __future__ import annotations

import torch
from datasets import Dataset

from .batching import run_in_eval, select
from .encoder import SentenceEncoder
from .metrics import spearman
from .model import MultiTaskModel


@torch.inference_mode()
def evaluate_task(model: MultiTaskModel, task: str, split: Dataset, features: dict[str, list],
                  batch_size: int = 128) -> dict:
    """Metrics of one task on one labelled split (features = tokenize_split of the same split)."""
    spec = model.tasks[task]
    kind = spec.task_kind
    device = next(model.parameters()).device
    examples = select(features, range(len(features["input_ids"])), kind.example_keys)

    def run(rows: list[int]) -> list:
        batch = kind.collate(select(features, rows, kind.batch_keys), model.encoder.tokenizer.pad_token_id)
        batch = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        logits = model(task, **batch)["logits"].float().cpu()
        return [kind.decode(spec, row_logits, examples[i]) for i, row_logits in zip(rows, logits)]

    return kind.score(spec, kind.gold(split, features), run_in_eval(model, features, batch_size, run))


@torch.inference_mode()
def stsb_spearman(encoder: SentenceEncoder, pairs: Dataset, batch_size: int = 128) -> float:
    """How much general sentence knowledge the encoder keeps: Spearman(cosine, gold) on STS-B pairs."""
    first = torch.as_tensor(encoder.encode(list(pairs["sentence1"]), batch_size=batch_size))
    second = torch.as_tensor(encoder.encode(list(pairs["sentence2"]), batch_size=batch_size))
    cosine = torch.nn.functional.cosine_similarity(first, second).tolist()
    return spearman(cosine, list(pairs["score"]))


def pair_cosines(vectors: torch.Tensor) -> torch.Tensor:
    """Cosine of every pair (i < j) of the rows of `vectors`."""
    unit = torch.nn.functional.normalize(torch.as_tensor(vectors).float(), dim=1)
    i, j = torch.triu_indices(len(unit), len(unit), offset=1)
    return (unit[i] * unit[j]).sum(1)


@torch.inference_mode()
def similarity_kept(encoder: SentenceEncoder, texts: list[str], reference_cosines: torch.Tensor) -> float:
    """STS-B's question asked of unlabelled sentences: Spearman between the encoder's pair cosines of `texts` and
    a reference's (`pair_cosines` of the pretrained encoder's vectors). 1 = the same ranking of pairs. For
    choosing settings on a development split without scoring on STS-B, which the book reports."""
    return spearman(pair_cosines(encoder.encode(texts)).tolist(), reference_cosines.tolist())
