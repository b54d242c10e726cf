"""A saved MultiTaskModel: a folder of safetensors and JSON, nothing pickled.

    <dir>/encoder/             the shared encoder (a folder SentenceTransformer(dir) also loads)
    <dir>/heads.safetensors    every head's weights
    <dir>/mtl_config.json      format version, tasks (name, kind, labels) and the ModelConfig
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .tasks import TaskSpec

CONFIG_NAME = "mtl_config.json"
HEADS_NAME = "heads.safetensors"
FORMAT_VERSION = 2  # 1: dropout and word_shape_dim at the top level, no model settings


class CheckpointError(ValueError):
    """A saved model that is incomplete, corrupt, or not what the caller expected."""


def give_default_mode(*paths: str | os.PathLike) -> None:
    """Give files the mode any new file gets here (0o666 less the umask): safetensors (0.8 here) writes
    its files 0600, which other users of a shared folder could not read."""
    mask = os.umask(0o022)  # the only portable way to read the umask is to set it
    os.umask(mask)
    for path in paths:
        os.chmod(path, 0o666 & ~mask)


def write_model(directory: str | os.PathLike, encoder, heads_state: dict[str, torch.Tensor], tasks: list[TaskSpec],
                settings: dict) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    encoder.save_pretrained(directory / "encoder")
    save_file({k: v.detach().contiguous().cpu() for k, v in heads_state.items()}, directory / HEADS_NAME)
    give_default_mode(directory / HEADS_NAME)
    config = {"format_version": FORMAT_VERSION,
              "tasks": [{"name": t.name, "kind": t.kind, "labels": list(t.labels)} for t in tasks],
              "model": {k: v for k, v in settings.items() if k != "backbone"}}  # the encoder is saved beside it
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2))


def read_model(directory: str | os.PathLike, expected_tasks: dict[str, list[str]] | None = None
               ) -> tuple[Path, list[TaskSpec], dict, Callable[[torch.nn.Module], None]]:
    """(encoder folder, tasks, model settings, a function that loads the heads' weights into a ModuleDict)."""
    directory = Path(directory)
    config_file = directory / CONFIG_NAME
    if not config_file.is_file():
        raise CheckpointError(f"{directory}: not a saved MultiTaskModel ({CONFIG_NAME} is missing)")
    try:
        config = json.loads(config_file.read_text())
        tasks = [TaskSpec(t["name"], t["kind"], tuple(t["labels"])) for t in config["tasks"]]
        settings = config["model"] if config["format_version"] >= 2 else {
            "dropout": config["dropout"], "word_shape_dim": config["word_shape_dim"],
            "route": ",".join(f"{t}:{k}" for t, k in config.get("layer_routing", {}).items())}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{config_file}: unreadable or incomplete config ({type(err).__name__}: {err})") from None
    if expected_tasks is not None:
        found = {t.name: list(t.labels) for t in tasks}
        if found != {name: list(labels) for name, labels in expected_tasks.items()}:
            raise CheckpointError(f"{directory}: checkpoint has tasks/labels {found}, expected {expected_tasks}")

    def load_heads(heads: torch.nn.Module) -> None:
        try:
            state = load_file(directory / HEADS_NAME)
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{directory / HEADS_NAME}: missing or corrupt ({err})") from None
        try:
            heads.load_state_dict(state)
        except RuntimeError as err:
            raise CheckpointError(f"{directory / HEADS_NAME}: does not match the config ({err})") from None

    return directory / "encoder", tasks, settings, load_heads
