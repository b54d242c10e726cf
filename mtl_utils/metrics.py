"""Held-out metrics: strict entity F1 for NER, accuracy and macro-F1 for classification, Spearman for STS-B."""
from __future__ import annotations

from scipy.stats import spearmanr
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2
from sklearn.metrics import accuracy_score, f1_score


def entity_metrics(gold: list[list[str]], predicted: list[list[str]]) -> dict:
    """Strict IOB2 entity scores (an entity counts only if its type and both ends match), overall and per type."""
    report = classification_report(gold, predicted, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    scores = {name: {"precision": r["precision"], "recall": r["recall"], "f1": r["f1-score"],
                     "support": int(r["support"])} for name, r in report.items()}
    return {**scores["micro avg"], "per_type": {name: s for name, s in scores.items() if not name.endswith(" avg")}}


def classification_metrics(gold: list[int], predicted: list[int], labels: list[str]) -> dict:
    macro_f1 = f1_score(gold, predicted, labels=list(range(len(labels))), average="macro", zero_division=0)
    return {"accuracy": float(accuracy_score(gold, predicted)), "macro_f1": float(macro_f1), "support": len(gold)}


def spearman(scores: list[float], gold: list[float]) -> float:
    return float(spearmanr(scores, gold).statistic)
