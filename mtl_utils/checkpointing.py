"""Resumable training state: the checkpoint protocol, its files, and where a resumed run stands.

    checkpoint/latest.json   the last complete checkpoint ("path") and those kept ("kept")
    checkpoint/epoch-N/, step-S/   after epoch N, or after step S inside an epoch: model.safetensors,
        optimizer.safetensors (AdamW state, every process's torch RNG), state.json (schedule, history, ...)

Each is written to a temporary folder, flushed (fsync), renamed, and only then named in latest.json: a
kill, a power cut or a full disk leaves the previous one intact; with `keep` > 1, an unreadable latest
one is skipped for the one before. Only safetensors and JSON are read back: nothing is unpickled."""
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
from accelerate import Accelerator
from accelerate.utils import gather_object
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

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
    """Write the state after `epoch` complete epochs and `step` steps, point latest.json at it, and keep
    the `keep` latest checkpoints. `within_epoch`: None at an epoch's end, else `Position.within_epoch()`;
    `rng_states`: capture_rng_state() of every process, main first (default: this process's)."""
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
    """Where a run stands: steps taken, epochs complete, how far into the current epoch (this process's
    batches, every process's sentences, since when); `resumed`: a checkpoint's place inside an epoch."""

    step: int = 0
    epoch: int = 0
    epoch_step: int = 0
    sentences: int = 0
    started: float = field(default_factory=time.perf_counter)
    resumed: dict | None = None

    def begin_epoch(self, batches, processes: int) -> None:
        """Start the epoch's clock and counts; resumed inside it, skip in `batches` (a fresh iterator: the
        order depends on seed and epoch alone) those this process had done. Starting the iterator draws
        from torch's generator, as before the checkpoint, whose random state is therefore set again:
        dropout then draws as in a run that was never interrupted."""
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
    """The run's checkpoints: every `every` steps inside an epoch and after each epoch (with its
    evaluation); `resume()` continues from the last readable one. Without an output dir: nothing."""

    def __init__(self, output_dir: str | os.PathLike | None, accelerator: Accelerator, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, scheduler, every: int, keep: int):
        self.directory = Path(output_dir) / "checkpoint" if output_dir is not None else None
        self.accelerator, self.model, self.optimizer, self.scheduler = accelerator, model, optimizer, scheduler
        self.every, self.keep = every, keep

    def resume(self) -> tuple[Position, dict]:
        """The last checkpoint's position and history; weights, optimizer, schedule and RNG restored."""
        if self.directory is None:
            raise ValueError("resume=True needs the output_dir of the interrupted run")
        restored = load_training_state(self.directory, self.accelerator.unwrap_model(self.model), self.optimizer,
                                       self.scheduler, process_index=self.accelerator.process_index)
        position = Position(restored["step"], restored["epoch"], resumed=restored["within_epoch"])
        return position, restored["history"]

    def maybe_save(self, position: Position, history: dict, steps_in_epoch: int) -> None:
        """Every `every` steps, unless the epoch has just ended (its checkpoint follows evaluation)."""
        if self.every and position.step % self.every == 0 and position.epoch_step < steps_in_epoch:
            self._write(position, history, position.within_epoch(self.accelerator.num_processes))

    def save_epoch(self, position: Position, history: dict) -> None:
        self._write(position, history, None)

    def _write(self, position: Position, history: dict, within: dict | None) -> None:
        if self.directory is None:
            return
        # A failed write (a full disk) stops every process, and none goes on before the checkpoint is on disk.
        rng_states = gather_object([capture_rng_state()])  # each process's dropout has drawn differently
        model = self.accelerator.unwrap_model(self.model)

        def write() -> str | None:
            try:
                save_training_state(self.directory, position.epoch, position.step, model, self.optimizer,
                                    self.scheduler, history, rng_states, within_epoch=within, keep=self.keep)
            except CheckpointError as err:
                return str(err)

        error = from_main(self.accelerator, write)
        if error is not None:
            raise CheckpointError(error)
