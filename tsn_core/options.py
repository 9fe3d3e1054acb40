"""Options of both tools' commands, declared once: the option types several commands read, and
options generated from the dataclass that owns their defaults.

A dataclass field becomes an option when its metadata has a ``help``. Other metadata keys:
``option`` (the option's name where it is not the field's), ``min`` / ``max`` / ``max_open`` (a
number range), ``choices`` (a choice; numbers arrive as numbers), ``path`` (``"file"`` or
``"dir"``; with ``exists``, it must exist). A ``bool`` field is an ``--x/--no-x`` switch and a
``list[float]`` / ``list[int]`` field takes comma-separated numbers.

Click-only and torch-free: ``--help`` must answer at once.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import typing
from typing import Any, Callable, Mapping, Optional, Sequence

import click


class NumberList(click.ParamType):
    """Numbers separated by commas (or spaces): ``1,.875,.75`` -> ``[1.0, 0.875, 0.75]``."""

    def __init__(self, kind: type = float):
        self.kind = kind
        self.name = f"{kind.__name__.upper()},..."

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            numbers = [self.kind(v) for v in str(value).replace(",", " ").split()]
        except ValueError:
            numbers = []
        if not numbers:
            example = "1,1.5" if self.kind is float else "20,40"
            self.fail(f"expected comma-separated {self.kind.__name__}s like {example}; got {value!r}",
                      param, ctx)
        return numbers


FLOATS, INTS = NumberList(float), NumberList(int)


class DeviceList(click.ParamType):
    """``0`` or ``0,1,2,3``: CUDA device numbers, as a tuple of ints."""

    name = "DEVICES"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            devices = tuple(int(g) for g in str(value).replace(" ", "").split(","))
        except ValueError:
            devices = ()
        if not devices or any(g < 0 for g in devices):
            self.fail(f"expected device numbers like 0 or 0,1; got {value!r}", param, ctx)
        return devices


def int_choice(ctx, param, value):
    """A Choice of numbers as an int (None, not given, stays None)."""
    return None if value is None else int(value)


Decorator = Callable[[Callable], Callable]


def _field_type(f: dataclasses.Field, hints: Mapping[str, Any]) -> tuple[Any, Optional[Callable]]:
    """The click type of field ``f`` (and the callback that converts its value, if any)."""
    meta, hint = f.metadata, hints[f.name]
    kind = next((t for t in typing.get_args(hint) if t is not type(None)), hint)  # Optional[X] -> X
    if "choices" in meta:
        choices = meta["choices"]
        if all(isinstance(c, int) for c in choices):
            return click.Choice([str(c) for c in choices]), int_choice
        return click.Choice(list(choices)), None
    if "path" in meta:
        exists = meta.get("exists", False)
        if meta["path"] == "dir":
            return click.Path(exists=exists, file_okay=False), None
        if meta["path"] == "any":
            return click.Path(exists=exists), None
        return click.Path(exists=exists, dir_okay=False), None
    if typing.get_origin(kind) is list:
        return (INTS if typing.get_args(kind) == (int,) else FLOATS), None
    if "min" in meta or "max" in meta:
        limits = {"min": meta.get("min"), "max": meta.get("max"), "max_open": meta.get("max_open", False)}
        return (click.IntRange if kind is int else click.FloatRange)(**limits), None
    return kind, None


def _option(cls: type, f: dataclasses.Field, dest: str, prefix: str, help: str, **settings) -> Decorator:
    """One option for field ``f`` of ``cls``, its value arriving as ``dest``."""
    ptype, callback = _field_type(f, typing.get_type_hints(cls))
    name = prefix + f.metadata.get("option", f.name.replace("_", "-"))
    if ptype is bool:  # a switch; not given: None, unless a default is set
        return click.option(f"--{name}/--no-{name}", dest, help=help, **{"default": None, **settings})
    return click.option(f"--{name}", dest, type=ptype, callback=callback, help=help, **settings)


def option_fields(cls: type, names: Optional[Sequence[str]] = None) -> list[dataclasses.Field]:
    """The fields of ``cls`` that are options (those with a ``help``), or those of ``names`` in
    that order."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if names is None:
        return [f for f in fields.values() if "help" in f.metadata]
    return [fields[n] for n in names]


def record_options(cls: type, dest: str, prefix: str = "", help_prefix: str = "") -> Decorator:
    """Options ``--<prefix><name>`` for the fields of the record ``cls`` that are options, each
    with the field's default, shown. The command receives one ``cls`` built from them as its
    parameter ``dest``; the other fields keep their defaults."""
    chosen = option_fields(cls)

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            kwargs[dest] = cls(**{f.name: kwargs.pop(f"{dest}_{f.name}") for f in chosen})
            return command(*args, **kwargs)

        for f in reversed(chosen):  # click lists a command's options in decorator order
            wrapper = _option(cls, f, f"{dest}_{f.name}", prefix, help_prefix + f.metadata["help"],
                              default=f.default, show_default=True)(wrapper)
        return wrapper
    return decorate


def setting_options(cls: type, names: Sequence[str], dest: str, default_text: Callable[[str], str],
                    declared: Optional[Mapping[str, Decorator]] = None) -> Decorator:
    """Options for the settings ``names`` of ``cls``, in that order, whose defaults are resolved
    later (not given: None, no default of the option's own): each help ends in ``default_text(name)``, written from the source
    the resolving reads. ``declared``: fields whose option is declared elsewhere (an option
    several commands share), by a decorator giving the value as the field's name. The command
    receives the values as one dict, its parameter ``dest`` (several uses fill the same dict)."""
    chosen = option_fields(cls, names)
    declared = declared or {}

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            given = kwargs.setdefault(dest, {})
            given.update({f.name: kwargs.pop(f.name) for f in chosen})
            return command(*args, **kwargs)

        for f in reversed(chosen):
            if f.name in declared:
                wrapper = declared[f.name](wrapper)
                continue
            help = f"{f.metadata['help']}  {default_text(f.name)}".rstrip()
            wrapper = _option(cls, f, f.name, "", help)(wrapper)
        return wrapper
    return decorate


def field_help(cls: type, name: str) -> str:
    """The ``help`` of the field ``name`` of ``cls``: the text an option shared by other commands
    repeats."""
    return next(f.metadata["help"] for f in dataclasses.fields(cls) if f.name == name)


# --- shards of a job, defaulting from a SLURM array job ------------------------------------------

def _env_int(name: str) -> Optional[int]:
    value = os.environ.get(name)
    return int(value) if value and value.lstrip("-").isdigit() else None


def _slurm_shard() -> tuple[Optional[int], Optional[int]]:
    """(index, count) of a SLURM array job; ids may start at 1 (--array=1-8), so subtract the minimum."""
    task, count = _env_int("SLURM_ARRAY_TASK_ID"), _env_int("SLURM_ARRAY_TASK_COUNT")
    if task is None or count is None:
        return None, None
    return task - (_env_int("SLURM_ARRAY_TASK_MIN") or 0), count


def shard_options(f, index_help: str = "Which shard this job writes (0-based).",
                  count_help: str = "How many shards the videos are split into, by a hash of the video id."):
    """``--shard-index`` / ``--num-shards``, defaulting from a SLURM array job's variables."""
    @click.option("--shard-index", type=click.IntRange(min=0), default=None,
                  help=f"{index_help} Default: $SLURM_ARRAY_TASK_ID (minus $SLURM_ARRAY_TASK_MIN) "
                       "in a SLURM array job, else 0.")
    @click.option("--num-shards", type=click.IntRange(min=1), default=None,
                  help=f"{count_help} Default: $SLURM_ARRAY_TASK_COUNT in a SLURM array job, else 1.")
    @functools.wraps(f)
    def wrapper(*args, shard_index, num_shards, **kwargs):
        slurm_index, slurm_count = _slurm_shard()
        num_shards = num_shards or slurm_count or 1
        shard_index = shard_index if shard_index is not None else (slurm_index or 0)
        if shard_index >= num_shards:
            raise click.BadParameter(f"{shard_index} is not below --num-shards {num_shards}",
                                     param_hint="--shard-index")
        return f(*args, shard_index=shard_index, num_shards=num_shards, **kwargs)
    return wrapper
