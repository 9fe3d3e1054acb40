"""The options several ``tsn-train`` commands share, declared once (option factories: functions
returning click decorators, with the type, default and help in one place), and ``our_errors``,
the errors the tool's group (``tsn_core.command.Group``) ends a command on with one line instead
of a traceback. The option types are ``tsn_core.options``'; fit's options are generated there from
``FitConfig`` (tsn_train/config.py).

Torch-free, like tsn_train/cli.py: ``--help`` must answer at once.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Optional

import click
from click.core import ParameterSource

from tsn_core.errors import StoreError
from tsn_core.lists import ListError
from tsn_core.options import FLOATS, field_help, int_choice
from tsn_core.diskspace import DiskFull

from .archs import PretrainedError
from .config import AMP_CHOICES, CROP_CHOICES, TEST_CROPS, TEST_SEGMENTS, FitConfig, default_text


# --- options of several commands ----------------------------------------------------------------

DEVICE_HELP, AMP_HELP = field_help(FitConfig, "device"), field_help(FitConfig, "amp")


def checkpoint_option(help: str, multiple: bool = False):
    """``--checkpoint``: a fit checkpoint file, required; with ``multiple`` it repeats (one per
    stream) and arrives as the tuple ``checkpoints``."""
    names = ("--checkpoint", "checkpoints") if multiple else ("--checkpoint",)
    return click.option(*names, multiple=multiple, required=True, help=help,
                        type=click.Path(exists=True, dir_okay=False, path_type=Path))


def device_option():
    """``--device``, ``auto`` unless given (fit's is generated from ``FitConfig.device``)."""
    return click.option("--device", type=str, default="auto", show_default=True, help=DEVICE_HELP)


def amp_option(default: Optional[str] = "auto"):
    """``--amp auto|off|bf16|fp16``, the same choice in every command (``distributed.autocast_dtype``).
    ``--amp`` alone is ``auto`` and the hidden ``--no-amp`` is ``--amp off``: the spellings of
    test's former on/off flag. ``default`` None: not given is None, resolved by
    ``tsn_train.config`` (fit), whose default the help shows."""

    def no_amp(ctx, param, value):  # eager: runs before --amp's callback
        if value:
            ctx.meta["tsn_train.no_amp"] = True

    def amp(ctx, param, value):
        if not ctx.meta.get("tsn_train.no_amp"):
            return value
        if ctx.get_parameter_source(param.name) == ParameterSource.COMMANDLINE and value != "off":
            raise click.BadParameter(f"--no-amp contradicts --amp {value}", ctx, param)
        return "off"

    def decorator(f: Callable) -> Callable:
        help = AMP_HELP if default is not None else f"{AMP_HELP}  {default_text('amp')}"
        f = click.option("--amp", type=click.Choice(list(AMP_CHOICES)), default=default,
                         show_default=default is not None, is_flag=False, flag_value="auto",
                         callback=amp, help=help)(f)
        return click.option("--no-amp", is_flag=True, hidden=True, expose_value=False, is_eager=True,
                            callback=no_amp, help="Same as --amp off.")(f)

    return decorator


def segments_option(help: str = "Evenly spaced snippets per video.",
                    default: Optional[int] = TEST_SEGMENTS):
    """``--segments``: snippets (segments K) per video; the test protocol's 25 unless ``default``
    says otherwise (None: not given is None, and ``help`` says what that means)."""
    return click.option("--segments", type=click.IntRange(min=1), default=default,
                        show_default=default is not None, help=help)


def crops_option():
    """``--crops``: the test protocol's crops per snippet, as an int."""
    return click.option("--crops", type=click.Choice([str(c) for c in CROP_CHOICES]),
                        default=str(TEST_CROPS), show_default=True, callback=int_choice,
                        help="10 = four corners + centre and their mirror images; 3 = along the "
                             "long side; 1 = centre.")


def weights_option(help: str = "Fusion weight per checkpoint, in their order, e.g. 1,1.5."):
    """``--weights``: fusion weights, one per stream (a list of floats, None if not given)."""
    return click.option("--weights", type=FLOATS, help=f"{help}  [default: 1 each]")


def top_option(help: str):
    """``--top``: how many classes are printed."""
    return click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help=help)


def mtwi_options(f: Callable) -> Callable:
    """test's ``--protocol`` and the M-TWI settings, arriving as ``mtwi``: None for the segments
    protocol, else the dict ``tsn_train.protocol.run_test`` reads (``rate``, ``combine``, ``rule``)."""

    @functools.wraps(f)
    def wrapper(*args, protocol, rate, crop_combine, mtwi_rule, **kwargs):
        mtwi = {"rate": rate, "combine": crop_combine, "rule": mtwi_rule} if protocol == "mtwi" else None
        return f(*args, mtwi=mtwi, **kwargs)

    options = [
        click.option("--protocol", type=click.Choice(["segments", "mtwi"]), default="segments",
                     show_default=True,
                     help="segments: the paper's trimmed-video protocol (--segments snippets, averaged). "
                          "mtwi: untrimmed video, Multi-scale Temporal Window Integration over snippets at "
                          "--rate per second (docs/untrimmed.md)."),
        click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
                     help="mtwi: snippets per second, placed by the store's recorded fps."),
        click.option("--crop-combine", type=click.Choice(["max", "mean"]), default="max", show_default=True,
                     help="mtwi: how a snippet's crops are combined (the reference code takes the max)."),
        click.option("--mtwi-rule", type=click.Choice(["reference", "paper"]), default="reference",
                     show_default=True, help="mtwi: the reference code's windows, or the paper's text."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def streams_of(f: Callable) -> Callable:
    """Gather ``--checkpoint`` (repeated), ``--weights``, ``--device`` and ``--amp``, declared
    where the command's help lists them, into one ``streams``: a ``tsn_train.classify.Streams``."""
    from .classify import Streams

    @functools.wraps(f)
    def wrapper(*args, checkpoints, weights, device, amp, **kwargs):
        return f(*args, streams=Streams(checkpoints, weights, device, amp), **kwargs)

    return wrapper


# --- errors ----------------------------------------------------------------------------------------

def our_errors() -> tuple[type[BaseException], ...]:
    """What a command's own checks raise on bad input or a failed step (a list naming videos the
    store lacks, a damaged score file or checkpoint, an output that cannot be written, no CUDA
    device...): shown as one line. ValueError covers OutputError, RefusedFile and UnreadableFile."""
    from .scores import ScoreError  # here: tsn_train.scores imports cv2, --help must not wait for it

    return (ValueError, RuntimeError, ListError, StoreError, PretrainedError, ScoreError, DiskFull)


def cannot_write(path, exc: OSError) -> click.ClickException:
    """The one line of an output that could not be written (e.g. the disk filled up)."""
    return click.ClickException(f"{path}: cannot write ({exc.strerror or exc})")


def store_or_videos(videos_help: str) -> Callable[[Callable], Callable]:
    """``--store`` or ``--videos`` (one of them), arriving as ``source``: ``("store", path)`` or
    ``("videos", path)``; ``videos_help`` says what the command does with video files."""
    def decorate(f: Callable) -> Callable:
        @click.option("--store", type=click.Path(exists=True, file_okay=False), default=None,
                      help="Output folder of tsn-prep (the LMDB shards).")
        @click.option("--videos", type=click.Path(exists=True), default=None,
                      help="Instead of --store: video files (a folder, one file, or a text file of "
                           "paths; ids as tsn-prep names them), " + videos_help)
        @functools.wraps(f)
        def wrapper(*args, store, videos, **kwargs):
            if (store is None) == (videos is None):
                raise click.UsageError("give --store or --videos (one of them)")
            return f(*args, source=("store", Path(store)) if store else ("videos", Path(videos)), **kwargs)
        return wrapper
    return decorate
