"""Resumable training state, saved every `checkpoint_every` steps and after every epoch.

    <output-dir>/checkpoint/latest.json       {"epoch": N, "step": S, "path": "step-S", "kept": [...]}: the last
                                              complete checkpoint, and the (at most `keep`) ones kept
    <output-dir>/checkpoint/epoch-N/          after epoch N (1-based), evaluation included
    <output-dir>/checkpoint/step-S/           after step S, inside an epoch
        model.safetensors       every model weight
        optimizer.safetensors   AdamW moments and step counts, torch RNG states
        state.json              everything else (scheduler, history, python and numpy RNG, the position
                                within the epoch: how many of its batches are done)

A checkpoint is written into a temporary folder, renamed, and only then named in latest.json (an
atomic file replace); older ones are removed after that. So a kill at any moment leaves the previous
checkpoint intact, and a write that fails (a full disk) too: the temporary folder is removed and a
CheckpointError says why. Only safetensors and JSON are read back: nothing is unpickled. Files get
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
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

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


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file(tensors, path)
    give_default_mode(path)


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


def load_training_state(directory: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler, process_index: int = 0) -> dict:
    """Restore model, optimizer, scheduler and RNG states (those of process `process_index`) in place;
    returns {"epoch", "step", "history", "within_epoch"} (None: at an epoch's end)."""
    root = Path(directory)
    try:
        latest = json.loads((root / LATEST).read_text())
        folder = root / latest["path"]
        state = json.loads((folder / "state.json").read_text())
        tensors = load_file(folder / "optimizer.safetensors")
        weights = load_file(folder / "model.safetensors")
    except FileNotFoundError as err:
        raise CheckpointError(f"{root}: no complete checkpoint to resume from ({err.filename} is missing)") from None
    except (json.JSONDecodeError, KeyError, SafetensorError, OSError) as err:
        raise CheckpointError(f"{root}: corrupt checkpoint ({type(err).__name__}: {err})") from None
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
