"""Resumable training state, saved after every epoch so that a killed run loses at most one epoch.

    <output-dir>/checkpoint/latest.json           {"epoch": N, "path": "epoch-N"}: the last complete checkpoint
    <output-dir>/checkpoint/epoch-N/model.safetensors       every model weight
    <output-dir>/checkpoint/epoch-N/optimizer.safetensors   AdamW moments and step counts, torch RNG states
    <output-dir>/checkpoint/epoch-N/state.json              everything else (scheduler, history, python RNG)

A checkpoint is written into a temporary folder, renamed, and only then named in latest.json (an
atomic file replace), so a kill at any moment leaves the previous checkpoint intact. Only
safetensors and JSON are read back: nothing is unpickled.

With several processes (DDP), the main process writes it, with the random states of every process
(`rng.<process>.*`, `"rng": [...]`), so that each process resumes with its own; a resume with
another number of processes gives the extra ones the main process's states (and other batches).
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .serialization import CheckpointError

LATEST = "latest.json"


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
                        rng_states: list[dict] | None = None) -> Path:
    """Write the state after `epoch` (1-based) and point latest.json at it.

    `rng_states`: capture_rng_state() of every process, main first (default: this process's only).
    """
    rng_states = rng_states if rng_states is not None else [capture_rng_state()]
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"epoch-{epoch}"
    tmp = root / f"epoch-{epoch}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()

    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
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
    save_file(tensors, tmp / "optimizer.safetensors")
    _write_json(tmp / "state.json", {
        "epoch": epoch, "step": step, "history": history,
        "optimizer": {"param_groups": optimizer_state["param_groups"], "scalars": scalars},
        "scheduler": scheduler.state_dict(),
        "rng": [{"python": rng["python"], "numpy": rng["numpy"]} for rng in rng_states],
    })
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _write_json(root / LATEST, {"epoch": epoch, "path": final.name})
    for old in root.glob("epoch-*"):
        if old.name != final.name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_training_state(directory: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        scheduler, process_index: int = 0) -> dict:
    """Restore model, optimizer, scheduler and RNG states (those of process `process_index`) in place;
    returns {"epoch", "step", "history"}."""
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
    for name, value in tensors.items():
        if name.startswith("state."):
            _, index, key = name.split(".", 2)
            optimizer_state["state"].setdefault(int(index), {})[key] = value
    for name, value in state["optimizer"]["scalars"].items():
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
    return {"epoch": state["epoch"], "step": state["step"], "history": state["history"]}
