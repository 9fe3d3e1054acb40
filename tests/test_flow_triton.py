"""The hand-written Triton iteration (tsn_prep/extraction/tvl1_triton.py) against the torch iteration.

On a machine without a GPU the kernels run in Triton's CPU interpreter, in a child process
(``TRITON_INTERPRET`` is read when the kernels are defined); skipped where Triton is not
installed. On CUDA they run natively, with and without CUDA graphs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tsn_prep.extraction import tvl1_triton as flow_triton
from tsn_prep.extraction.tvl1_torch import TorchTVL1
from tsn_prep.extraction.tvl1_params import TVL1Params

from .conftest import VIDEOS
from .test_flow_torch import CLIPS, SIZE, SMALL, grey_frames

HAVE_TRITON = flow_triton.triton is not None

# few iterations, so the interpreter is quick (its cost is per kernel launch and work item): with
# epsilon 0.08 the 3 pairs run 32 (the limit, 8 per warping), 22 and 24 iterations in all
SMALL_PARAMS = TVL1Params(scales=2, warps=2, outer_iterations=2, inner_iterations=4, epsilon=0.08)
CUDA = torch.cuda.is_available()


def small_pairs():
    """One 64x48 pair per clip: frames 2 and 3."""
    prev, nxt = [], []
    for clip in CLIPS:
        a, b = grey_frames(VIDEOS / clip, 2, 2, SIZE)
        prev.append(a[SMALL])
        nxt.append(b[SMALL])
    return np.stack(prev), np.stack(nxt)


CHILD = """
import json, sys, numpy as np
from tsn_prep.extraction import tvl1_triton as flow_triton
from tsn_prep.extraction.tvl1_torch import TorchTVL1
from tsn_prep.extraction.tvl1_params import TVL1Params
# 2 x 2 tiles per 64x48 pair (the last row of tiles half outside): fewer interpreted tiles than
# the default, still tile borders in both directions and masked-off pixels
flow_triton.TILE = (32, 32)
d = np.load(sys.argv[1])
solver = TorchTVL1(TVL1Params.from_dict(json.loads(sys.argv[2])), "cpu", compile=False, kernel="triton")
flow = solver.batch(d["prev"], d["nxt"])
iters = solver.last_iterations
k = int(sys.argv[3])
alone = solver.batch(d["prev"][k:k + 1], d["nxt"][k:k + 1])
np.savez(sys.argv[4], flow=flow, iters=iters, alone=alone, alone_iters=solver.last_iterations)
"""


@pytest.mark.skipif(not HAVE_TRITON, reason="Triton is not installed")
def test_triton_kernels_in_the_interpreter_match_the_torch_iteration(tmp_path):
    prev, nxt = small_pairs()
    eager = TorchTVL1(SMALL_PARAMS, "cpu", compile=False, kernel="torch", threads=1)
    ref = eager.batch(prev, nxt)
    ref_iters = eager.last_iterations
    # the pair that stops first: in the batch it is frozen while the others go on
    totals = ref_iters.sum(axis=(1, 2))
    k = int(np.argmin(totals))
    assert totals[k] < totals.max() == ref_iters[0].size * SMALL_PARAMS.outer_iterations * SMALL_PARAMS.inner_iterations
    np.savez(tmp_path / "in.npz", prev=prev, nxt=nxt)
    params = SMALL_PARAMS.as_dict()
    env = dict(os.environ, TRITON_INTERPRET="1")
    subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "in.npz"), json.dumps(params),
                    str(k), str(tmp_path / "out.npz")], check=True, env=env, timeout=240)
    out = np.load(tmp_path / "out.npz")
    # the same stopping decisions, pair by pair, level by level, warping by warping
    assert np.array_equal(out["iters"], ref_iters)
    # the same arithmetic: only sqrt(x^2 + y^2) for torch.hypot rounds differently
    assert np.abs(out["flow"] - ref).max() < 2e-3
    assert np.linalg.norm(out["flow"] - ref, axis=-1).mean() < 1e-4
    # a stopped pair is not touched: in the batch it is what it is alone, bit for bit
    assert np.array_equal(out["alone_iters"][0], ref_iters[k])
    assert np.array_equal(out["alone"][0], out["flow"][k])


def test_kernel_choice_is_checked():
    with pytest.raises(ValueError, match="kernel must be"):
        TorchTVL1(kernel="cuda")
    if not flow_triton.available(torch.device("cpu")):
        with pytest.raises(ValueError, match="needs Triton and a CUDA device"):
            TorchTVL1(device="cpu", kernel="triton")
    assert TorchTVL1(device="cpu").kernel == "torch"  # auto: the torch iteration on the CPU


@pytest.mark.skipif(not (CUDA and HAVE_TRITON), reason="needs CUDA and Triton")
def test_triton_on_cuda_matches_the_torch_iteration_with_and_without_graphs():
    prev, nxt = small_pairs()
    dev = torch.device("cuda:0")
    ref_solver = TorchTVL1(TVL1Params(), dev, compile=False, kernel="torch")
    ref = ref_solver.batch(prev, nxt)
    ref_iters = ref_solver.last_iterations
    graphs = TorchTVL1(TVL1Params(), dev, kernel="triton")
    assert graphs.kernel == TorchTVL1(TVL1Params(), dev).kernel == "triton"
    a = graphs.batch(prev, nxt)
    a_iters = graphs.last_iterations
    a2 = graphs.batch(prev, nxt)  # replays the graphs captured by the first call
    assert all(lv.capture_error is None for lv in graphs.levels.values())
    assert all(lv.graph is not None for lv in graphs.levels.values())
    print("graph parts:", sorted({lv.graph_part for lv in graphs.levels.values()}))
    launched = TorchTVL1(TVL1Params(), dev, kernel="triton", graphs=False)
    b = launched.batch(prev, nxt)
    assert np.array_equal(a, a2) and np.array_equal(a, b)
    assert np.array_equal(a_iters, launched.last_iterations)
    # against the torch iteration on the same GPU: float rounding only (a stopping test that
    # flips by one iteration moves a pair's flow a little)
    assert np.linalg.norm(a - ref, axis=-1).mean() < 0.01
    assert np.abs(a_iters.astype(int) - ref_iters).sum() <= 0.02 * ref_iters.sum()
