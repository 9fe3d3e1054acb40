"""What the compiler says about the TV-L1 tile kernels (tsn_prep/extraction/tvl1_tiles.py) for a GPU this
machine does not have: each kernel compiled ahead of time for sm_90 (H100/H200) with Triton's
bundled ptxas, and its registers per thread, spill stack and shared memory read back from the
cubin with cuobjdump. No GPU is needed and nothing is timed; the figures choose launch shapes
without spills until a GPU measures them (tools/gpu_check.sh).

    python -m tools.bench.kernel_resources [--write-docs]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Optional

from tools.bench.common import add_output_options, finish, now, stamp

TARGET = ("cuda", 90, 32)
# (EH, EW, K, num_warps) of the block kernel; the first is flow_tiles' default
BLOCKS = [(32, 64, 4, 16), (32, 64, 4, 8), (32, 64, 2, 16), (16, 64, 2, 8), (16, 64, 4, 8),
          (64, 64, 4, 16)]
ELEMENTWISE = [(8, 64, 8), (8, 64, 4)]  # (TR, TW, num_warps) of the median and warp kernels

BLOCK_SIG = {"S": "*fp32", "C": "*fp32", "M": "*fp32", "par": "*i32", "todo": "*i32", "nblock": "i32",
             "partial": "*fp64", "scratch": "*fp32", "B": "i32", "H": "i32", "W": "i32", "NT": "i32",
             "NCB": "i32", "G": "i32", "l_t": "fp32", "taut": "fp32", "theta": "fp32",
             "flt_eps": "fp32", "K": "constexpr", "EH": "constexpr", "EW": "constexpr",
             "MEDIAN": "constexpr", "EXACT": "constexpr"}
MEDIAN_SIG = {"S": "*fp32", "M": "*fp32", "par": "*i32", "active": "*i32", "B": "i32", "H": "i32",
              "W": "i32", "NI": "i32", "NCB": "i32", "TR": "constexpr", "TW": "constexpr"}
WARP_SIG = {"i1s": "*fp32", "i0": "*fp32", "S": "*fp32", "C": "*fp32", "B": "i32", "H": "i32",
            "W": "i32", "NI": "i32", "NCB": "i32", "TR": "constexpr", "TW": "constexpr"}


def resources(fn, signature: dict, constexprs: dict, options: dict) -> dict:
    """Compile ``fn`` for sm_90; registers, spill stack and shared memory of the cubin."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    t0 = time.perf_counter()
    kernel = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                            target=GPUTarget(*TARGET), options=options)
    seconds = time.perf_counter() - t0
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        text = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True,
                              check=True).stdout
    found = dict(re.findall(r"(REG|STACK|SHARED):(\d+)", text))
    regs = int(found["REG"])
    warps = options["num_warps"]
    return {"registers": regs, "stack_bytes": int(found["STACK"]), "shared_bytes": int(found["SHARED"]),
            "compile_s": seconds, "num_warps": warps,
            # an SM has 64k registers and holds at most 64 warps
            "warps_per_sm": min(64, 65536 // (regs * 32 * warps) * warps)}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_output_options(p)
    args = p.parse_args(argv)
    import triton

    from tsn_prep.extraction import tvl1_tiles_jit as flow_tiles

    started, t0 = now(), time.perf_counter()
    rows = []
    for eh, ew, k, warps in BLOCKS:
        for median in (False, True):
            r = resources(flow_tiles.block_kernel, BLOCK_SIG,
                          {"K": k, "EH": eh, "EW": ew, "MEDIAN": median, "EXACT": True},
                          {"num_warps": warps, "enable_fp_fusion": False})
            core = (eh - 2 * k) * (ew - 2 * k)
            rows.append({"kernel": "block", "shape": f"{eh}x{ew}", "k": k, "median": median,
                         "pixels_per_thread": eh * ew // (32 * warps),
                         # HBM bytes per pixel and iteration if only the tile's reads and writes
                         # reach memory: 9 planes read over the block, 6 written over the core
                         "bytes_per_pixel_iteration": (9 * eh * ew / core + 6) * 4 / k, **r})
    for name, fn, sig in (("median", flow_tiles.median_kernel, MEDIAN_SIG),
                          ("warp", flow_tiles.warp_kernel, WARP_SIG)):
        for tr, tw, warps in ELEMENTWISE:
            r = resources(fn, sig, {"TR": tr, "TW": tw}, {"num_warps": warps, "enable_fp_fusion": False})
            rows.append({"kernel": name, "shape": f"{tr}x{tw}", "k": None, "median": None,
                         "pixels_per_thread": tr * tw // (32 * warps),
                         "bytes_per_pixel_iteration": None, **r})
    defaults = {"block": f"{flow_tiles.BLOCK[0]}x{flow_tiles.BLOCK[1]}", "k": flow_tiles.ITERATIONS,
                "num_warps": flow_tiles.NUM_WARPS, "elementwise_warps": flow_tiles.ELEMENTWISE_WARPS}
    finish("kernel_resources", {"section": "kernel_resources", "template": "kernel_resources",
                                **stamp("tools.bench.kernel_resources", sys.argv[1:] if argv is None else argv,
                                        started, t0),
                                "triton": triton.__version__, "target": "sm_%d" % TARGET[1],
                                "defaults": defaults, "rows": rows}, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
