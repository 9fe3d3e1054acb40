"""The options several ``tsn-prep`` commands share, declared once (types, defaults and help in one
place): the extraction commands' options, gathered into one ``ExtractJob``; ``--shard-index`` /
``--num-shards`` with their SLURM defaults; ``--quiet``. Shared option types and the options
generated from parameter records are ``tsn_core.options``'; ``--decoders`` is
``tsn_prep.decoders_option``'s."""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import click

from tsn_core.options import shard_options

from .decoders_option import decoders_option
from .extraction.params import ExtractParams
from .extraction.plan import RunPlan
from .video import parse_size

QUIET_HELP = ("No progress bar (there is none either when stderr is not a terminal: a log gets the "
              "summary line alone).")

# Option defaults are read from the records they fill, never typed twice.
EXTRACT = ExtractParams()


def _size(ctx, param, value):
    try:
        return parse_size(value) if value else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


class BatchPairs(click.ParamType):
    """A number of frame pairs >= 1, or ``auto`` (0 in RunPlan: the engine chooses)."""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        if str(value).strip().lower() == "auto":
            return 0
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            self.fail(f"expected a number of pairs >= 1 or 'auto', got {value!r}", param, ctx)
        return n


WORKERS_HELP = ("Decoding processes (one video each at a time; they also encode the JPEGs of RGB "
                "frames); 0 decodes in this process (for debugging).")
FLOW_WORKERS_HELP = (" Flow is solved beside them on pairs of many videos: one solver per GPU, or "
                     "with no GPU one per usable core.")


@dataclass(frozen=True)
class ExtractJob:
    """What extract-frames and extract-flow share: the videos, the store, the settings of the frames
    stored, and how the run is carried out (``--workers``, the shard, ``--decoders``...)."""

    videos: Path
    out: Path
    size: Optional[tuple[int, int]]
    short_side: Optional[int]
    jpeg_quality: int
    max_frames: Optional[int]
    workers: int
    shard_index: int
    num_shards: int
    decoders: tuple[str, ...]
    recompute: bool
    strict: bool
    quiet: bool

    def params(self, **flow) -> ExtractParams:
        """The extraction's ``ExtractParams``: the frame settings and ``flow``'s fields."""
        return ExtractParams(size=None if self.short_side else self.size, short_side=self.short_side,
                             max_frames=self.max_frames, jpeg_quality=self.jpeg_quality, **flow)

    def plan(self, **flow) -> RunPlan:
        """The run's ``RunPlan``: ``--workers``, ``--decoders`` and ``flow``'s fields."""
        return RunPlan(workers=self.workers, decoders=self.decoders, **flow)


def extract_options(flow: bool = False):
    """The options extract-frames and extract-flow share (``flow``: extract-flow's wording),
    arriving as one ``job``: an ``ExtractJob``."""
    return functools.partial(_extract_options, flow=flow)


def _extract_options(f, flow: bool):
    names = [field.name for field in dataclasses.fields(ExtractJob)]

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, job=ExtractJob(**{name: kwargs.pop(name) for name in names}), **kwargs)

    options = [
        click.argument("videos", type=click.Path(exists=True, path_type=Path)),
        click.argument("out", type=click.Path(path_type=Path)),
        click.option("--size", default="x".join(map(str, EXTRACT.size)), show_default=True, callback=_size,
                     help="Resize every frame to WIDTHxHEIGHT (the paper's 340x256)."),
        click.option("--short-side", type=click.IntRange(min=8), default=None,
                     help="Instead of --size: scale so the shorter side is N px, keeping the aspect ratio."),
        click.option("--jpeg-quality", type=click.IntRange(1, 100), default=EXTRACT.jpeg_quality, show_default=True,
                     help="JPEG quality of the stored images."),
        click.option("--max-frames", type=click.IntRange(min=2), default=None,
                     help="Use only the first N frames of each video (quick trials)."),
        click.option("--workers", type=click.IntRange(min=0), default=1, show_default=True,
                     help=WORKERS_HELP + (FLOW_WORKERS_HELP if flow else "")),
        shard_options,
        decoders_option,
        click.option("--recompute", is_flag=True,
                     help="Videos OUT already holds with other settings (e.g. another --size) are "
                          "computed again and replace the stored ones, each in one transaction. "
                          "Without it such a run stops before any work and names what differs."),
        click.option("--strict", is_flag=True,
                     help="A video that decodes with a warning (e.g. a truncated file: fewer "
                          "frames than its container declares) is a failure, not stored. Without "
                          "it, it is stored with the warning in its metadata, counted by info and "
                          "verify."),
        click.option("--quiet", is_flag=True, help=QUIET_HELP),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
