import collections

import pytest
import torch

from mtl_utils.sampling import STRATEGIES, MultiTaskBatchSampler, length_grouped_batches

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


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_epoch_has_its_own_order(strategy):
    sampler = MultiTaskBatchSampler(LENGTHS, batch_size=32, strategy=strategy, seed=7)
    epochs = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        epochs.append(list(sampler))
    for i in range(4):
        for j in range(i + 1, 4):
            assert epochs[i] != epochs[j]
            first_batches = {task: next(rows for t, rows in epochs[i] if t == task) for task in LENGTHS}
            assert first_batches != {task: next(rows for t, rows in epochs[j] if t == task) for task in LENGTHS}
            if strategy != "round_robin":  # round robin's task order is the same every epoch, by design
                assert [t for t, _ in epochs[i]] != [t for t, _ in epochs[j]]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_epoch_slices_do_not_overlap(strategy):
    """700 of 3,000 sentiment examples per epoch: epochs 1-4 see 2,800 different ones, epoch 5 the last 200
    and 500 from the start again; within an epoch, repeats (round robin, temperature) stay in its slice."""
    sampler = MultiTaskBatchSampler(LENGTHS, batch_size=32, strategy=strategy, examples_per_epoch={"sentiment": 700})
    slices = []
    for epoch in range(5):
        sampler.set_epoch(epoch)
        rows = {r for task, batch in sampler if task == "sentiment" for r in batch}
        epoch_slice = set(sampler.epoch_examples("sentiment"))
        assert len(epoch_slice) == 700 and rows <= epoch_slice
        if strategy != "temperature":  # temperature draws tasks at random: it may take fewer batches than 700 / 32
            assert rows == epoch_slice
        slices.append(epoch_slice)
    assert all(not slices[i] & slices[j] for i in range(4) for j in range(i + 1, 4))
    assert set().union(*slices) == set(range(3000))
    assert len(slices[4] & slices[0]) == 500 and not slices[4] & (slices[1] | slices[2])


def test_the_training_loader_follows_the_sampler_epoch():
    """What train() iterates: Accelerate's loader around our sampler, with the epoch set before each
    pass; a fresh loader set to epoch 2 (a resumed run) gives epoch 2's order, not epoch 0's again."""
    from accelerate.data_loader import prepare_data_loader
    from torch.utils.data import DataLoader

    from mtl_utils.distributed import TaskBatches

    class Indices(torch.utils.data.Dataset):
        def __getitem__(self, index):
            return index

    sampler = MultiTaskBatchSampler(LENGTHS, batch_size=64, seed=3)
    expected = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        expected.append(list(sampler))

    def loader():
        return prepare_data_loader(DataLoader(Indices(), batch_sampler=TaskBatches(sampler), collate_fn=list),
                                   num_processes=1, process_index=0)

    def batches(loader):
        return [(items[0][0], [row for _, row in items]) for items in loader]

    training_loader = loader()
    for epoch in range(3):
        training_loader.set_epoch(epoch)
        assert batches(training_loader) == expected[epoch]
    resumed = loader()
    resumed.set_epoch(2)
    assert batches(resumed) == expected[2]
