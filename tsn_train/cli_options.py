"""What several ``tsn-train`` commands share, declared once: option factories (functions returning
click decorators, with the type, default and help in one place), the option types they use, and
``one_line_errors``, which ends a command on one of our errors with one line instead of a
traceback.

Torch-free, like tsn_train/cli.py: ``--help`` must answer at once.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable, Optional

import click
from click.core import ParameterSource

from tsn_core.command import one_line
from tsn_core.lists import ListError
from tsn_core.diskspace import DiskFull
from tsn_core.errors import StoreError

from .archs import PretrainedError
from .config import CROP_CHOICES, TEST_CROPS, TEST_SEGMENTS, default_text


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


def int_choice(ctx, param, value):
    """A Choice of numbers as an int (None, not given, stays None)."""
    return None if value is None else int(value)


def config_help(text: str, setting: str) -> str:
    """Help of an option whose default ``tsn_train.config`` resolves (fit's): the text, then that
    default, written from the same source (one source of defaults)."""
    return f"{text}  {default_text(setting)}".rstrip()


# --- options of several commands ----------------------------------------------------------------

DEVICE_HELP = "auto, cpu, cuda or cuda:N."
AMP_CHOICES = ["auto", "off", "bf16", "fp16"]
AMP_HELP = "Mixed precision. auto = bf16 on CUDA (fp16 if the GPU lacks bf16), off on the CPU."


def checkpoint_option(help: str, multiple: bool = False):
    """``--checkpoint``: a fit checkpoint file, required; with ``multiple`` it repeats (one per
    stream) and arrives as the tuple ``checkpoints``."""
    names = ("--checkpoint", "checkpoints") if multiple else ("--checkpoint",)
    return click.option(*names, multiple=multiple, required=True, help=help,
                        type=click.Path(exists=True, dir_okay=False, path_type=Path))


def store_option():
    """``--store``: the tsn-prep store read, required (a path string)."""
    return click.option("--store", type=click.Path(exists=True, file_okay=False), required=True,
                        help="Output folder of tsn-prep (the LMDB shards).")


def device_option(default: Optional[str] = "auto"):
    """``--device``. ``default`` None: not given is None, resolved by ``tsn_train.config`` (fit),
    whose default the help shows."""
    if default is None:
        return click.option("--device", type=str, help=config_help(DEVICE_HELP, "device"))
    return click.option("--device", type=str, default=default, show_default=True, help=DEVICE_HELP)


def amp_option(default: Optional[str] = "auto"):
    """``--amp auto|off|bf16|fp16``, the same choice in every command (``distributed.autocast_dtype``).
    ``--amp`` alone is ``auto`` and the hidden ``--no-amp`` is ``--amp off``: the spellings of
    test's former on/off flag. ``default`` None as in ``device_option``."""

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
        f = click.option("--amp", type=click.Choice(AMP_CHOICES), default=default,
                         show_default=default is not None, is_flag=False, flag_value="auto",
                         callback=amp,
                         help=AMP_HELP if default is not None else config_help(AMP_HELP, "amp"))(f)
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


# --- errors ----------------------------------------------------------------------------------------

def our_errors() -> tuple[type[BaseException], ...]:
    """What a command's own checks raise on bad input or a failed step (a list naming videos the
    store lacks, a damaged score file or checkpoint, an output that cannot be written, no CUDA
    device...): shown as one line. ValueError covers OutputError, RefusedFile and UnreadableFile."""
    from .scores import ScoreError  # here: tsn_train.scores imports cv2, --help must not wait for it

    return (ValueError, RuntimeError, ListError, StoreError, PretrainedError, ScoreError, DiskFull)


def one_line_errors(f: Callable) -> Callable:
    """Decorate a command (or a helper of one): ``our_errors`` end it as ``Error: <message>`` and
    exit code 1, never a traceback; with TSN_DEBUG set they propagate (the full traceback, for bug
    reports). Anything else propagates as it is."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except Exception as exc:
            if isinstance(exc, click.ClickException) or os.environ.get("TSN_DEBUG") \
                    or not isinstance(exc, our_errors()):
                raise
            raise click.ClickException(one_line(exc)) from None

    return wrapper


def cannot_write(path, exc: OSError) -> click.ClickException:
    """The one line of an output that could not be written (e.g. the disk filled up)."""
    return click.ClickException(f"{path}: cannot write ({exc.strerror or exc})")
