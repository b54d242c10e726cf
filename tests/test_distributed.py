"""Several processes (DDP): two CPU processes under torchrun (gloo), on a small sample of the real data.

Two launches, about 30 s each here (most of it starting Python with torch and transformers):
  1. tests/distributed_run.py: the default (proportional) sampler, 2 epochs, a checkpoint every 3
     steps, keeping a copy of its epoch-1 checkpoint and of its step-3 one (inside epoch 1); then, in
     the same processes, a round_robin run (every step: one process on NER, the other on sentiment,
     routed to the top 2 layers), and a run with --skip-nonfinite where process 1 alone gets a NaN loss;
  2. `python -m mtl_utils.train --resume` from each copy, which must end exactly where the
     uninterrupted run did. On gloo with two processes it does, bit for bit: every process restores
     its own random state, and a sum of two gradients does not depend on the order of the reduction.
"""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from mtl_utils.model import MultiTaskModel
from mtl_utils.sampling import MultiTaskBatchSampler
from mtl_utils.distributed import TaskBatches
from tests.conftest import REPO
from tests.test_cli import gold_entities

SAMPLE = ["--max-train-samples", "32", "--max-eval-samples", "32", "--epochs", "2", "--batch-size", "8",
          "--no-stsb", "--quiet"]
LAUNCH = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]  # standalone: a free port


def launch(args: list[str], timeout: int = 240, **env) -> subprocess.CompletedProcess:
    """torchrun with two processes; the whole process group is killed if it hangs."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **env}
    process = subprocess.Popen([*LAUNCH, *args], cwd=REPO, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"{' '.join(args[:3])}: still running after {timeout} s (a process waiting for the other?)")
    assert process.returncode == 0, stderr[-3000:]
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def assert_written_once(stdout: str, out, epochs: int = 2) -> None:
    """Files of the main process alone: one log, one set of files, nothing half-written or per process."""
    assert stdout.count(f"wrote {out / 'metrics.json'}") == 1, stdout
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    checkpoint = {f"checkpoint/epoch-{epochs}/{name}" for name in ("model.safetensors", "optimizer.safetensors", "state.json")}
    heads = {f"model/heads/{task}/{name}" for task in ("ner", "sentiment") for name in ("config.json", "model.safetensors")}
    assert {"args.json", "history.json", "metrics.json", *heads, "model/mtl_config.json",
            "checkpoint/latest.json", *checkpoint} <= files
    others = {f for f in files if not f.startswith("model/encoder/")} - checkpoint
    assert others == {"args.json", "history.json", "metrics.json", *heads, "model/mtl_config.json",
                      "checkpoint/latest.json"}, sorted(files)


@pytest.fixture(scope="module")
def runs(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    data = ["--data-dir", str(shared_data)]
    first = launch(["tests/distributed_run.py", *data, *SAMPLE, "--checkpoint-every", "3",
                    "--output-dir", str(root / "proportional"),
                    "--next", *data, *SAMPLE, "--epochs", "1", "--sampler", "round_robin", "--route", "sentiment:2",
                    "--output-dir", str(root / "round_robin"),
                    "--next", *data, *SAMPLE, "--epochs", "1", "--skip-nonfinite", "--output-dir", str(root / "nan")],
                   MTL_TEST_CHECKPOINT_COPY=str(root / "epoch-1"), MTL_TEST_MIDEPOCH_COPY=str(root / "step-3"),
                   MTL_TEST_NAN="2:1:2")  # run 2, process 1, its 2nd step
    assert first.stdout.count("training examples") == 6, first.stdout  # 2 tasks x 3 runs, printed by one process
    for name, copy in (("resumed", "epoch-1"), ("resumed-mid-epoch", "step-3")):  # the proportional run then
        (root / name).mkdir()
        shutil.copy(root / "proportional" / "args.json", root / name)
        shutil.copytree(root / copy, root / name / "checkpoint")
    resume = launch(["tests/distributed_run.py", "--resume", str(root / "resumed"),
                     "--next", "--resume", str(root / "resumed-mid-epoch")])
    return {"root": root, "first": first.stdout, "resume": resume.stdout}


def load(out, name):
    return json.loads((out / name).read_text())


def test_two_processes_write_once_and_score_the_whole_held_out_sets(runs, shared_data):
    out = runs["root"] / "proportional"
    assert_written_once(runs["first"], out)
    metrics, history = load(out, "metrics.json"), load(out, "history.json")
    assert metrics["processes"] == 2
    # the whole held-out sets, not one process's half: 32 sentences and their entities
    assert metrics["tasks"]["sentiment"]["validation"]["support"] == 32
    for split in ("validation", "test"):
        assert metrics["tasks"]["ner"][split]["support"] == sum(gold_entities(shared_data / "conll2003" / f"{split}.txt", 32).values())
    assert history["epochs"][-1]["validation"] == {task: s["validation"] for task, s in metrics["tasks"].items()}
    # 4 + 4 batches per epoch, sharded: 4 steps per process per epoch, each process its own batch
    assert len(history["steps"]) == 8 and all(len(s["tasks"]) == len(s["losses"]) == 2 for s in history["steps"])
    assert all(s["task"] == s["tasks"][0] and s["loss"] == s["losses"][0] for s in history["steps"])
    for epoch in (1, 2):  # between them the processes ran each batch of the epoch once
        tasks = [t for s in history["steps"] if s["epoch"] == epoch for t in s["tasks"]]
        assert sorted(tasks) == ["ner"] * 4 + ["sentiment"] * 4
    assert any(len(set(s["tasks"])) == 2 for s in history["steps"])  # a step that mixed the two tasks


def test_round_robin_runs_different_tasks_in_the_same_step(runs):
    """Every step: NER on one process, sentiment on the other, routed to the top 2 layers (its lower
    layers run without gradients, so DDP reduces zeros for them from that process): no hang."""
    out = runs["root"] / "round_robin"
    assert_written_once(runs["first"], out, epochs=1)
    history = load(out, "history.json")
    assert [s["tasks"] for s in history["steps"]] == [["ner", "sentiment"]] * 4
    assert MultiTaskModel.from_pretrained(out / "model").layer_routing == {"sentiment": 2}


@pytest.mark.parametrize("copy", ["resumed", "resumed-mid-epoch"])
def test_resume_from_epoch_1_ends_where_the_uninterrupted_run_did(runs, copy):
    """From the end of epoch 1, and from step 3 of 4 in epoch 1: each process skips the batches it had
    trained on, and goes on with its next one and its own random state (dropout)."""
    full, resumed = runs["root"] / "proportional", runs["root"] / copy
    source = {"resumed": "epoch-1", "resumed-mid-epoch": "step-3"}[copy]  # the copy, and the checkpoint in it
    assert json.loads((runs["root"] / source / "latest.json").read_text())["path"] == source
    assert_written_once(runs["resume"], resumed)
    assert load(resumed, "metrics.json")["tasks"] == load(full, "metrics.json")["tasks"]
    steps = load(resumed, "history.json")["steps"]
    assert [s["epoch"] for s in steps] == [1] * 4 + [2] * 4
    assert steps == load(full, "history.json")["steps"]  # the same losses, bit for bit, in both processes
    for name in ("heads/ner/model.safetensors", "heads/sentiment/model.safetensors", "encoder/model.safetensors"):
        a, b = load_file(full / "model" / name), load_file(resumed / "model" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_a_nan_loss_in_one_process_is_skipped_by_both(runs):
    """Process 1 alone gets a NaN loss at its 2nd step: both skip that step (no deadlock in the gradient
    all-reduce), and it is counted once, with process 1's batch."""
    history = load(runs["root"] / "nan", "history.json")
    [skipped] = history["skipped_nonfinite"]
    assert (skipped["step"], skipped["process"], skipped["loss"], len(skipped["rows"])) == (2, 1, "nan", 8)
    assert [s["step"] for s in history["steps"]] == [1, 3, 4]
    for task in ("ner", "sentiment"):
        weights = load_file(runs["root"] / "nan" / "model" / "heads" / task / "model.safetensors")
        assert all(torch.isfinite(w).all() for w in weights.values())


@pytest.mark.parametrize("strategy", ["proportional", "round_robin"])
def test_accelerate_shards_our_batches_between_processes(strategy):
    """What accelerator.prepare does to our loader with 2 processes (in this process, no launch):
    every batch to one process, as many steps for each, a new order each epoch."""
    from accelerate.data_loader import prepare_data_loader

    lengths = {"ner": [5 + i % 7 for i in range(41)], "sentiment": [3 + i % 5 for i in range(70)]}
    sampler = MultiTaskBatchSampler(lengths, batch_size=8, strategy=strategy, seed=1)  # 6 + 9 batches

    class Indices(torch.utils.data.Dataset):
        def __getitem__(self, index):
            return index

    def shards(epoch):
        out = []
        for process in (0, 1):
            loader = prepare_data_loader(DataLoader(Indices(), batch_sampler=TaskBatches(sampler), collate_fn=list),
                                         num_processes=2, process_index=process)
            loader.set_epoch(epoch)
            out.append([(items[0][0], [row for _, row in items]) for items in loader])
        return out

    for epoch in (0, 1):
        first, second = shards(epoch)
        sampler.set_epoch(epoch)
        expected = list(sampler)
        # batch i to process i % 2, none to both; 15 batches: process 1 repeats the first one, so that
        # both run 8 steps (a process with a step less would leave the other waiting in its all-reduce)
        assert first == expected[0::2] and second == expected[1::2] + expected[:1]
        if strategy == "round_robin":
            assert all(a[0] != b[0] for a, b in zip(first[:7], second[:7]))
    assert shards(0) != shards(1)
