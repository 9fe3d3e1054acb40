"""Reading .pt files without running code: tensors and plain data only."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch


class RefusedFile(ValueError):
    """A file that holds Python objects other than tensors and plain data; it was not loaded."""


def load_plain(path: Path) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU.

    That unpickler builds only tensors, built-in containers and numbers, and refuses any other
    global before calling it, so a checkpoint or weights file from elsewhere cannot execute code
    (a plain pickle runs whatever its ``__reduce__`` names). Refusals raise :class:`RefusedFile`
    with a one-line reason; other read errors propagate as they are.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # Junk bytes are an UnpicklingError too; a refusal is the one that names a global.
        why = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line), None)
        if why is None:
            raise
        raise RefusedFile(f"{path}: refused: it holds Python objects other than tensors and plain data, "
                          f"which could run code when loaded; not loaded ({why})") from None
