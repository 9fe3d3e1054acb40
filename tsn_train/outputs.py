"""Checking, before the work starts, that a command's outputs can be written where it was told.

``writable_file(path)`` and ``writable_folder(path)`` prove it the only sure way: they create
the folders that are missing, create and remove a temporary file in the folder, then remove the
folders they created (nothing is left behind, so a command that fails later for another reason
leaves no empty folder). A failure raises :class:`OutputError`, one line naming the path and the
reason, e.g. ``runs/ro/scores.npz: cannot write here (Permission denied)`` or
``out/afile/scores.npz: cannot write here (out/afile is a file, not a folder)``. Torch-free, so
the CLI can import it at start-up.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

PROBE_PREFIX = ".tsn-write-check-"


class OutputError(ValueError):
    """An output file or folder cannot be written there; the message names it and says why."""


def _fail(named: Path, why: str) -> OutputError:
    return OutputError(f"{named}: cannot write here ({why})")


def _not_a_folder(p: Path, named: Path) -> str:
    what = "a broken link" if p.is_symlink() and not p.exists() else "a file"
    return f"it is {what}, not a folder" if p == named else f"{p} is {what}, not a folder"


def _probe(folder: Path, named: Path) -> None:
    """Prove a file can be created in ``folder`` (made if missing); errors name ``named``."""
    missing = []  # folders to create for the probe, deepest first
    p = folder
    while not (p.exists() or p.is_symlink()) and p != p.parent:
        missing.append(p)
        p = p.parent
    if not p.is_dir():
        raise _fail(named, _not_a_folder(p, named))
    try:
        for d in reversed(missing):
            d.mkdir()
        fd, tmp = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise _fail(named, exc.strerror or str(exc)) from None
    finally:
        for d in missing:  # deepest first; one another process filled meanwhile stays
            try:
                d.rmdir()
            except OSError:
                pass


def writable_file(path: Path) -> Path:
    """``path`` as a Path, after proving a file can be written there (see the module docstring);
    an existing file there must be writable too."""
    path = Path(path)
    if path.is_dir():
        raise _fail(path, "it is a folder")
    _probe(path.parent, path)
    if path.exists() and not os.access(path, os.W_OK):
        raise _fail(path, "the file exists and is read-only")
    return path


def writable_folder(path: Path) -> Path:
    """``path`` as a Path, after proving files can be written in that folder (made if missing,
    then removed again if it was)."""
    path = Path(path)
    _probe(path, path)
    return path
