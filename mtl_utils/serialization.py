"""A saved MultiTaskModel: a folder of safetensors and JSON, nothing pickled.

    <dir>/encoder/          the shared encoder (a folder SentenceTransformer(dir) also loads)
    <dir>/heads/<task>/     each task's head, saved by itself (heads.py): config.json and model.safetensors
    <dir>/adapters/<name>/  with LoRA, peft's adapter folders (lora.py)
    <dir>/mtl_config.json   format version, tasks (name, kind, labels) and the ModelConfig

Format 2 (every head's weights in one heads.safetensors, keys "<task>.<weight>") loads too."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

CONFIG_NAME, HEADS_DIR, FORMAT_2_HEADS = "mtl_config.json", "heads", "heads.safetensors"
FORMAT_VERSION = 3  # 2: one heads.safetensors; 1: also dropout and word_shape_dim at the top level


class CheckpointError(ValueError):
    """A saved model that is incomplete, corrupt, or not what the caller expected."""


def give_default_mode(*paths: str | os.PathLike) -> None:
    """Give files the default mode (0o666 less the umask): safetensors writes 0600, unreadable to others."""
    mask = os.umask(0o022)  # the only portable way to read the umask is to set it
    os.umask(mask)
    for path in paths:
        os.chmod(path, 0o666 & ~mask)


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2))


def save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, path)
    give_default_mode(path)


def load_weights(module: torch.nn.Module, source: Path, prefix: str = "") -> None:
    """Every weight of `module` from the safetensors file `source` (named "<prefix>.<name>" there, given a prefix),
    or one line that says what is wrong."""
    try:
        state = load_file(source)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{source}: missing or corrupt ({err})") from None
    try:
        module.load_state_dict({k.removeprefix(prefix + "."): v for k, v in state.items()
                                if not prefix or k.startswith(prefix + ".")})
    except RuntimeError as err:
        raise CheckpointError(f"{source}: does not match the config ({err})") from None


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: missing or unreadable ({type(err).__name__}: {err})") from None


def write_config(directory: Path, tasks: list, settings: dict) -> None:
    """mtl_config.json: `tasks` (TaskSpecs) and the model settings, all but the backbone (saved beside it)."""
    config = {"format_version": FORMAT_VERSION,
              "tasks": [{"name": t.name, "kind": t.kind, "labels": list(t.labels)} for t in tasks],
              "model": {k: v for k, v in settings.items() if k != "backbone"}}
    write_json(directory / CONFIG_NAME, config)


def read_config(directory: Path, expected_tasks: dict[str, list[str]] | None = None
                ) -> tuple[list[tuple[str, str, tuple[str, ...]]], dict, int]:
    """(tasks as (name, kind, labels), model settings, format version)."""
    config_file = directory / CONFIG_NAME
    if not config_file.is_file():
        raise CheckpointError(f"{directory}: not a saved MultiTaskModel ({CONFIG_NAME} is missing)")
    try:
        config = json.loads(config_file.read_text())
        tasks = [(t["name"], t["kind"], tuple(t["labels"])) for t in config["tasks"]]
        version = config["format_version"]
        settings = config["model"] if version >= 2 else {
            "dropout": config["dropout"], "word_shape_dim": config["word_shape_dim"],
            "route": ",".join(f"{t}:{k}" for t, k in config.get("layer_routing", {}).items())}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{config_file}: unreadable or incomplete config ({type(err).__name__}: {err})") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{directory}: saved in format {version}, newer than this mtl_utils reads "
                              f"(1-{FORMAT_VERSION}): load it with the version that saved it")
    if expected_tasks is not None:
        found = {name: list(labels) for name, _, labels in tasks}
        if found != {name: list(labels) for name, labels in expected_tasks.items()}:
            raise CheckpointError(f"{directory}: checkpoint has tasks/labels {found}, expected {expected_tasks}")
    return tasks, settings, version
