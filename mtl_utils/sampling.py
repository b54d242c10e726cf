"""Which batch comes next: length-grouped batches within a task, and a multi-task schedule across tasks.

Every batch holds one task's examples (one head, one backbone pass). An epoch has as many batches as one pass
over every task: proportional (every batch once, shuffled: task i ~ n_i), temperature (task i ~ n_i ** (1/T))
or round_robin (tasks take turns; a small task is re-shuffled and repeated when it runs out). With
`examples_per_epoch`, a large task gets N examples per epoch, the next slice of one fixed shuffle each time."""
from __future__ import annotations

import math
from typing import Iterator

import torch

STRATEGIES = ("proportional", "temperature", "round_robin")


def length_grouped_batches(lengths: list[int], batch_size: int, generator: torch.Generator,
                           group_batches: int = 50, indices: list[int] | None = None) -> list[list[int]]:
    """Shuffle, sort by length inside groups of `group_batches` batches, cut into batches, shuffle the batches:
    similar lengths share a batch (few pad tokens) and the order stays random. `indices`: those examples only."""
    indices = list(range(len(lengths))) if indices is None else indices
    order = [indices[i] for i in torch.randperm(len(indices), generator=generator).tolist()]
    group = batch_size * group_batches
    batches = []
    for start in range(0, len(order), group):
        chunk = sorted(order[start:start + group], key=lambda i: lengths[i], reverse=True)
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def check_strategy(strategy: str, temperature: float = 1.0) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown sampling strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if strategy == "temperature" and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return strategy


class MultiTaskBatchSampler:
    """Yields (task, example indices) pairs; call set_epoch(e) before each epoch for a new order."""

    def __init__(self, task_lengths: dict[str, list[int]], batch_size: int, strategy: str = "proportional",
                 temperature: float = 2.0, seed: int = 0, examples_per_epoch: dict[str, int] | None = None):
        self.strategy = check_strategy(strategy, temperature)
        for task, lengths in task_lengths.items():
            if not lengths:
                raise ValueError(f"task {task!r} has no training examples (empty dataset)")
        self.task_lengths, self.batch_size = task_lengths, batch_size
        self.temperature, self.seed, self.epoch = temperature, seed, 0
        self.examples_per_epoch = {}
        for task, n in (examples_per_epoch or {}).items():
            if task not in task_lengths:
                raise ValueError(f"examples per epoch: unknown task {task!r}; training tasks: {', '.join(task_lengths)}")
            if n < 1:
                raise ValueError(f"examples per epoch for {task!r} must be positive, got {n}")
            if n < len(task_lengths[task]):
                self.examples_per_epoch[task] = n
        self._shuffles = {task: torch.randperm(len(task_lengths[task]), generator=torch.Generator().manual_seed(seed)).tolist()
                          for task in self.examples_per_epoch}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_examples(self, task: str) -> list[int] | None:
        """This epoch's examples of `task`: None for all, else the epoch's slice of the task's fixed shuffle."""
        if task not in self.examples_per_epoch:
            return None
        shuffle, n = self._shuffles[task], self.examples_per_epoch[task]
        return [shuffle[(self.epoch * n + j) % len(shuffle)] for j in range(n)]

    def batches_per_task(self) -> dict[str, int]:
        return {task: math.ceil(self.examples_per_epoch.get(task, len(lengths)) / self.batch_size)
                for task, lengths in self.task_lengths.items()}

    def __len__(self) -> int:
        return sum(self.batches_per_task().values())

    def task_probabilities(self) -> dict[str, float]:
        sizes = {task: self.examples_per_epoch.get(task, len(lengths)) for task, lengths in self.task_lengths.items()}
        power = 1.0 / self.temperature if self.strategy == "temperature" else 1.0
        weights = {task: 1.0 if self.strategy == "round_robin" else n ** power for task, n in sizes.items()}
        total = sum(weights.values())
        return {task: w / total for task, w in weights.items()}

    def __iter__(self) -> Iterator[tuple[str, list[int]]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        tasks = list(self.task_lengths)
        subsets = {task: self.epoch_examples(task) for task in tasks}

        def fresh_pass(task: str) -> list[list[int]]:
            return length_grouped_batches(self.task_lengths[task], self.batch_size, generator, indices=subsets[task])

        pools = {task: fresh_pass(task) for task in tasks}
        if self.strategy == "proportional":
            schedule = [task for task in tasks for _ in pools[task]]
            for i in torch.randperm(len(schedule), generator=generator).tolist():
                yield schedule[i], pools[schedule[i]].pop()
            return
        probabilities = torch.tensor([self.task_probabilities()[t] for t in tasks])
        for step in range(len(self)):
            if self.strategy == "round_robin":
                task = tasks[step % len(tasks)]
            else:
                task = tasks[int(torch.multinomial(probabilities, 1, generator=generator))]
            if not pools[task]:  # ran out: a fresh pass over this task
                pools[task] = fresh_pass(task)
            yield task, pools[task].pop()
