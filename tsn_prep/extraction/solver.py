"""What the scheduler asks of a flow solver: the ``BatchSolver`` protocol, its pipelined form
(``PipelinedSolver``, a solver in a process of its own), and ``PairSolver``, which makes any
one-pair ``FlowFn`` a ``BatchSolver``."""
from __future__ import annotations

from concurrent.futures import Future
from typing import Callable, Optional, Protocol

import numpy as np

from .backends import FlowFn


class BatchSolver(Protocol):
    """A solver the scheduler drives, from one device thread: ``TorchTVL1`` on a GPU or the CPU, a
    ``SolverProcess`` running one in a child, or a ``PairSolver`` over any ``FlowFn``. What it
    is and does is fixed when it is made (its CPU threads too): the scheduler reads these
    attributes, it never probes for others."""

    # N pairs in one call cost less than N calls: the engine batches pairs across videos.
    batches: bool
    # Batches are padded to one shape per frame size: each new shape costs a compile.
    compiled: bool
    # ``batch`` takes the quantisation ``bound`` and then returns uint8 levels, not float flow.
    quantizes: bool

    def batch(self, prev: np.ndarray, cur: np.ndarray, bound: Optional[float] = None) -> np.ndarray:
        """N grey pairs (N, H, W) uint8 -> (N, H, W, 2) flow: float32 px, or uint8 with ``bound``."""

    def close(self, wait: bool = True) -> None:
        """Free what the solver holds; ``wait=False``: at once, abandoning a batch in flight."""


class PipelinedSolver(BatchSolver, Protocol):
    """A ``BatchSolver`` that solves in a process of its own (``solver_ring.RingSolver``): the
    device thread hands it a batch and goes on to the next, and the auto batch size is probed
    where the solver's device memory is."""

    def submit(self, prev, cur, bound: Optional[float] = None) -> Future:
        """Queue a batch; the future gives what ``batch`` returns."""

    def probe(self, size: tuple[int, int]) -> tuple[int, str]:
        """The auto batch for frames of ``size`` (h, w), and how it was chosen."""


SolverFactory = Callable[[Optional[int]], BatchSolver]
"""A device's solver: ``gpu`` (None: the CPU) -> the solver its thread drives."""


class SolverDied(RuntimeError):
    """A solver's process ended while it had a batch (e.g. the kernel's OOM killer)."""


class NotStarted(SolverDied):
    """A solver's process ended while this batch waited behind the one it was solving: nothing
    says this batch is to blame, so it is solved again."""


class PairSolver:
    """A ``BatchSolver`` over a one-pair ``FlowFn`` (OpenCV's TV-L1 on the CPU or CUDA, DIS,
    Farneback): the engine sends it one pair at a time. OpenCV releases the GIL while it computes,
    so the engine's solver threads run such solvers side by side."""

    batches = False
    compiled = False
    quantizes = False

    def __init__(self, fn: FlowFn):
        self.fn = fn

    def batch(self, prev: np.ndarray, cur: np.ndarray, bound: Optional[float] = None) -> np.ndarray:
        return np.stack([self.fn(a, b) for a, b in zip(prev, cur)])

    def close(self, wait: bool = True) -> None:
        """Nothing to end."""
