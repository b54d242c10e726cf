"""Settings declared once: a dataclass field (ModelConfig, TrainConfig) carries its help text and the
CLI is generated from it, so a new setting is one field: its option, help, default and args.json follow."""
from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import field


def setting(default, help: str, **extra):
    """A dataclass field with the help text the CLI shows; `cli_default=` where the command's default
    differs from the library's (the notebooks and tests use the library's)."""
    return field(default=default, metadata={"help": help, **extra})


def add_settings(parser: argparse.ArgumentParser, settings: type, title: str) -> None:
    """One option per field of a settings dataclass, with its help and default."""
    group = parser.add_argument_group(title)
    types = typing.get_type_hints(settings)
    for f in dataclasses.fields(settings):
        default = f.metadata.get("cli_default", f.default)
        flag = "--" + f.name.replace("_", "-")
        if types[f.name] is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=f.metadata["help"])
        else:
            hint = next((t for t in typing.get_args(types[f.name]) if t is not type(None)), types[f.name])
            kind = hint if hint in (int, float, str) else str
            group.add_argument(flag, type=kind, default=default, help=f.metadata["help"])


def settings_from(args: argparse.Namespace, settings: type, **overrides):
    """The dataclass of `settings` filled by keyword from the parsed options of its fields."""
    return settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(settings)} | overrides)
