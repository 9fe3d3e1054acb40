"""Flow backends, and the one place that says which backend a request means.

A backend is a callable ``(prev_grey, next_grey) -> float32 HxWx2`` (dx, dy in pixels, flow i from
frame i to frame i+1): OpenCV's CPU TV-L1, OpenCV's CUDA TV-L1, or our batched PyTorch TV-L1
(``tvl1_torch``); Farneback and DIS are OpenCV's on the CPU. A new backend only needs an entry in
``BACKENDS``. ``resolve_backend`` turns a request ("auto", a name) into the implementation that
runs; every other place calls it or is handed its answer.
"""
from __future__ import annotations

from typing import Callable, Optional

import cv2
import numpy as np

from .tvl1_params import TVL1Params

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(prev_grey uint8 HxW, next_grey uint8 HxW) -> float32 HxWx2`` flow (dx, dy) in pixels."""


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run on this machine; the message says what to do."""


class OpenCVTVL1:
    """CPU TV-L1 from opencv-contrib (``cv2.optflow``)."""

    name = "opencv"

    def __init__(self, params: TVL1Params = TVL1Params()):
        if not hasattr(cv2, "optflow"):
            raise BackendUnavailable(
                "this OpenCV lacks the contrib module cv2.optflow: "
                "pip uninstall opencv-python && pip install opencv-contrib-python"
            )
        p = params
        self.params = p
        self._tvl1 = cv2.optflow.DualTVL1OpticalFlow_create(
            tau=p.tau, lambda_=p.lambda_, theta=p.theta, nscales=p.scales, warps=p.warps,
            epsilon=p.epsilon, innnerIterations=p.inner_iterations,
            outerIterations=p.outer_iterations, scaleStep=p.scale_step, gamma=p.gamma,
            medianFiltering=p.median_filtering,
        )

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return self._tvl1.calc(prev, nxt, None)


def cuda_device_count() -> int:
    """CUDA devices visible to the installed cv2; 0 when it was built without CUDA (all PyPI wheels)."""
    try:
        return int(cv2.cuda.getCudaEnabledDeviceCount())
    except (AttributeError, cv2.error):
        return 0


NO_CUDA_HELP = (
    "the installed OpenCV ({version}) has no CUDA support (cv2.cuda.getCudaEnabledDeviceCount() is 0; "
    "no PyPI wheel of OpenCV has CUDA). Either drop --gpu to run TV-L1 on the CPU, or build "
    "opencv + opencv_contrib with -DWITH_CUDA=ON -DBUILD_opencv_cudaoptflow=ON and its Python "
    "bindings, and uninstall the PyPI opencv packages so that build is the one imported."
)


class OpenCVCudaTVL1:
    """GPU TV-L1 from OpenCV's cudaoptflow module, on one CUDA device.

    Never run on a GPU in this project's CI (no GPU there, no CUDA in PyPI's OpenCV): it is written
    against the documented ``cv2.cuda.OpticalFlowDual_TVL1`` API and checked for availability.
    """

    name = "opencv-cuda"

    def __init__(self, params: TVL1Params = TVL1Params(), device: int = 0):
        count = cuda_device_count()
        if count == 0:
            raise BackendUnavailable(NO_CUDA_HELP.format(version=cv2.__version__))
        if not 0 <= device < count:
            raise BackendUnavailable(f"--gpu {device}: OpenCV sees {count} CUDA device(s), 0..{count - 1}")
        # Python binding names differ across OpenCV versions.
        create = getattr(getattr(cv2, "cuda_OpticalFlowDual_TVL1", None), "create", None) or getattr(
            cv2.cuda, "OpticalFlowDual_TVL1_create", None)
        if create is None:
            raise BackendUnavailable(
                "this OpenCV has CUDA but not the cudaoptflow module: rebuild with "
                "-DBUILD_opencv_cudaoptflow=ON (from opencv_contrib)"
            )
        cv2.cuda.setDevice(device)
        p = params
        self.params = p
        self.device = device
        # The CUDA solver has no median filtering and one iteration count per warp, whose default
        # (300) is the CPU solver's inner x outer iterations.
        self._tvl1 = create(
            p.tau, p.lambda_, p.theta, p.scales, p.warps, p.epsilon,
            p.inner_iterations * p.outer_iterations, p.scale_step, p.gamma, False,
        )
        self._prev = cv2.cuda_GpuMat()
        self._next = cv2.cuda_GpuMat()

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        cv2.cuda.setDevice(self.device)  # per thread: the engine calls from its device's thread
        self._prev.upload(prev)
        self._next.upload(nxt)
        flow = self._tvl1.calc(self._prev, self._next, None)
        return flow.download()


def torch_tvl1(params: TVL1Params, gpu: Optional[int], threads: Optional[int] = None) -> FlowFn:
    """Our batched PyTorch TV-L1 on ``cuda:gpu`` (or the CPU), with ``threads`` CPU threads
    (``TorchTVL1``'s); torch is imported only here."""
    import torch

    from .tvl1_torch import TorchTVL1

    if gpu is not None:
        count = torch.cuda.device_count()
        if count == 0:
            raise BackendUnavailable(
                "PyTorch sees no CUDA device (torch.cuda.device_count() is 0) and the installed "
                "OpenCV has no CUDA either. Drop --gpu to run TV-L1 on the CPU, or install a CUDA "
                "build of torch on a machine with an NVIDIA GPU")
        if gpu >= count:
            raise BackendUnavailable(f"PyTorch sees {count} CUDA device(s); there is no device {gpu}")
    if params.gamma != 0:
        raise BackendUnavailable("the torch backend has no illumination term (gamma must be 0)")
    return TorchTVL1(params, f"cuda:{gpu}" if gpu is not None else "cpu", threads=threads)


# name -> factory(params, gpu); a new backend is one more entry.
BACKENDS: dict[str, Callable[[TVL1Params, Optional[int]], FlowFn]] = {
    "opencv": lambda params, gpu: OpenCVTVL1(params),
    "opencv-cuda": lambda params, gpu: OpenCVCudaTVL1(params, 0 if gpu is None else gpu),
    "torch": lambda params, gpu: torch_tvl1(params, gpu),
}


def resolve_backend(backend: Optional[str], gpu: Optional[int], algorithm: str = "tvl1") -> str:
    """The implementation flow of ``algorithm`` runs on when ``backend`` is asked for on ``gpu``
    (None: the CPU): ``auto`` (or None) means, for TV-L1 on a GPU, OpenCV CUDA when the
    installed cv2 has CUDA, else the PyTorch TV-L1 on ``cuda:gpu``, and OpenCV otherwise; a name
    means itself (``make_flow_fn`` says whether it can run). Runs call it through
    ``solver_choice.checked_plan`` only."""
    if backend not in (None, "auto"):
        return backend
    if algorithm != "tvl1" or gpu is None:
        return "opencv"
    return "opencv-cuda" if cuda_device_count() > 0 else "torch"


class OpenCVFarneback:
    """Farneback's polynomial-expansion flow (OpenCV, CPU), as dense_flow and denseflow offer it."""

    name = "opencv"
    # OpenCV's documented example settings, which dense_flow and denseflow pass as well.
    parameters = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5,
                  "poly_sigma": 1.2, "flags": 0}

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return cv2.calcOpticalFlowFarneback(prev, nxt, None, **self.parameters)


class OpenCVDIS:
    """Dense Inverse Search (Kroeger et al. 2016; OpenCV, CPU) with the ``medium`` preset."""

    name = "opencv"
    parameters = {"preset": "medium"}

    def __init__(self):
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def __call__(self, prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        return self._dis.calc(prev, nxt, None)


# Flow algorithms: name -> one-line description. TV-L1 has the backends above; the others are
# OpenCV's CPU implementations with fixed settings (recorded in each video's metadata).
ALGORITHMS = {
    "tvl1": "TV-L1 (the paper's; accurate, slowest)",
    "farneback": "Farneback polynomial expansion (OpenCV, CPU)",
    "dis": "Dense Inverse Search, medium preset (OpenCV, CPU; fastest)",
}
_OTHER_ALGORITHMS: dict[str, Callable[[], FlowFn]] = {"farneback": OpenCVFarneback, "dis": OpenCVDIS}


def algorithm_parameters(algorithm: str) -> dict:
    """Settings of a non-TV-L1 algorithm, for the metadata (TV-L1's are ``TVL1Params``)."""
    return dict(_OTHER_ALGORITHMS[algorithm].parameters)


def make_flow_fn(params: TVL1Params = TVL1Params(), gpu: Optional[int] = None,
                 backend: str = "opencv", algorithm: str = "tvl1") -> FlowFn:
    """The flow callable of ``algorithm`` with ``backend`` (a name of ``BACKENDS``, as
    ``resolve_backend`` gives it) on device ``gpu`` (None: the CPU); the other algorithms are
    OpenCV's, on the CPU."""
    if algorithm not in ALGORITHMS:
        raise BackendUnavailable(f"unknown flow algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
    if algorithm != "tvl1":
        if gpu is not None or backend != "opencv":
            raise BackendUnavailable(f"--algorithm {algorithm} runs on the CPU through OpenCV only; "
                                     "drop --gpu and --backend (they choose the TV-L1 implementation)")
        return _OTHER_ALGORITHMS[algorithm]()
    if backend not in BACKENDS:
        raise BackendUnavailable(f"unknown flow backend {backend!r}; known: {', '.join(BACKENDS)}")
    return BACKENDS[backend](params, gpu)
