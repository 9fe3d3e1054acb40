"""The command-line group of tsn-prep and tsn-train: what every command does on Ctrl-C or SIGTERM
(``tsn_core.interrupts``), with a file the system refuses, and with the errors its tool declares
as one-line errors, declared once. Options and their types are in ``tsn_core.options``."""
from __future__ import annotations

import os
import signal
import sys
from typing import Callable, Optional

import click

from . import interrupts
from .errors import StoreError

# Both tools: -h is --help, and help text is wrapped at 100 columns at most.
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# click's own ends of a command (usage errors, --help's exit, an abort); Exit and Abort are
# RuntimeErrors, which a tool may declare as its own errors
CLICK_OWN = (click.ClickException, click.exceptions.Exit, click.Abort)

ErrorTypes = Callable[[], tuple[type[BaseException], ...]]


class Group(click.Group):
    """A click group whose commands share one interrupt contract: Ctrl-C or SIGTERM stops the
    command, its ``finally`` blocks end its helpers, and one line says what is safe; exit 130 or
    143. A file the system refuses (permissions, a file where a folder should be...) is one line
    naming it, never a traceback; TSN_DEBUG=1 shows the traceback.

    ``errors``: a function returning the exception types the tool's own checks raise on bad input
    or a failed step; a command ending on one prints ``Error: <message>`` on one line, exit 1
    (a function, so that a type whose module is slow to import is imported only on an error)."""

    def __init__(self, *args, errors: Optional[ErrorTypes] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.errors = errors

    def main(self, *args, **kwargs):
        with interrupts.handled():
            try:
                return super().main(*args, **kwargs)
            except SystemExit as exc:
                interrupts.note_exit(exc.code)
                raise

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            signum = exc.signum if isinstance(exc, interrupts.Interrupted) else signal.SIGINT
            sys.exit(interrupts.finish(signum))
        except Exception as exc:
            # a helper's failure caused by the same signal (SLURM's SIGTERM reaches every process
            # of a job) is the interrupt, not an error of its own
            signum = interrupts.requested()
            if signum is not None:
                sys.exit(interrupts.finish(signum))
            if os.environ.get("TSN_DEBUG") or isinstance(exc, CLICK_OWN):
                raise
            if isinstance(exc, StoreError) or (self.errors and isinstance(exc, self.errors())):
                raise click.ClickException(one_line(exc)) from None  # e.g. a shard found damaged
            if isinstance(exc, OSError) and exc.filename is not None:
                raise click.ClickException(f"{exc.filename}: {exc.strerror or exc}") from None
            raise


def group(errors: Optional[ErrorTypes] = None) -> Callable:
    """``@group()``: a tool's top-level ``Group`` with the shared context settings."""
    return click.group(cls=Group, errors=errors, context_settings=CONTEXT_SETTINGS)


def one_line(exc: BaseException) -> str:
    """An error's message on one line: the words of an exception a DataLoader worker raised
    (PyTorch re-raises it with the worker's traceback in the message), not that traceback."""
    text = str(exc)
    if "\nOriginal Traceback" in text:  # its last line: "package.module.Type: the message"
        last = text.rstrip().splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text
