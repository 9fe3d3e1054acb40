"""How an extraction runs: processes, devices, batches. None of it changes a stored byte.

``ExtractParams`` (``params``) says what is stored and is recorded with every entry;
a ``RunPlan`` says how the machine is used to get there and is recorded nowhere, so the same store
can be finished by a job with another plan (other GPUs, more workers, another batch size).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from tsn_core.machine import usable_cores

from ..video import DECODERS

GPU_SOLVERS = ("process", "thread")


def default_threads(workers: int) -> int:
    """Decoder threads per decoding worker so that workers x threads matches the usable cores;
    0 (the decoders' own default) for a single worker."""
    if workers <= 1:
        return 0
    return max(1, usable_cores() // workers)


@dataclass(frozen=True)
class RunPlan:
    """How the scheduler (``scheduler``) runs an extraction."""

    # Decoding processes, one video each at a time; 0 decodes in a thread of this process
    # (one video on the command line: no process to start).
    workers: int = 1
    gpus: tuple[int, ...] = ()     # CUDA devices flow is solved on; () the CPU
    backend: str = "auto"          # TV-L1 implementation asked for (backends.resolve_backend)
    # Frame pairs per call of a solver that batches (the torch TV-L1), across videos; 0: auto
    # (on a GPU from its free memory, on the CPU from the frame size). Solvers that do not batch
    # (OpenCV's) take one pair at a time whatever this says.
    batch_pairs: int = 0
    threads: Optional[int] = None  # decoder threads per worker; None: ``default_threads(workers)``
    decoders: tuple[str, ...] = DECODERS  # tried in order; the one used is each video's "decoder"
    # Where the torch TV-L1 of a GPU runs: "process", a child process fed through shared-memory
    # slots (``solver_ring``), or "thread", a thread of the run's process; "auto": the
    # environment's TSN_GPU_SOLVER, else "process" (docs/performance.md: the run's encoding
    # threads then no longer hold up the solver).
    gpu_solver: str = "auto"

    @property
    def devices(self) -> tuple[Optional[int], ...]:
        """The GPUs, or (None,) for the CPU."""
        return self.gpus or (None,)

    @property
    def decoder_threads(self) -> int:
        return default_threads(self.workers) if self.threads is None else self.threads

    @property
    def gpu_solver_in(self) -> str:
        """``gpu_solver`` resolved: "process" or "thread"."""
        mode = os.environ.get("TSN_GPU_SOLVER", "process") if self.gpu_solver == "auto" else self.gpu_solver
        if mode not in GPU_SOLVERS:
            raise ValueError(f"the GPU solver runs in a {' or a '.join(GPU_SOLVERS)} (RunPlan.gpu_solver, "
                             f"TSN_GPU_SOLVER), not {mode!r}")
        return mode
