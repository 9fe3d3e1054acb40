"""Reading .pt files without running code: tensors and plain data only."""
from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

ZIP_MAGIC = b"PK\x03\x04"          # torch.save's format since PyTorch 1.6 (a zip archive)
PICKLE_MAGIC = b"\x80"              # a pickle (protocol 2+): torch.save's legacy format, or plain pickle
LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."  # legacy torch.save's first pickle


class RefusedFile(ValueError):
    """A file that holds Python objects other than tensors and plain data; it was not loaded."""


class UnreadableFile(ValueError):
    """A file that is not a readable PyTorch file: empty, truncated, damaged or something else.

    ``reason`` is a short phrase without the path (``str()`` is ``"{path}: {reason}"``), so a
    caller can say what it expected: ``f"{path}: unreadable checkpoint ({exc.reason})"``.
    """

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _first_line(exc: BaseException, limit: int = 120) -> str:
    """The gist of a torch.load error in one short line, without PyTorch's advice."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # the advice (re-run with weights_only=False) comes first
        text = text.split("WeightsUnpickler error:", 1)[1]
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "") or type(exc).__name__
    line = line.split(". This is an internal miniz error", 1)[0]
    return line if len(line) <= limit else line[:limit - 3] + "..."


def unreadable_reason(path: Path, exc: BaseException) -> str:
    """Why ``torch.load`` could not read ``path`` (it raised ``exc``), judged by the file's first
    bytes: empty, not a PyTorch file at all, or a PyTorch file that is truncated or damaged."""
    if isinstance(exc, OSError) and exc.filename is not None:  # opening it failed (permissions...)
        return f"cannot read it ({exc.strerror or exc})"
    try:
        with open(path, "rb") as f:
            head = f.read(len(LEGACY_MAGIC))
    except OSError as err:
        return f"cannot read it ({err.strerror or err})"
    if not head:
        return "empty file"
    if head.startswith(ZIP_MAGIC) or head == LEGACY_MAGIC:
        if isinstance(exc, OSError):  # torch's zip reader seeking past the end: errno 22, no words
            return "truncated or damaged PyTorch file: its zip archive ends early or is damaged"
        return f"truncated or damaged PyTorch file: {_first_line(exc)}"
    if head.startswith(PICKLE_MAGIC):
        return "not a PyTorch file: a plain pickle, not written by torch.save"
    return "not a PyTorch file: neither a zip archive nor a pickle"


def load_plain(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU.

    That unpickler builds only tensors, built-in containers and numbers, and refuses any other
    global before calling it, so a checkpoint or weights file from elsewhere cannot execute code
    (a plain pickle runs whatever its ``__reduce__`` names). Refusals raise :class:`RefusedFile`
    with a one-line reason; any other failure (empty, truncated, random bytes, unreadable) raises
    :class:`UnreadableFile` with one (never PyTorch's advice to load with ``weights_only=False``).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": advice, not errors
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # Junk bytes are an UnpicklingError too; a refusal is the one that names a global.
        why = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line), None)
        if why is None:
            raise UnreadableFile(path, unreadable_reason(path, exc)) from None
        raise RefusedFile(f"{path}: refused: it holds Python objects other than tensors and plain data, "
                          f"which could run code when loaded; not loaded ({why})") from None
    except Exception as exc:  # noqa: BLE001 - zip, EOF, key and torch errors all mean "unreadable"
        raise UnreadableFile(path, unreadable_reason(path, exc)) from None
