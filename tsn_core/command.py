"""The command-line group of tsn-prep and tsn-train: what every command does on Ctrl-C or SIGTERM
(``tsn_core.interrupts``) and with a file the system refuses, declared once."""
from __future__ import annotations

import os
import signal
import sys

import click

from . import interrupts
from .errors import StoreError


class Group(click.Group):
    """A click group whose commands share one interrupt contract: Ctrl-C or SIGTERM stops the
    command, its ``finally`` blocks end its helpers, and one line says what is safe; exit 130 or
    143. A file the system refuses (permissions, a file where a folder should be...) is one line
    naming it, never a traceback; TSN_DEBUG=1 shows the traceback."""

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
            if os.environ.get("TSN_DEBUG"):
                raise
            if isinstance(exc, StoreError):  # e.g. a shard found damaged while reading it
                raise click.ClickException(one_line(exc)) from None
            if isinstance(exc, OSError) and exc.filename is not None:
                raise click.ClickException(f"{exc.filename}: {exc.strerror or exc}") from None
            raise


def one_line(exc: BaseException) -> str:
    """An error's message on one line: the words of an exception a DataLoader worker raised
    (PyTorch re-raises it with the worker's traceback in the message), not that traceback."""
    text = str(exc)
    if "\nOriginal Traceback" in text:  # its last line: "package.module.Type: the message"
        last = text.rstrip().splitlines()[-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return text
