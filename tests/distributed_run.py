"""`python -m mtl_utils.train ARGS [--next ARGS ...]`: one run after the other in the same processes,
keeping a copy of the first run's epoch-1 checkpoint in $MTL_TEST_CHECKPOINT_COPY.

test_distributed.py runs it under torchrun (one launch, two runs: starting Python with torch and
transformers is most of a small run's time), then resumes from the copy: a resume from epoch 1
without having to kill a run at the right moment. Only the main process saves checkpoints, so
only it copies.
"""
import os
import shutil
import sys

from mtl_utils import training
from mtl_utils.train import main

save = training.save_training_state
copied = False


def save_and_copy(directory, epoch, *args, **kwargs):
    global copied
    written = save(directory, epoch, *args, **kwargs)
    if epoch == 1 and not copied:
        shutil.copytree(directory, os.environ["MTL_TEST_CHECKPOINT_COPY"])
        copied = True
    return written


training.save_training_state = save_and_copy
runs = [[]]
for arg in sys.argv[1:]:
    if arg == "--next":
        runs.append([])
    else:
        runs[-1].append(arg)
for args in runs:
    main(args)
