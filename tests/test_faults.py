"""Faults a training run survives: a kill at any moment (inside an epoch, inside a checkpoint write),
a NaN or infinite loss, a full disk, a corrupt or foreign checkpoint; and files with the user's mode.

Most tests train a tiny BERT (tests/kill_worker.py: 2 layers, 16 wide, MiniLM's tokenizer, dropout
as in MiniLM) on a few real sentences, in about a second; one resumes the real MiniLM inside an epoch.
"""
import errno
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from safetensors.torch import load_file

from mtl_utils import checkpointing
from mtl_utils.checkpointing import load_training_state, save_training_state
from mtl_utils.sampling import MultiTaskBatchSampler
from mtl_utils.serialization import CheckpointError
from mtl_utils.train import RESUME_OVERRIDES, build_parser, resumed_args
from mtl_utils.nonfinite import NonFiniteLossError
from mtl_utils.training import TrainConfig, train
from tests.conftest import REPO
from tests.kill_worker import EVENTS, minilm_tokenizer, tiny_data, tiny_model

TINY = dict(epochs=1, batch_size=4, seed=3, quiet=True, checkpoint_every=2)


@pytest.fixture(scope="module")
def tiny(shared_data):
    return tiny_data(shared_data, minilm_tokenizer(), n_train=16, n_eval=8)  # 4 + 4 batches of 4 per epoch


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def files(root) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- a kill inside an epoch: resumed at its next batch, bitwise --------------------------------------

def test_resume_inside_an_epoch_is_bitwise_identical(shared_data, tmp_path):
    """The real MiniLM (dropout on), killed twice inside an epoch (after the step-3 checkpoint in epoch 1,
    after the step-6 one in epoch 2), resumed each time: the same weights and per-step losses as a run
    never interrupted; the latest 2 checkpoints are kept."""
    from mtl_utils.encoder import SentenceEncoder
    from mtl_utils.model import MultiTaskModel
    from mtl_utils.tasks import BUILTIN_TASKS

    features, eval_sets = tiny_data(shared_data, minilm_tokenizer(), n_train=8, n_eval=4)
    config = TrainConfig(epochs=2, batch_size=4, seed=3, quiet=True, checkpoint_every=3, keep_checkpoints=2)

    def minilm():
        torch.manual_seed(0)
        return MultiTaskModel(SentenceEncoder.from_pretrained(), [BUILTIN_TASKS["ner"], BUILTIN_TASKS["sentiment"]])

    reference = minilm()
    reference_history = train(reference, features, eval_sets, config, output_dir=tmp_path / "full")
    assert len(reference_history["steps"]) == 8  # 2 + 2 batches per epoch

    out = tmp_path / "killed"
    for run, resume, expected in ((1, False, "step-3"), (2, True, "step-6")):
        model, forwards = minilm(), []

        def kill_at_the_4th_step(module, args):
            if module.training:
                forwards.append(1)
                if len(forwards) == 4:
                    raise KeyboardInterrupt("killed")

        model.register_forward_pre_hook(kill_at_the_4th_step)
        with pytest.raises(KeyboardInterrupt):
            train(model, features, eval_sets, config, output_dir=out, resume=resume)
        latest = json.loads((out / "checkpoint" / "latest.json").read_text())
        assert latest["path"] == expected and latest["kept"][-1] == expected, (run, latest)
    assert latest["kept"] == ["epoch-1", "step-6"]

    resumed = minilm()
    history = train(resumed, features, eval_sets, config, output_dir=out, resume=True)
    assert same_tensors(reference.state_dict(), resumed.state_dict())
    assert history["steps"] == reference_history["steps"]  # losses and learning rates, bit for bit
    assert history["epochs"][-1]["validation"] == reference_history["epochs"][-1]["validation"]
    assert sorted(p.name for p in (out / "checkpoint").iterdir()) == ["epoch-2", "latest.json", "step-6"]


# --- kill anywhere: SIGKILL at 10 random moments, some inside checkpoint writes ----------------------

class Worker:
    """tests/kill_worker.py: a process that forks one training child per run (no 9 s start each time)."""

    def __init__(self, data_dir, config: dict, log):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}
        self.log = log
        self.process = subprocess.Popen([sys.executable, "-m", "tests.kill_worker", str(data_dir), json.dumps(config)],
                                        cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=open(log, "w"), text=True, start_new_session=True)
        self.lines = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line.strip()) for line in self.process.stdout], daemon=True).start()
        self.expect("ready", timeout=180)

    def expect(self, *patterns: str, timeout: float = 60) -> str:
        """The next line that is one of `patterns`, or starts with one that ends with a space."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"kill worker: no {patterns} within {timeout} s; its stderr:\n{self.stderr()}")
            if line in patterns or line.startswith(tuple(p for p in patterns if p.endswith(" "))):
                return line

    def stderr(self) -> str:
        return self.log.read_text()[-3000:]

    def start(self, out, resume: bool, pause: str | None = None, checkpoint: int = 1) -> int:
        request = {"out": str(out), "resume": resume, "pause": pause, "checkpoint": checkpoint}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return int(self.expect("pid ").split()[1])

    def exit_code(self) -> int:
        return int(self.expect("exit ").split()[1])

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill worker forks its training runs")
def test_sigkill_at_ten_random_moments_then_resume_is_bitwise_identical(shared_data, tmp_path):
    """4 epochs of 10 steps, a checkpoint every 3 steps (and after each epoch), the latest 2 kept.
    10 kills (seeded order): 4 at a random moment after one of the next 2-6 steps (inside a step, a
    checkpoint write or an evaluation, wherever it lands), 6 inside the run's second checkpoint write
    (before each file, in a half-written file, before latest.json, before older ones are removed);
    after each, a resume. The end: the weights, AdamW state and per-step losses of a run that was
    never killed, bit for bit."""
    epochs, steps = 4, 40
    config = dict(epochs=epochs, batch_size=4, seed=3, quiet=True, checkpoint_every=3, keep_checkpoints=2)
    worker = Worker(shared_data, config, tmp_path / "worker.log")
    try:
        worker.start(tmp_path / "reference", resume=False)
        assert worker.exit_code() == 0, worker.stderr()

        rng = random.Random(14)
        moments = ["timed"] * 4 + list(EVENTS)
        rng.shuffle(moments)
        out, kills, inside_writes = tmp_path / "killed", [], 0
        latest = out / "checkpoint" / "latest.json"
        for moment in moments:
            first = json.loads(latest.read_text())["step"] if latest.is_file() else 0
            # a run moves the checkpoint on by 0-8 steps, ~3 on average: the 10 kills land before the end
            pid = worker.start(out, resume=latest.is_file(), pause=None if moment == "timed" else moment,
                               checkpoint=2 if first + 12 < steps else 1)
            if moment == "timed":
                line = worker.expect(f"step {min(first + rng.randint(2, 6), steps - 2)}", "exit ")
                time.sleep(rng.uniform(0, 0.02))
            else:
                line = worker.expect("paused ", "exit ")
            assert not line.startswith("exit "), f"run {len(kills) + 1} ({moment}) ended first: {line}\n{worker.stderr()}"
            os.kill(pid, signal.SIGKILL)  # the worker's child, still running: it reports its exit after this
            code = worker.exit_code()
            assert code == -signal.SIGKILL, f"run {len(kills) + 1} ({moment}) ended before the kill: {code}\n{worker.stderr()}"
            # a timed kill landed in a checkpoint write if it left a temporary or an unnamed folder
            kept = json.loads(latest.read_text())["kept"] if latest.is_file() else []
            leftovers = [p for p in (out / "checkpoint").iterdir() if p.name != "latest.json" and p.name not in kept]
            inside_writes += moment != "timed" or bool(leftovers)
            kills.append((moment, first))
        worker.start(out, resume=latest.is_file())
        assert worker.exit_code() == 0, worker.stderr()
    finally:
        worker.close()

    reference, resumed = tmp_path / "reference", tmp_path / "killed"
    a, b = (json.loads((d / "history.json").read_text()) for d in (reference, resumed))
    assert len(a["steps"]) == steps and b["steps"] == a["steps"], "per-step losses differ"
    assert b["epochs"][-1]["validation"] == a["epochs"][-1]["validation"]
    for name in ("model.safetensors", "optimizer.safetensors"):
        assert same_tensors(load_file(reference / "checkpoint" / f"epoch-{epochs}" / name),
                            load_file(resumed / "checkpoint" / f"epoch-{epochs}" / name)), f"{name} differs"
    # the latest 2 checkpoints, nothing half-written left over from the kills
    assert sorted(p.name for p in (resumed / "checkpoint").iterdir()) == [f"epoch-{epochs}", "latest.json", "step-39"]
    message = f"{len(kills)} kills survived, weights bitwise equal"
    print(f"\n{message} ({inside_writes} inside checkpoint writes; moment and resumed step: {kills})")
    assert len(kills) == 10, message


# --- a NaN or infinite loss ---------------------------------------------------------------------------

def nan_loss_at(model, forwards: set[int]):
    """Make the loss NaN at the given training forwards (1-based), as a diverging step would."""
    count = []

    def hook(module, args, out):
        if module.training:
            count.append(1)
            if len(count) in forwards:
                return {**out, "loss": out["loss"] * float("nan")}
    return model.register_forward_hook(hook)


def test_a_nan_loss_stops_with_one_line_and_keeps_the_last_checkpoint(tiny, tmp_path):
    features, eval_sets = tiny
    model = tiny_model()
    nan_loss_at(model, {5})
    with pytest.raises(NonFiniteLossError) as raised:
        train(model, features, eval_sets, TrainConfig(**TINY), output_dir=tmp_path)
    message = str(raised.value)
    sampler = MultiTaskBatchSampler({t: [len(ids) for ids in f["input_ids"]] for t, f in features.items()}, 4, seed=3)
    task, rows = list(sampler)[4]  # the 5th batch of epoch 1
    first = minilm_tokenizer().decode(features[task]["input_ids"][rows[0]], skip_special_tokens=True)[:80]
    assert "\n" not in message
    assert (f"non-finite loss at step 5 (epoch 1), task {task!r}: loss nan on training rows "
            f"[{', '.join(map(str, rows))}] (first sentence {first!r})") in message, message
    assert f"the last checkpoint, {tmp_path / 'checkpoint' / 'step-4'}, is intact" in message
    assert "--skip-nonfinite" in message
    # the checkpoint of step 4 holds the weights the NaN step did not touch, all finite
    assert json.loads((tmp_path / "checkpoint" / "latest.json").read_text())["step"] == 4
    saved = load_file(tmp_path / "checkpoint" / "step-4" / "model.safetensors")
    assert same_tensors(saved, {k: v.contiguous() for k, v in model.state_dict().items()})
    assert all(torch.isfinite(v).all() for v in saved.values())


def test_skip_nonfinite_skips_the_batch_and_counts_it(tiny, tmp_path):
    features, eval_sets = tiny
    model = tiny_model()
    nan_loss_at(model, {3, 6})
    history = train(model, features, eval_sets, TrainConfig(**TINY, skip_nonfinite=True), output_dir=tmp_path)
    assert [s["step"] for s in history["skipped_nonfinite"]] == [3, 6]
    assert all(s["loss"] == "nan" and len(s["rows"]) == 4 and s["first_sentence"] for s in history["skipped_nonfinite"])
    assert [s["step"] for s in history["steps"]] == [1, 2, 4, 5, 7, 8]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    optimizer = load_file(tmp_path / "checkpoint" / "epoch-1" / "optimizer.safetensors")
    assert optimizer["state.0.step"].item() == 6  # no optimizer step for the 2 skipped batches
    assert json.loads((tmp_path / "history.json").read_text())["skipped_nonfinite"] == history["skipped_nonfinite"]


# --- a full disk ----------------------------------------------------------------------------------------

def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("failing", ["model.safetensors", "optimizer.safetensors", "state.json", "latest.json"])
def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failing):
    """ENOSPC halfway through any file of a checkpoint: a CheckpointError naming the folder and the
    cause; the folder holds exactly what it held before (the previous checkpoint and latest.json)."""
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    root = tmp_path / "checkpoint"
    save_training_state(root, 1, 4, model, optimizer, scheduler, {"steps": [4]})
    before = files(root)

    real_save, real_dump = checkpointing.save_file, json.dump

    def save_file(tensors, path, *args, **kwargs):
        if os.path.basename(path) == failing:
            open(path, "wb").write(b"half a file")
            no_space()
        real_save(tensors, path, *args, **kwargs)

    def dump(data, f, *args, **kwargs):
        if os.path.basename(f.name) == failing + ".tmp":
            f.write('{"half": ')
            no_space()
        real_dump(data, f, *args, **kwargs)

    monkeypatch.setattr(checkpointing, "save_file", save_file)
    monkeypatch.setattr(checkpointing.json, "dump", dump)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(CheckpointError) as raised:
        save_training_state(root, 1, 6, model, optimizer, scheduler, {"steps": [6]},
                            within_epoch={"epoch_step": 2, "processes": 1, "sentences": 8, "seconds": 1.0})
    monkeypatch.undo()
    assert str(raised.value).startswith(f"{root / 'step-6'}: could not write this checkpoint: no space left on device")
    assert "latest.json still names epoch-1" in str(raised.value)
    assert files(root) == before  # no step-6, no step-6.tmp, no latest.json.tmp: only the previous checkpoint
    load_training_state(root, tiny_model(), optimizer, scheduler)  # which still resumes


def test_a_full_disk_during_training_is_a_clear_error(tiny, tmp_path, monkeypatch):
    features, eval_sets = tiny
    real_save, calls = checkpointing.save_file, []

    def fills_up(tensors, path, *args, **kwargs):
        calls.append(path)
        if len(calls) > 2:  # the 2nd checkpoint (step 4) does not fit
            no_space()
        real_save(tensors, path, *args, **kwargs)

    monkeypatch.setattr(checkpointing, "save_file", fills_up)
    with pytest.raises(CheckpointError, match=r"step-4: could not write this checkpoint: no space left on device "
                                              r"\(free some space, then resume\); latest.json still names step-2"):
        train(tiny_model(), features, eval_sets, TrainConfig(**TINY), output_dir=tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoint").iterdir()) == ["latest.json", "step-2"]


# --- files, and checkpoints that cannot be used -----------------------------------------------------------

def test_written_files_get_the_umask_mode_not_0600(tiny, tmp_path):
    """safetensors writes 0600 files; checkpoints, history.json and the saved model get 0o666 less the umask."""
    features, eval_sets = tiny
    previous = os.umask(0o027)
    try:
        model = tiny_model()
        train(model, features, eval_sets, TrainConfig(**TINY), output_dir=tmp_path / "run")
        model.save_pretrained(tmp_path / "run" / "model")
    finally:
        os.umask(previous)
    written = [p for p in (tmp_path / "run").rglob("*")]
    assert {p.relative_to(tmp_path / "run").as_posix() for p in written} >= {
        "history.json", "checkpoint/latest.json", "checkpoint/epoch-1/model.safetensors",
        "checkpoint/epoch-1/optimizer.safetensors", "checkpoint/epoch-1/state.json", "model/heads/ner/model.safetensors",
        "model/encoder/model.safetensors"}
    modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in written}
    assert modes == {name: oct(0o750 if (tmp_path / name).is_dir() else 0o640) for name in modes}


def test_a_corrupt_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    model = tiny_model()
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    folder = save_training_state(tmp_path, 1, 4, model, optimizer, scheduler, {})
    other = torch.nn.Linear(2, 2)
    other_optimizer = torch.optim.AdamW(other.parameters())
    with pytest.raises(CheckpointError, match="the saved weights do not match this model"):
        load_training_state(tmp_path, other, other_optimizer, torch.optim.lr_scheduler.LambdaLR(other_optimizer, lambda s: 1.0))
    weights = folder / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)  # a copy cut short
    with pytest.raises(CheckpointError, match="corrupt checkpoint"):
        load_training_state(tmp_path, model, optimizer, scheduler)


def test_resume_takes_the_saved_arguments_and_only_fault_settings_from_the_command_line():
    parser = build_parser()
    saved = {k: v for k, v in vars(parser.parse_args([])).items() if k not in ("checkpoint_every", "keep_checkpoints",
                                                                              "skip_nonfinite")}  # an older run
    saved.update(lr=1e-5, epochs=5)
    given = parser.parse_args(["--resume", "runs/x", "--skip-nonfinite", "--lr", "0.1", "--checkpoint-every", "7"])
    args = resumed_args(given, saved, parser)
    assert (args.lr, args.epochs, args.output_dir, args.resume) == (1e-5, 5, "runs/x", "runs/x")  # --lr 0.1 ignored
    assert (args.skip_nonfinite, args.checkpoint_every, args.keep_checkpoints) == (True, 7, 1)
    assert set(RESUME_OVERRIDES) == {"skip_nonfinite", "checkpoint_every", "keep_checkpoints", "quiet"}
