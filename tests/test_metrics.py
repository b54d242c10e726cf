import pytest

from mtl_utils.metrics import classification_metrics, entity_metrics, spearman


def test_strict_entity_f1():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    assert entity_metrics(gold, gold)["f1"] == 1.0
    # Half an entity is a miss, not 3/4 of the tokens right.
    partial = entity_metrics(gold, [["B-PER", "O", "O", "B-LOC"]])
    assert partial["precision"] == 0.5 and partial["recall"] == 0.5
    assert partial["per_type"]["PER"]["f1"] == 0.0 and partial["per_type"]["LOC"]["f1"] == 1.0


def test_strict_mode_rejects_entity_starting_with_i():
    gold = [["B-LOC", "I-LOC"]]
    assert entity_metrics(gold, [["I-LOC", "I-LOC"]])["f1"] == 0.0  # lenient (conlleval) scoring would say 1.0


def test_classification_metrics():
    m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["negative", "positive"])
    assert m["accuracy"] == 0.75
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_spearman():
    assert spearman([0.1, 0.5, 0.9], [1, 2, 5]) == pytest.approx(1.0)
    assert spearman([0.9, 0.5, 0.1], [1, 2, 5]) == pytest.approx(-1.0)
