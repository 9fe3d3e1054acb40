"""The PyTorch TV-L1 (tsn_prep.extraction.tvl1_torch) against OpenCV, ground truth and a literal reference loop.

Kept fast on a 2-core machine: crops of the real clips (96x72, 64x48) and of Grove3, one torch
thread (other test processes share the cores; PyTorch's threads collapse when oversubscribed),
module-scoped fixtures so each expensive result is computed once.
"""
import math
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

import tsn_prep.extraction.tvl1_ops as ft
from tsn_core.machine import usable_cores
from tsn_prep.extraction import tvl1_compile
from tsn_prep.extraction.backends import BACKENDS
from tsn_prep.extraction.tvl1_torch import TorchTVL1
from tsn_prep.extraction.tvl1_params import TVL1Params

from .conftest import VIDEOS, run_python, torch_threads
from .test_flow_accuracy import epe, grove3_opencv

CLIPS = ("armwrestling_kinetics.mp4", "carphone.mp4", "poolcleaning.mp4")
SIZE = (340, 256)  # (w, h): frames are resized as the pipeline does, then cropped
CROP = (slice(92, 164), slice(122, 218))  # 96x72 from the middle of the frame
SMALL = (slice(104, 152), slice(138, 202))  # 64x48
FIRST, PAIRS = 2, 2  # frames 2..4 of each clip: pairs (2, 3) and (3, 4)
THREADS = 1


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with torch_threads(THREADS):
        yield


def grey_frames(path, first, count, size=None):
    cap = cv2.VideoCapture(str(path))
    out = []
    try:
        while len(out) < first + count:
            ok, frame = cap.read()
            assert ok, f"{path}: could not read frame {len(out)}"
            if size is not None:
                frame = cv2.resize(frame, size)
            out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    finally:
        cap.release()
    return out[first:]


@pytest.fixture(scope="module")
def eager():
    return TorchTVL1(TVL1Params(), "cpu", compile=False, threads=THREADS)


@pytest.fixture(scope="module")
def frames():
    """{clip: PAIRS + 1 consecutive grey 340x256 frames}."""
    return {clip: grey_frames(VIDEOS / clip, FIRST, PAIRS + 1, SIZE) for clip in CLIPS}


def stack_pairs(frames, crop):
    prev = np.stack([f[crop] for fs in frames.values() for f in fs[:-1]])
    nxt = np.stack([f[crop] for fs in frames.values() for f in fs[1:]])
    return prev, nxt


@pytest.fixture(scope="module")
def crops(frames):
    """(prev, next): the 96x72 crops of all PAIRS pairs of every clip, (6, 72, 96) each."""
    return stack_pairs(frames, CROP)


@pytest.fixture(scope="module")
def batched(eager, crops):
    """Our flow of all crops in one batch call, and each pair's iteration counts."""
    flow = eager.batch(*crops)
    return flow, eager.last_iterations


HAVE_CXX = bool(shutil.which("g++") or shutil.which("c++"))

# The compiled solver runs in a child process started with this module: on a fresh machine
# inductor's first compile costs ~25 s (it builds test programs for every vector ISA, then the
# kernel, with g++), and this module's tests run one torch thread, which leaves a core for it.
COMPILED_CHILD = """
import sys, numpy as np
from tsn_prep.extraction.tvl1_torch import TorchTVL1
from tsn_prep.extraction.tvl1_params import TVL1Params
d = np.load(sys.argv[1])
solver = TorchTVL1(TVL1Params(), "cpu", compile=True, threads=1)
with np.errstate(all="ignore"):
    flow = solver.batch(d["prev"], d["nxt"])
np.savez(sys.argv[2], flow=flow, iters=solver.last_iterations, compiled=solver.compiled)
"""
COMPILED_PAIRS = 3


@pytest.fixture(scope="module", autouse=True)
def compiled_child(crops, tmp_path_factory):
    """The compiled solver's flow of the first COMPILED_PAIRS crops, from a child process
    started when the module starts: (Popen, output path, stderr path)."""
    if not HAVE_CXX:
        yield None
        return
    d = tmp_path_factory.mktemp("compiled")
    np.savez(d / "in.npz", prev=crops[0][:COMPILED_PAIRS], nxt=crops[1][:COMPILED_PAIRS])
    err = open(d / "stderr.txt", "w")
    proc = subprocess.Popen([sys.executable, "-c", COMPILED_CHILD, str(d / "in.npz"), str(d / "out.npz")],
                            stdout=err, stderr=err, env=dict(os.environ, OMP_NUM_THREADS="1", TORCHINDUCTOR_COMPILE_THREADS="1"))
    yield proc, d / "out.npz", d / "stderr.txt"
    proc.kill()
    proc.wait()
    err.close()


def reference_flow(params, prev, nxt):
    """One pair, eagerly, with OpenCV's loops written literally (``while error > eps``): no mask,
    no batch. Returns the flow (H, W, 2) and the inner iterations per level and warping."""
    i0 = torch.as_tensor(prev, dtype=torch.float32)[None]
    i1 = torch.as_tensor(nxt, dtype=torch.float32)[None]
    sizes = ft.pyramid_sizes(*i0.shape[1:], params.scales, params.scale_step)
    down = 1.0 / params.scale_step
    i0s, i1s = [i0], [i1]
    for size in sizes[1:]:
        i0s.append(ft.resize(i0s[-1], size, down, down))
        i1s.append(ft.resize(i1s[-1], size, down, down))
    u1 = torch.zeros((1, *sizes[-1]))
    u2 = torch.zeros_like(u1)
    l_t = float(np.float32(params.lambda_ * params.theta))
    taut = float(np.float32(params.tau / params.theta))
    theta = float(np.float32(params.theta))
    iters = np.zeros((len(sizes), params.warps), np.int64)
    one = torch.ones(1, dtype=torch.bool)
    count = torch.zeros(1, dtype=torch.int32)
    for s in range(len(sizes) - 1, -1, -1):
        a, b = i0s[s], i1s[s]
        h, w = a.shape[1:]
        scaled_eps = params.epsilon ** 2 * h * w
        i1x, i1y = ft.centered_gradient(b)
        i1_stack = torch.stack([b, i1x, i1y], dim=1)
        p = [torch.zeros_like(a) for _ in range(4)]
        for warping in range(params.warps):
            const = ft.warp_constants(i1_stack, a, u1, u2, l_t)
            error = math.inf
            n_outer = 0
            while error > scaled_eps and n_outer < params.outer_iterations:
                n_outer += 1
                u1, u2 = ft._median(u1, params.median_filtering), ft._median(u2, params.median_filtering)
                n_inner = 0
                while error > scaled_eps and n_inner < params.inner_iterations:
                    n_inner += 1
                    iters[s, warping] += 1
                    out = ft.step(u1, u2, *p, *const, one, count, l_t, taut, theta, scaled_eps)
                    d1, d2 = out[0] - u1, out[1] - u2
                    error = float((d1 * d1 + d2 * d2).sum(dtype=torch.float64))
                    u1, u2, p = out[0], out[1], list(out[2:6])
        if s:
            (hs, ws), (hf, wf) = sizes[s], sizes[s - 1]
            factor = torch.tensor(1.0 / params.scale_step, dtype=torch.float32)
            sy, sx = 1.0 / (hf / hs), 1.0 / (wf / ws)
            u1 = ft.resize(u1, (hf, wf), sy, sx) * factor
            u2 = ft.resize(u2, (hf, wf), sy, sx) * factor
    return torch.stack([u1[0], u2[0]], dim=-1).numpy(), iters


# -- exactness of the device-side stopping ----------------------------------------------------

def test_device_side_stopping_gives_each_pair_opencvs_iteration_count(eager, frames):
    prev, nxt = stack_pairs(frames, SMALL)  # 6 pairs, 64x48
    flow = eager.batch(prev, nxt)
    iters = eager.last_iterations
    assert iters.shape == (len(prev), 5, 5) and iters.dtype == np.int32
    for k in range(len(prev)):
        ref_flow, ref_iters = reference_flow(eager.params, prev[k], nxt[k])
        assert np.array_equal(iters[k], ref_iters), (k, iters[k], ref_iters)
        assert np.array_equal(flow[k], ref_flow), k
    # the pairs stop at different iterations (else the mask would have nothing to do) and some
    # warpings run to the 300-iteration limit
    assert len({tuple(i.ravel()) for i in iters}) == len(prev)
    assert iters.min() >= 1 and iters.max() <= 300


def test_sync_every_does_not_change_the_result(crops, batched):
    flow, iters = batched  # sync_every=1 (the CPU default)
    assert TorchTVL1(compile=False).sync_every == 1
    seven = TorchTVL1(TVL1Params(), "cpu", compile=False, sync_every=7, threads=THREADS)
    assert np.array_equal(seven.batch(*crops), flow)
    assert np.array_equal(seven.last_iterations, iters)


def test_batch_equals_one_at_a_time_bit_for_bit(eager, crops, batched):
    flow, iters = batched
    prev, nxt = crops
    assert flow.shape == (len(prev), 72, 96, 2) and flow.dtype == np.float32
    for k in (0, 2, 5):  # one pair of each clip
        assert np.array_equal(eager(prev[k], nxt[k]), flow[k]), k
        assert np.array_equal(eager.last_iterations[0], iters[k])
    # torch tensors in, same answer
    assert np.array_equal(eager.batch(torch.from_numpy(prev[:2]), torch.from_numpy(nxt[:2])), flow[:2])


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch, crops, batched):
    def broken(*args):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(tvl1_compile, "_COMPILED", {})
    monkeypatch.setattr(tvl1_compile, "_WARNED", set())
    monkeypatch.setattr(tvl1_compile, "_compiled", lambda fn, *a: broken)
    solver = TorchTVL1(TVL1Params(), "cpu", compile=True, threads=THREADS)
    with pytest.warns(RuntimeWarning, match="running it eagerly") as record:
        got = solver.batch(crops[0][:1], crops[1][:1])
    assert len([w for w in record if "running it eagerly" in str(w.message)]) == 1
    assert not solver.compiled
    assert np.array_equal(got[0], batched[0][0])


def test_threads_never_exceed_usable_cores(monkeypatch, crops):
    calls = []
    real = torch.set_num_threads
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (calls.append(n), real(n)))
    before = torch.get_num_threads()
    solver = TorchTVL1(TVL1Params(scales=1, warps=1), "cpu", compile=False, threads=1000)
    solver.batch(crops[0][:1], crops[1][:1])
    assert calls and calls[0] == min(1000, usable_cores()) and max(calls) <= usable_cores()
    assert torch.get_num_threads() == before  # restored afterwards


# -- accuracy ---------------------------------------------------------------------------------

def test_real_clips_match_opencv_within_002_px(eager, frames):
    """Whole 340x256 frames, the first pair of each clip: crops have more of their area near a
    border and drift further from OpenCV (up to 0.026 px measured on 96x72 frames)."""
    ocv = cv2.optflow.DualTVL1OpticalFlow_create()
    diffs, moving = {}, []
    for clip, fs in frames.items():
        ours = eager(fs[0], fs[1])
        assert ours.shape == (SIZE[1], SIZE[0], 2) and ours.dtype == np.float32
        diffs[clip] = epe(ours, ocv.calc(fs[0], fs[1], None))
        moving.append(float(np.linalg.norm(ours, axis=2).mean()))
    # measured: 0.0077, 0.0012, 0.0154 px (mean end-point difference, torch 2.14, OpenCV 5.0)
    assert max(diffs.values()) <= 0.02, diffs
    # and the clips do move (the comparison is not between two zero fields)
    assert max(moving) > 1.0, moving


def test_grove3_end_point_error_within_1_percent_of_opencvs(eager):
    grey, gt, theirs = grove3_opencv()
    ours = eager(*grey)
    assert ours.shape == (480, 640, 2) and ours.dtype == np.float32
    # measured: 0.7544 px against OpenCV's 0.7574 px (0.4 % apart)
    assert abs(epe(ours, gt) - epe(theirs, gt)) <= 0.01 * epe(theirs, gt), (epe(ours, gt), epe(theirs, gt))


# -- integration --------------------------------------------------------------------------------

def test_registered_backend_and_lazy_import():
    fn = BACKENDS["torch"](TVL1Params(), None)
    assert isinstance(fn, TorchTVL1) and fn.device == torch.device("cpu") and fn.name == "torch"
    code = "import sys, tsn_prep.extraction.backends; print('torch' in sys.modules)"
    assert run_python(code).strip() == "False"


def test_cli_torch_backend_matches_opencv_and_batching_changes_no_byte(tmp_path, monkeypatch):
    from tsn_core.quantize import dequantize
    from tsn_core.store import Store

    from .conftest import cli, decode, link_videos

    monkeypatch.setenv("TSN_TORCH_COMPILE", "0")  # compiling takes longer than these few pairs
    # one solver in the engine's thread: starting solver processes (tests/test_engine.py) costs
    # more than these 4 pairs
    monkeypatch.setattr("tsn_prep.extraction.solver_choice.cpu_solvers", lambda: 1)
    videos = link_videos(tmp_path / "videos", {"carphone.mp4": "carphone.mp4"})
    runs = {"opencv": ["--backend", "opencv"], "torch1": ["--backend", "torch", "--batch-pairs", "1"],
            "torch3": ["--backend", "torch", "--batch-pairs", "3"]}  # 4 pairs: batches of 3 and 1
    for name, args in runs.items():
        cli("extract-flow", videos, tmp_path / name, "--size", "96x72", "--max-frames", "5",
            "--modality", "flow", "--modality", "warped_flow", *args)
    stores = {name: Store(tmp_path / name) for name in runs}
    assert stores["torch3"].entry("carphone", "flow").meta.parameters["flow_backend"] == "torch"
    assert stores["opencv"].entry("carphone", "flow").meta.parameters["flow_backend"] == "opencv"
    diffs = []
    for i in range(4):
        for ch in ("flow_x", "flow_y", "warped_flow_x", "warped_flow_y"):
            assert stores["torch1"].get("carphone", ch, i) == stores["torch3"].get("carphone", ch, i)
        ours, ref = ([dequantize(decode(stores[n].get("carphone", ch, i))) for ch in ("flow_x", "flow_y")]
                     for n in ("torch3", "opencv"))
        diffs.append(float(np.hypot(ours[0] - ref[0], ours[1] - ref[1]).mean()))
    print("quantised torch vs opencv, mean end-point difference per pair:", diffs)
    # quantised to 40/255 px steps: a pixel differs by a step where the two floats straddle a
    # step boundary, so this is about the float difference (larger at this tiny size than at 340x256)
    # measured: 0.0184, 0.0008, 0.0263, 0.0098 px
    assert max(diffs) <= 0.03, diffs


def test_grid_sample_remap_matches_the_written_out_cubic_remap():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 48, 64, generator=g) * 255
    u1, u2 = (torch.randn(2, 48, 64, generator=g) * 4 for _ in range(2))  # some taps fall outside
    fast, ref = ft._remap_cubic(img, u1, u2), ft._remap_cubic_gather(img, u1, u2)
    # measured: 0.0023 grey levels at most here (grid_sample's coordinate normalisation rounds)
    assert (fast - ref).abs().max() <= 0.02


def test_tsn_torch_compile_overrides_the_default(monkeypatch):
    monkeypatch.setenv("TSN_TORCH_COMPILE", "0")
    assert not tvl1_compile.compile_default(torch.device("cpu")) and not TorchTVL1().compiled
    monkeypatch.setenv("TSN_TORCH_COMPILE", "1")
    assert tvl1_compile.compile_default(torch.device("cpu"))
    monkeypatch.delenv("TSN_TORCH_COMPILE")
    assert TorchTVL1(compile=False).compile_parts == ()


@pytest.mark.skipif(not HAVE_CXX,
                    reason="torch.compile on the CPU (inductor) needs a C++ compiler; none on PATH")
def test_compiled_equals_eager(compiled_child, batched):
    """Last in the module, so the compile overlaps the other tests."""
    flow, iters = batched
    proc, out, stderr = compiled_child
    rc = proc.wait(timeout=300)
    assert rc == 0, f"the compiled solver's process failed ({rc}):\n{stderr.read_text()[-3000:]}"
    got = np.load(out)
    assert bool(got["compiled"]), "torch.compile fell back to eager"
    # measured: bit-identical on torch 2.14 CPU inductor; allowed: float rounding
    assert np.abs(got["flow"] - flow[:COMPILED_PAIRS]).max() <= 1e-4
    assert np.abs(got["iters"] - iters[:COMPILED_PAIRS]).max() <= 1
