"""Resumable training state, saved every `checkpoint_every` steps and after every epoch.

    <output-dir>/checkpoint/latest.json       {"epoch": N, "step": S, "path": "step-S", "kept": [...]}: the last
                                              complete checkpoint, and the (at most `keep`) ones kept
    <output-dir>/checkpoint/epoch-N/          after epoch N (1-based), evaluation included
    <output-dir>/checkpoint/step-S/           after step S, inside an epoch
        model.safetensors       every model weight
        optimizer.safetensors   AdamW moments and step counts, torch RNG states
        state.json              everything else (scheduler, history, python and numpy RNG, the position
                                within the epoch: how many of its batches are done)

A checkpoint is written into a temporary folder, its files flushed to disk (fsync), renamed, and only
then named in latest.json (an atomic file replace); older ones are removed after that. So a kill or a
power cut at any moment leaves the previous checkpoint intact, and a write that fails (a full disk)
too: the temporary folder is removed and a CheckpointError says why. With `keep` > 1, a latest
checkpoint that cannot be read (a file cut short) is skipped, with a warning, for the one before it. Only safetensors and JSON are read back: nothing is unpickled. Files get
the mode any new file gets (0o666 less the umask), not safetensors' 0600.

With several processes (DDP), the main process writes it, with the random states of every process
(`rng.<process>.*`, `"rng": [...]`), so that each process resumes with its own; a resume with
another number of processes gives the extra ones the main process's states (and other batches).
"""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from accelerate import Accelerator
from accelerate.utils import gather_object

from .distributed import from_main
from .serialization import CheckpointError, give_default_mode

LATEST = "latest.json"


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk: a rename is durable only once the data is."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file(tensors, path)
    give_default_mode(path)
    _fsync(path)


def kept_checkpoints(directory: str | os.PathLike) -> list[str]:
    """The checkpoint folders latest.json keeps, oldest first, the latest last ([] without one)."""
    root = Path(directory)
    try:
        latest = json.loads((root / LATEST).read_text())
        names = latest.get("kept", [latest["path"]])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
    return [name for name in names if (root / name).is_dir()]


def capture_rng_state() -> dict:
    """This process's random states: torch (CPU, and the current CUDA device), python and numpy."""
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None,
            "python": [python_state[0], list(python_state[1]), python_state[2]],
            "numpy": [numpy_state[0], numpy_state[1].tolist(),
                      *[float(x) if isinstance(x, float) else int(x) for x in numpy_state[2:]]]}


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))


def save_training_state(directory: str | os.PathLike, epoch: int, step: int, model: torch.nn.Module,
                        optimizer: torch.optim.Optimizer, scheduler, history: dict,
                        rng_states: list[dict] | None = None, within_epoch: dict | None = None,
                        keep: int = 1) -> Path:
    """Write the state after `epoch` complete epochs and `step` steps, point latest.json at it, and
    remove all but the `keep` latest checkpoints.

    `within_epoch`: None at the end of an epoch (folder epoch-N); inside the next epoch (folder step-S),
    where it stands: {"epoch_step": the batches of that epoch this process has trained on,
    "processes": how many processes, ...}, given back by load_training_state.
    `rng_states`: capture_rng_state() of every process, main first (default: this process's only).
    """
    rng_states = rng_states if rng_states is not None else [capture_rng_state()]
    root = Path(directory)
    final = root / (f"epoch-{epoch}" if within_epoch is None else f"step-{step}")
    tmp = root / f"{final.name}.tmp"
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        _save_tensors({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
        optimizer_state = optimizer.state_dict()
        tensors, scalars = {}, {}
        for index, state in optimizer_state["state"].items():
            for key, value in state.items():
                if torch.is_tensor(value):
                    tensors[f"state.{index}.{key}"] = value.detach().contiguous().cpu()
                else:
                    scalars[f"{index}.{key}"] = value
        for process, rng in enumerate(rng_states):
            tensors[f"rng.{process}.torch"] = rng["torch"]
            if rng["cuda"] is not None:
                tensors[f"rng.{process}.cuda"] = rng["cuda"]
        _save_tensors(tensors, tmp / "optimizer.safetensors")
        _write_json(tmp / "state.json", {
            "epoch": epoch, "step": step, "within_epoch": within_epoch, "history": history,
            "optimizer": {"param_groups": optimizer_state["param_groups"], "scalars": scalars},
            "scheduler": scheduler.state_dict(),
            "rng": [{"python": rng["python"], "numpy": rng["numpy"]} for rng in rng_states],
        })
        shutil.rmtree(final, ignore_errors=True)  # a leftover no latest.json names (a kill before it did)
        os.replace(tmp, final)
        _fsync(root)
        kept = [name for name in kept_checkpoints(root) if name != final.name][-(keep - 1):] if keep > 1 else []
        kept.append(final.name)
        _write_json(root / LATEST, {"epoch": epoch, "step": step, "path": final.name, "kept": kept})
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if final.name not in kept_checkpoints(root):  # renamed, but latest.json could not name it
            shutil.rmtree(final, ignore_errors=True)
        if not isinstance(err, OSError):
            raise
        reason = os.strerror(err.errno).lower() if err.errno else str(err)
        if err.errno == errno.ENOSPC:
            reason += " (free some space, then resume)"
        previous = kept_checkpoints(root)
        raise CheckpointError(f"{final}: could not write this checkpoint: {reason}; latest.json still names "
                              f"{previous[-1] if previous else 'no checkpoint'} ({type(err).__name__}: {err})") from err
    for old in root.iterdir():  # older checkpoints, and leftovers of a write that was killed
        if old.name.startswith(("epoch-", "step-")) and old.name not in kept:
            shutil.rmtree(old, ignore_errors=True)
    return final


def _read_checkpoint(folder: Path) -> tuple[dict, dict, dict]:
    """(state.json, optimizer tensors, model weights) of one checkpoint folder, every file read and
    checked before anything is restored."""
    try:
        return (json.loads((folder / "state.json").read_text()), load_file(folder / "optimizer.safetensors"),
                load_file(folder / "model.safetensors"))
    except FileNotFoundError as err:
        raise CheckpointError(f"{folder}: incomplete checkpoint ({err.filename} is missing)") from None
    except (json.JSONDecodeError, SafetensorError, OSError) as err:
        raise CheckpointError(f"{folder}: corrupt checkpoint ({type(err).__name__}: {err})") from None


def load_training_state(directory: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler, process_index: int = 0) -> dict:
    """Restore model, optimizer, scheduler and RNG states (those of process `process_index`) in place
    from the latest readable checkpoint; returns {"epoch", "step", "history", "within_epoch"} (None: at
    an epoch's end)."""
    root = Path(directory)
    kept = kept_checkpoints(root)
    if not kept:
        raise CheckpointError(f"{root}: corrupt checkpoint ({LATEST} unreadable or names no folder)"
                              if (root / LATEST).is_file() else
                              f"{root}: no complete checkpoint to resume from ({LATEST} is missing)")
    for name in reversed(kept):
        try:
            folder, (state, tensors, weights) = root / name, _read_checkpoint(root / name)
            break
        except CheckpointError as err:
            if name == kept[0]:
                raise
            warnings.warn(f"{err}; resuming from the checkpoint before it", stacklevel=2)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"{folder}: the saved weights do not match this model ({err})") from None

    optimizer_state = {"param_groups": state["optimizer"]["param_groups"], "state": {}}
    for group in optimizer_state["param_groups"]:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    saved = [(name.removeprefix("state."), value) for name, value in tensors.items() if name.startswith("state.")]
    for name, value in saved + list(state["optimizer"]["scalars"].items()):  # "<index>.<key>": tensors, then the rest
        index, key = name.split(".", 1)
        optimizer_state["state"].setdefault(int(index), {})[key] = value
    try:
        optimizer.load_state_dict(optimizer_state)
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"{folder}: the optimizer state does not match this run "
                              f"(different tasks, freezing or learning-rate groups?): {err}") from None
    scheduler.load_state_dict(state["scheduler"])

    try:
        if isinstance(state["rng"], dict):  # written by one process, before per-process states
            rng = {**state["rng"], "torch": tensors["rng.torch"], "cuda": tensors.get("rng.cuda.0")}
        else:
            process = process_index if process_index < len(state["rng"]) else 0
            rng = {**state["rng"][process], "torch": tensors[f"rng.{process}.torch"],
                   "cuda": tensors.get(f"rng.{process}.cuda")}
    except KeyError as err:
        raise CheckpointError(f"{folder}: corrupt checkpoint (no random state {err})") from None
    restore_rng_state(rng)
    return {"epoch": state["epoch"], "step": state["step"], "history": state["history"],
            "within_epoch": state.get("within_epoch")}


@dataclass
class Position:
    """Where a run stands: steps taken, epochs complete, and how far into the current epoch (this
    process's batches, every process's sentences, since when); `resumed`: the checkpoint's place
    inside an epoch, until that epoch has skipped the batches it had done."""

    step: int = 0
    epoch: int = 0
    epoch_step: int = 0
    sentences: int = 0
    started: float = field(default_factory=time.perf_counter)
    resumed: dict | None = None

    def begin_epoch(self, batches, processes: int) -> None:
        """Start the epoch's clock and counts; resumed inside it, take from `batches` (a fresh iterator
        over the epoch) the batches this process had trained on. The sampler's order depends on the
        seed and the epoch alone, so the epoch replays the same batches and goes on with the next.
        Starting the iterator draws from torch's generator (the DataLoader's seed for its workers), as
        the epoch's start did before the checkpoint, whose random state is therefore set again: dropout
        then draws as in a run that was never interrupted."""
        self.epoch_step, self.sentences, self.started = 0, 0, time.perf_counter()
        if self.resumed is None:
            return
        done = self.resumed["epoch_step"]
        if self.resumed["processes"] != processes:  # each process skipped its share of the batches done then
            done = done * self.resumed["processes"] // processes
            warnings.warn(f"resuming inside an epoch with {processes} processes instead of "
                          f"{self.resumed['processes']}: the rest of the epoch is split differently (some batches "
                          "may be seen twice)", stacklevel=3)
        restored = capture_rng_state()
        for _ in range(done):
            next(batches)
        restore_rng_state(restored)
        self.epoch_step, self.sentences = done, self.resumed["sentences"]
        self.started -= self.resumed["seconds"]
        self.resumed = None

    def within_epoch(self, processes: int) -> dict:
        return {"epoch_step": self.epoch_step, "processes": processes, "sentences": self.sentences,
                "seconds": time.perf_counter() - self.started}


class Checkpointer:
    """The run's checkpoint protocol: every `every` steps inside an epoch and after each epoch (then
    with its evaluation), written by the main process with every process's random state; `resume()`
    continues from the last readable one. Without an output dir it does nothing."""

    def __init__(self, output_dir: str | os.PathLike | None, accelerator: Accelerator, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, scheduler, every: int, keep: int):
        self.directory = Path(output_dir) / "checkpoint" if output_dir is not None else None
        self.accelerator, self.model, self.optimizer, self.scheduler = accelerator, model, optimizer, scheduler
        self.every, self.keep = every, keep

    def resume(self) -> tuple[Position, dict]:
        """The position and history of the last checkpoint, its weights, optimizer, schedule and random
        state restored."""
        if self.directory is None:
            raise ValueError("resume=True needs the output_dir of the interrupted run")
        restored = load_training_state(self.directory, self.accelerator.unwrap_model(self.model), self.optimizer,
                                       self.scheduler, process_index=self.accelerator.process_index)
        position = Position(restored["step"], restored["epoch"], resumed=restored["within_epoch"])
        return position, restored["history"]

    def maybe_save(self, position: Position, history: dict, steps_in_epoch: int) -> None:
        """Every `every` steps, unless the epoch has just ended (its checkpoint follows evaluation)."""
        if (self.directory is not None and self.every and position.step % self.every == 0
                and position.epoch_step < steps_in_epoch):
            self._write(position.epoch, position.step, history,
                        position.within_epoch(self.accelerator.num_processes))

    def save_epoch(self, position: Position, history: dict) -> None:
        if self.directory is not None:
            self._write(position.epoch, position.step, history, None)

    def _write(self, epochs_done: int, step: int, history: dict, within: dict | None) -> None:
        # A failed write (a full disk) stops every process, and none goes on before the checkpoint is on disk.
        rng_states = gather_object([capture_rng_state()])  # each process's dropout has drawn differently

        def write() -> str | None:
            try:
                save_training_state(self.directory, epochs_done, step, self.accelerator.unwrap_model(self.model),
                                    self.optimizer, self.scheduler, history, rng_states, within_epoch=within,
                                    keep=self.keep)
            except CheckpointError as err:
                return str(err)

        error = from_main(self.accelerator, write)
        if error is not None:
            raise CheckpointError(error)
