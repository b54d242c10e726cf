import collections

import pytest
import torch

from mtl_utils.sampling import MultiTaskBatchSampler, length_grouped_batches

LENGTHS = {"ner": [5 + i % 40 for i in range(1000)], "sentiment": [3 + i % 20 for i in range(3000)]}


def test_proportional_uses_every_example_once():
    sampler = MultiTaskBatchSampler(LENGTHS, batch_size=32, strategy="proportional")
    seen = collections.defaultdict(list)
    for task, rows in sampler:
        seen[task] += rows
    assert sorted(seen["ner"]) == list(range(1000))
    assert sorted(seen["sentiment"]) == list(range(3000))
    assert len(list(sampler)) == len(sampler) == 32 + 94


def test_temperature_proportions():
    sampler = MultiTaskBatchSampler(LENGTHS, batch_size=8, strategy="temperature", temperature=2.0)
    expected = 1000 ** 0.5 / (1000 ** 0.5 + 3000 ** 0.5)
    assert sampler.task_probabilities()["ner"] == pytest.approx(expected)
    counts = collections.Counter(task for epoch in range(4) for task, _ in (sampler.set_epoch(epoch) or sampler))
    assert counts["ner"] / sum(counts.values()) == pytest.approx(expected, abs=0.03)


def test_round_robin_alternates():
    sampler = MultiTaskBatchSampler(LENGTHS, batch_size=32, strategy="round_robin")
    tasks = [task for task, _ in sampler]
    assert tasks[:4] == ["ner", "sentiment", "ner", "sentiment"]
    assert len(tasks) == len(sampler)


def test_every_batch_holds_one_task_and_epochs_differ():
    sampler = MultiTaskBatchSampler(LENGTHS, batch_size=16)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert first != second
    assert all(max(rows) < len(LENGTHS[task]) for task, rows in first)
    sampler.set_epoch(0)
    assert list(sampler) == first  # the same seed and epoch give the same order


def test_length_grouping_reduces_padding():
    lengths = torch.randint(3, 60, (2000,), generator=torch.Generator().manual_seed(0)).tolist()
    grouped = length_grouped_batches(lengths, 32, torch.Generator().manual_seed(0))
    assert sorted(i for b in grouped for i in b) == list(range(2000))
    order = torch.randperm(2000, generator=torch.Generator().manual_seed(0)).tolist()
    random_batches = [order[i:i + 32] for i in range(0, 2000, 32)]

    def padded_tokens(batches):
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    assert padded_tokens(grouped) < 0.7 * padded_tokens(random_batches)


def test_bad_strategy_and_empty_task():
    with pytest.raises(ValueError, match="unknown sampling strategy 'random'"):
        MultiTaskBatchSampler(LENGTHS, 8, strategy="random")
    with pytest.raises(ValueError, match="task 'ner' has no training examples"):
        MultiTaskBatchSampler({"ner": []}, 8)


def test_examples_per_epoch_walks_through_the_whole_task():
    sampler = MultiTaskBatchSampler(LENGTHS, batch_size=32, examples_per_epoch={"sentiment": 1000})
    assert sampler.batches_per_task() == {"ner": 32, "sentiment": 32}
    seen = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        rows = [r for task, batch in sampler if task == "sentiment" for r in batch]
        assert len(rows) == len(set(rows)) == 1000
        seen += rows
    assert sorted(seen) == list(range(3000))  # three epochs = one pass over every example, no repeats
    with pytest.raises(ValueError, match="unknown task 'pos'"):
        MultiTaskBatchSampler(LENGTHS, 8, examples_per_epoch={"pos": 5})
