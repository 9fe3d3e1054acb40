"""Which flow backend a run uses (``resolved``, ``checked_plan``), which solvers it drives, on which devices
(``solvers``), and how many CPU solvers the machine can hold (``cpu_solvers``)."""
from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Optional

from tsn_core.machine import available_memory, usable_cores

from .backends import make_flow_fn, resolve_backend
from .params import ExtractParams
from .plan import RunPlan
from .solver import BatchSolver, PairSolver, SolverFactory
from .solver_process import SolverProcess, one_thread_solver
from .solver_ring import RingSolver, available as ring_available

SOLVER_PROCESS_BYTES = 600 << 20  # private memory of a CPU solver process (measured: 465 MiB at 340x256)


def cpu_solvers() -> int:
    """Solvers with no GPU: one per usable core, each with one thread, in a process of its own
    when there are several (``solver_process`` says why; one core needs no extra process). The
    decoding workers come on top: beside TV-L1 on the CPU they take a few per cent of a core.
    Fewer where memory is short: each process holds about ``SOLVER_PROCESS_BYTES`` of its own
    (torch and its compiler), so they use at most half the memory available now."""
    cores, available = usable_cores(), available_memory()
    return cores if available is None else max(1, min(cores, int(available / 2 // SOLVER_PROCESS_BYTES)))


def resolved(params: ExtractParams, plan: RunPlan) -> RunPlan:
    """``plan`` with the flow backend that runs in place of the one asked for: the one place a
    run's backend is chosen (``backends.resolve_backend``); a resolved plan comes back unchanged."""
    if not params.flow_modalities:
        return plan
    return replace(plan, backend=resolve_backend(plan.backend, plan.devices[0], params.algorithm))


def checked_plan(params: ExtractParams, plan: RunPlan) -> RunPlan:
    """``resolved(params, plan)``, once a flow function was made on each of its devices, so a
    missing GPU, or an OpenCV without CUDA, fails before any video with ``BackendUnavailable``
    (its message says what to do) rather than in every worker."""
    plan = resolved(params, plan)
    if params.flow_modalities:
        for gpu in plan.devices:
            make_flow_fn(params.tvl1, gpu, plan.backend, params.algorithm)
    return plan


def solvers(params: ExtractParams, plan: RunPlan) -> tuple[tuple[Optional[int], ...], Optional[SolverFactory]]:
    """The devices a run solves flow on (GPU numbers, None for a CPU solver) and how each one's
    solver is made; no devices when no flow is asked for. ``plan.backend`` is the backend that
    runs, as ``resolved`` named it (``scheduler.engine_results`` hands it over).

    The torch TV-L1: one per GPU, in a ``RingSolver`` (a process of its own, fed through shared
    memory) unless ``plan.gpu_solver_in`` says "thread"; with none, ``cpu_solvers()`` one-thread
    solvers, each in a ``SolverProcess`` when there are several. OpenCV's (TV-L1, DIS,
    Farneback): one per GPU with OpenCV's CUDA TV-L1, else one per usable core, in threads of this
    process."""
    if not params.flow_modalities:
        return (), None
    backend = plan.backend
    if backend == "torch":
        cpu = cpu_solvers()

        in_process = plan.gpus and plan.gpu_solver_in == "process" and ring_available()

        def make(gpu: Optional[int]) -> BatchSolver:
            if gpu is None:
                return SolverProcess(params.tvl1) if cpu > 1 else one_thread_solver(params.tvl1)
            if in_process:
                return RingSolver(partial(make_flow_fn, params.tvl1, gpu, "torch", "tvl1"), gpu)
            return make_flow_fn(params.tvl1, gpu, "torch", "tvl1")

        return plan.gpus or (None,) * cpu, make

    def make_pairwise(gpu: Optional[int]) -> BatchSolver:
        return PairSolver(make_flow_fn(params.tvl1, gpu, backend, params.algorithm))

    on_gpu = backend == "opencv-cuda"
    return (plan.gpus or (0,)) if on_gpu else (None,) * usable_cores(), make_pairwise
