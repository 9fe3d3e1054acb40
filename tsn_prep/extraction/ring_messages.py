"""What the two ends of a ``RingSolver`` say to each other, and where a batch lies in a slot.

Per batch one small message each way over a pipe (no pixels: the frames and flows are in the
slot's shared memory, laid out by ``layout`` and read through ``views``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

SLOTS = 2            # batches in flight per solver: one solving, one being written
ALIGN = 4096         # the flows' offset in a slot


def layout(n: int, h: int, w: int, itemsize: int) -> tuple[int, int]:
    """(offset of the flows, bytes needed) in a slot for a batch of ``n`` pairs of h x w frames
    whose flows have ``itemsize`` bytes a value."""
    frames = 2 * n * h * w
    out = -(-frames // ALIGN) * ALIGN
    return out, out + n * h * w * 2 * itemsize


def views(buf, n: int, h: int, w: int, out: int, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """prev, cur (n, h, w) uint8 and the flows: (n, 2, h, w) uint8 or (n, h, w, 2) float32."""
    plane = n * h * w
    prev = np.frombuffer(buf, np.uint8, plane, 0).reshape(n, h, w)
    cur = np.frombuffer(buf, np.uint8, plane, plane).reshape(n, h, w)
    dtype = np.dtype(dtype)
    shape = (n, 2, h, w) if dtype == np.uint8 else (n, h, w, 2)
    flows = np.frombuffer(buf, dtype, 2 * plane, out).reshape(shape)
    return prev, cur, flows


@dataclass(frozen=True)
class SolverTraits:
    """The child's solver as ``BatchSolver`` describes it."""
    batches: bool
    compiled: bool
    quantizes: bool


# -- the parent to the child (None: end) -------------------------------------------------------

@dataclass(frozen=True)
class Segment:
    """Slot ``slot`` is a new memfd of ``size`` bytes; its file descriptor follows on the pipe."""
    slot: int
    size: int


@dataclass(frozen=True)
class Solve:
    """Solve the ``n`` pairs of h x w frames in slot ``slot``; flows at offset ``out``, quantised
    with ``bound`` (None: float flows)."""
    seq: int
    slot: int
    n: int
    h: int
    w: int
    out: int
    bound: Optional[float]


@dataclass(frozen=True)
class Probe:
    """Probe the auto batch for frames of ``size`` (h, w) on the child's device."""
    seq: int
    size: tuple[int, int]


Request = Union[Segment, Solve, Probe, None]


# -- the child to the parent -------------------------------------------------------------------

@dataclass(frozen=True)
class Hello:
    """The child's solver is ready (``traits``), or could not be made (``error``)."""
    traits: Optional[SolverTraits]
    error: Optional[BaseException] = None


@dataclass(frozen=True)
class Done:
    """Request ``seq`` is answered: ``value`` (a ``Solve``: the flows' dtype, "uint8" or
    "float32"; a ``Probe``: (batch, how it was chosen)) or ``error``; ``batches``: the batches
    the child has solved."""
    seq: int
    value: object
    error: Optional[BaseException]
    batches: int


@dataclass(frozen=True)
class Bye:
    """The child ends, as asked, after ``batches`` batches."""
    batches: int


Reply = Union[Hello, Done, Bye]
