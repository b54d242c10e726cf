"""`python -m mtl_utils.train ARGS [--next ARGS ...]`: one run after the other in the same processes,
keeping a copy of the first run's epoch-1 checkpoint in $MTL_TEST_CHECKPOINT_COPY, and of its first
checkpoint inside an epoch in $MTL_TEST_MIDEPOCH_COPY (where set).

test_distributed.py runs it under torchrun (one launch, several runs: starting Python with torch and
transformers is most of a small run's time), then resumes from the copies: a resume from epoch 1,
or from inside an epoch, without having to kill a run at the right moment. Only the main process
saves checkpoints, so only it copies.

$MTL_TEST_NAN=RUN:PROCESS:N makes the loss NaN at the N-th training forward of process PROCESS in
run RUN (0-based), to check that every process skips that step (--skip-nonfinite) without waiting
for the others forever.
"""
import os
import shutil
import sys

from mtl_utils import checkpointing
from mtl_utils.model import MultiTaskModel
from mtl_utils.train import main

save = checkpointing.save_training_state
copies = {"epoch": os.environ.get("MTL_TEST_CHECKPOINT_COPY"), "mid-epoch": os.environ.get("MTL_TEST_MIDEPOCH_COPY")}


def save_and_copy(directory, epoch, *args, **kwargs):
    written = save(directory, epoch, *args, **kwargs)
    kind = "epoch" if kwargs.get("within_epoch") is None else "mid-epoch"
    if (kind == "mid-epoch" or epoch == 1) and copies[kind]:
        shutil.copytree(directory, copies[kind])
        copies[kind] = None
    return written


checkpointing.save_training_state = save_and_copy
nan_run, nan_process, nan_forward = map(int, os.environ.get("MTL_TEST_NAN", "-1:-1:-1").split(":"))
forward, forwards, current_run = MultiTaskModel.forward, [0], [-1]


def forward_with_a_nan(self, *args, **kwargs):
    out = forward(self, *args, **kwargs)
    if self.training and current_run[0] == nan_run and int(os.environ.get("RANK", 0)) == nan_process:
        forwards[0] += 1
        if forwards[0] == nan_forward:
            out = {**out, "loss": out["loss"] * float("nan")}
    return out


MultiTaskModel.forward = forward_with_a_nan
runs = [[]]
for arg in sys.argv[1:]:
    if arg == "--next":
        runs.append([])
    else:
        runs[-1].append(arg)
for current_run[0], args in enumerate(runs):
    main(args)
