"""Several processes (DDP): the accelerator, the sharded batch loader, the log, main-process-only work.

With N processes (torchrun, `accelerate launch`), Accelerate wraps the model in DDP and shards the
sampler's batches: process i gets batches i, i + N, ... of the epoch (the same seeded schedule in every
process), each as many (the last repeated if needed), so none waits forever in a gradient all-reduce.
With one process every helper here is the plain computation.
"""
from __future__ import annotations

import os
from typing import Callable

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs, PartialState
from accelerate.utils import broadcast_object_list
from torch.utils.data import DataLoader

from .sampling import MultiTaskBatchSampler


def cpu_processes() -> bool:
    """True for several processes on a machine without a GPU: Accelerate sets up gloo only when told
    `cpu=True`; else each process would train alone, and all would write the same files."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if hasattr(torch, "accelerator"):  # torch >= 2.6; MPS has no multi-process backend
        return not torch.accelerator.is_available() or torch.accelerator.current_accelerator().type == "mps"
    return not torch.cuda.is_available()


def distributed_state() -> PartialState:
    """This process's place in a (possibly) distributed run: the state train()'s Accelerator will share."""
    return PartialState(cpu=cpu_processes())


def make_accelerator() -> Accelerator:
    """Accelerate for placement, DDP and sharding; mixed precision is the step's own autocast (precision.py)."""
    # find_unused_parameters: in one step, processes may run batches of different tasks (other heads,
    # routed layers without gradients); DDP then reduces zeros for the parameters a process did not use.
    return Accelerator(mixed_precision="no", cpu=cpu_processes(),  # not `accelerate launch`'s: ours
                       kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])


class RowIndexed(torch.utils.data.Dataset):
    """A (task, row)-indexed dataset whose items carry their row: (row, (task, example))."""

    def __init__(self, dataset: torch.utils.data.Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: tuple[str, int]) -> tuple[int, tuple[str, dict]]:
        return index[1], self.dataset[index]


class TaskBatches:
    """Adapts (task, rows) from the sampler to the (task, row) indices a DataLoader batch_sampler yields."""

    def __init__(self, sampler: MultiTaskBatchSampler):
        self.sampler = sampler

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self):
        for task, rows in self.sampler:
            yield [(task, row) for row in rows]


def batch_loader(accelerator: Accelerator, dataset: torch.utils.data.Dataset, sampler: MultiTaskBatchSampler,
                 collate: Callable[[str, list[dict]], dict]) -> DataLoader:
    """Batches of one task each, as (task, batch, rows), sharded between processes (the rows name a
    batch whose loss is not finite, and find its teacher vectors)."""

    def collate_items(items: list[tuple[int, tuple[str, dict]]]) -> tuple[str, dict, list[int]]:
        task = items[0][1][0]
        return task, collate(task, [example for _, (_, example) in items]), [row for row, _ in items]

    return accelerator.prepare(DataLoader(RowIndexed(dataset), batch_sampler=TaskBatches(sampler),
                                          collate_fn=collate_items))


def everyones_step(accelerator: Accelerator, entry: dict, task_names: list[str], n_sentences: int) -> int:
    """With several processes, every process's task and loss (main first) in a step's log entry; returns
    the sentences all of them trained on."""
    if accelerator.num_processes == 1:
        return n_sentences
    mine = torch.tensor([[task_names.index(entry["task"]), entry["loss"], n_sentences]], dtype=torch.float64,
                        device=accelerator.device)
    everyone = accelerator.gather(mine).tolist()
    entry["tasks"] = [task_names[int(t)] for t, _, _ in everyone]
    entry["losses"] = [value for _, value, _ in everyone]
    return int(sum(n for _, _, n in everyone))


def from_main(accelerator: Accelerator, compute: Callable[[], object]) -> object:
    """`compute()` in the main process alone (evaluation, a checkpoint write), its result broadcast."""
    result = compute() if accelerator.is_main_process else None
    return broadcast_object_list([result])[0]
