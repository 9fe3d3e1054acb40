"""The tile kernels (tsn_prep/extraction/tvl1_tiles.py: K iterations per launch, the median and the warp in
Triton) against the torch iteration, in Triton's CPU interpreter (in a child process, since
``TRITON_INTERPRET`` is read when the kernels are defined); skipped where Triton is not
installed. They have never run on a GPU: tools/gpu_check.py measures them when one is lent.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from tsn_prep.extraction import tvl1_tiles as flow_tiles, tvl1_tiles_jit, tvl1_triton as flow_triton
from tsn_prep.extraction.tvl1_ops import _MED25_LIVE
from tsn_prep.extraction.tvl1_torch import TorchTVL1
from tsn_prep.extraction.tvl1_params import TVL1Params

from .test_flow_triton import small_pairs

HAVE_TRITON = flow_triton.triton is not None

# One level, few iterations (the interpreter's cost is per operation and tile). With inner 5 and
# K = 3 an outer iteration is a block of 3 and a block of 2; the two pairs then run [10, 10] and
# [7, 5] iterations in the two warpings (checked below): one pair never stops, one stops inside a
# block (7: replayed from the checkpoint) and on a block's end (5: no replay).
PARAMS = TVL1Params(scales=1, warps=2, outer_iterations=2, inner_iterations=5, epsilon=0.1)
PAIRS = [0, 2]  # of small_pairs()

CHILD = """
import json, sys, numpy as np, torch
torch.set_num_threads(1)
from tsn_prep.extraction import tvl1_tiles as flow_tiles, tvl1_triton as flow_triton
from tsn_prep.extraction.tvl1_ops import centered_gradient, warp_constants_gather
from tsn_prep.extraction.tvl1_torch import TorchTVL1
from tsn_prep.extraction.tvl1_params import TVL1Params
# a 32 x 64 block leaves a 26 x 58 core at K = 3: 2 x 2 tiles per 64 x 48 pair, tile borders in
# both directions, cores and halos past the image's edge
flow_tiles.BLOCK = (32, 64)
flow_triton.TILE = (32, 64)
d = np.load(sys.argv[1])
params = TVL1Params.from_dict(json.loads(sys.argv[2]))
out = {}
# the warp kernel alone, on a random flow of a few pixels
i0 = torch.tensor(d["prev"], dtype=torch.float32)
i1 = torch.tensor(d["nxt"], dtype=torch.float32)
b, h, w = i0.shape
g = torch.Generator().manual_seed(0)
u = torch.randn(2, b, h, w, generator=g) * 4
gx, gy = centered_gradient(i1)
stack = torch.stack([i1, gx, gy], 1).contiguous()
state = torch.zeros(6, b, h, w)
state[:2] = u
consts = torch.zeros(3, b, h, w)
tr, tw = flow_triton.TILE
ncb = -(-w // tw)
ni = -(-h // tr) * ncb
flow_tiles.warp_kernel[(b * ni,)](stack, i0, state, consts, b, h, w, ni, ncb, TR=tr, TW=tw,
                                   enable_fp_fusion=False)
ref = warp_constants_gather(stack, i0, u[0], u[1], 0.045)
out["warp"] = np.stack([consts[k].numpy() for k in range(3)])
out["warp_ref"] = np.stack([ref[k].numpy() for k in range(3)])
solver = TorchTVL1(params, "cpu", compile=False, kernel="tiles", tile_iterations=3)
out["flow"] = solver.batch(d["prev"], d["nxt"])
out["iters"] = solver.last_iterations
k = int(sys.argv[3])
alone = TorchTVL1(params, "cpu", compile=False, kernel="tiles", tile_iterations=2)
out["alone"] = alone.batch(d["prev"][k:k + 1], d["nxt"][k:k + 1])
out["alone_iters"] = alone.last_iterations
np.savez(sys.argv[4], **out)
"""


@pytest.mark.skipif(not HAVE_TRITON, reason="Triton is not installed")
def test_tile_kernels_in_the_interpreter_equal_the_torch_iteration(tmp_path):
    prev, nxt = (a[PAIRS] for a in small_pairs())
    ref_solver = TorchTVL1(PARAMS, "cpu", compile=False, kernel="torch", remap="gather", threads=1)
    ref = ref_solver.batch(prev, nxt)
    ref_iters = ref_solver.last_iterations  # (B, 1 level, 2 warps)
    per_warp = ref_iters[:, 0, :]
    inner, k = PARAMS.inner_iterations, 3
    full = PARAMS.outer_iterations * inner
    assert (per_warp == full).any() and (per_warp < full).any()
    pos = per_warp % inner
    blocks_end = (pos == 0) | (pos == k)
    assert ((per_warp < full) & blocks_end).any()    # a stop on a block's last iteration
    assert ((per_warp < full) & ~blocks_end).any()   # a stop inside a block: a replay
    # the pair that is replayed most is solved alone, with two iterations per launch
    alone = int(np.argmax(((per_warp < full) & ~blocks_end).sum(axis=1)))
    np.savez(tmp_path / "in.npz", prev=prev, nxt=nxt)
    env = dict(os.environ, TRITON_INTERPRET="1")
    subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "in.npz"),
                    json.dumps(PARAMS.as_dict()), str(alone), str(tmp_path / "out.npz")],
                   check=True, env=env, timeout=240)
    out = np.load(tmp_path / "out.npz")
    # the warp kernel is the written-out remap, operation for operation
    assert np.array_equal(out["warp"], out["warp_ref"])
    # OpenCV's stopping decisions, pair by pair and warping by warping
    assert np.array_equal(out["iters"], ref_iters)
    # the torch iteration's arithmetic: only sqrt(x^2 + y^2) for torch.hypot rounds differently
    assert np.abs(out["flow"] - ref).max() < 2e-3
    assert np.linalg.norm(out["flow"] - ref, axis=-1).mean() < 1e-4
    # halo recompute does each pixel's arithmetic unchanged: one pair alone with two iterations
    # per launch (other tiles and blocks, other replays, no neighbours) gives the same bits
    assert np.array_equal(out["alone_iters"][0], ref_iters[alone])
    assert np.array_equal(out["alone"][0], out["flow"][alone])


def test_the_written_out_median_network_is_flow_torchs():
    """``_median5`` spells out ``_MED25_LIVE``: the same compare-exchanges, in order, with the
    same outputs left out (the network's text is the only copy Triton can compile)."""
    if not HAVE_TRITON:
        pytest.skip("Triton is not installed")
    src = inspect.getsource(tvl1_tiles_jit._median5.fn)
    body = src[src.index("# -- network begin"):src.index("# -- network end")]
    got = []
    for line in body.splitlines()[1:]:
        line = line.strip()
        if not line:
            continue
        both = re.fullmatch(r"p(\d+), p(\d+) = tl\.minimum\(p(\d+), p(\d+)\), "
                            r"tl\.maximum\(p(\d+), p(\d+)\)", line)
        one = re.fullmatch(r"p(\d+) = tl\.(minimum|maximum)\(p(\d+), p(\d+)\)", line)
        if both:
            a, b, *args = map(int, both.groups())
            assert args == [a, b, a, b], line
            got.append((a, b, True, True))
        elif one:
            out, op, a, b = int(one[1]), one[2], int(one[3]), int(one[4])
            assert out == (a if op == "minimum" else b), line
            got.append((a, b, op == "minimum", op == "maximum"))
        else:
            raise AssertionError(f"unexpected line in the network: {line!r}")
    assert got == [c for c in _MED25_LIVE if c[2] or c[3]]
    assert "return p12" in src


def test_outer_iterations_per_graph_divide_the_outer_loop():
    assert flow_tiles.outer_per_replay(10) == 5       # two replays (host wake-ups) per warping
    assert flow_tiles.outer_per_replay(10, 3) == 2    # the divisor nearest what was asked
    assert flow_tiles.outer_per_replay(10, 10) == 10
    assert flow_tiles.outer_per_replay(7) == 1
    assert flow_tiles.outer_per_replay(1) == 1
    for n in range(1, 31):
        for want in (None, 1, 2, 4, 8):
            assert n % flow_tiles.outer_per_replay(n, want) == 0


def test_tile_shapes_and_parameters_are_checked(monkeypatch):
    flow_tiles.check_shape((32, 64), 15)
    with pytest.raises(ValueError, match="leave no core"):
        flow_tiles.check_shape((32, 64), 16)
    with pytest.raises(ValueError, match="powers of two"):
        flow_tiles.check_shape((24, 64), 2)
    with pytest.raises(ValueError, match="5x5 median only"):
        TorchTVL1(TVL1Params(median_filtering=3), kernel="tiles")
    if not flow_triton.available(torch.device("cpu")):
        with pytest.raises(ValueError, match="needs Triton and a CUDA device"):
            TorchTVL1(kernel="tiles")
    monkeypatch.setenv("TSN_TVL1_KERNEL", "cuda")
    with pytest.raises(ValueError, match="TSN_TVL1_KERNEL must be one of"):
        TorchTVL1()
    monkeypatch.setenv("TSN_TVL1_KERNEL", "torch")
    assert TorchTVL1().kernel == "torch"
