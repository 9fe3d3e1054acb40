"""torch.compile for the TV-L1 functions, with a fallback to running them eagerly
(``CompiledFn``), and what is compiled by default on each device type."""
from __future__ import annotations

import os
import warnings
from typing import Optional

import torch

_COMPILED: dict = {}  # (function, device type, mode, dynamic) -> the torch.compile'd callable
_WARNED: set = set()


def _compiled(fn, device_type: str, mode: Optional[str], dynamic: Optional[bool]):
    key = (fn.__name__, device_type, mode, dynamic)
    if key not in _COMPILED:
        import torch._dynamo.config as dcfg

        # every pyramid level (and batch size) is a new shape: 5 levels x a few batch sizes must
        # not hit dynamo's default limit of 8 recompiles and silently run eagerly
        for name in ("cache_size_limit", "recompile_limit"):
            if hasattr(dcfg, name):
                setattr(dcfg, name, max(getattr(dcfg, name), 256))
        for name in ("accumulated_cache_size_limit", "accumulated_recompile_limit"):
            if hasattr(dcfg, name):
                setattr(dcfg, name, max(getattr(dcfg, name), 2048))
        _COMPILED[key] = torch.compile(fn, mode=mode, dynamic=dynamic, fullgraph=True)
    return _COMPILED[key]


class CompiledFn:
    """A solver function compiled with torch.compile where that works, else run eagerly: the
    first failure (no C++ compiler, no Triton, an unsupported op...) is caught once, warned about
    once per process, and from then on the eager function runs (both are pure functions of their
    arguments, so nothing is lost). ``eager`` may be a faster eager formulation of ``fn``."""

    def __init__(self, fn, device: torch.device, compile: bool, mode: Optional[str],
                 dynamic: Optional[bool], eager=None):
        self.eager = eager or fn
        self.key = (fn.__name__, device.type, mode, dynamic)
        self.compiled = _compiled(fn, device.type, mode, dynamic) if compile else None
        if compile and _COMPILED.get(self.key, 0) is None:  # failed before in this process
            self.compiled = None

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as exc:  # noqa: BLE001  (any compiler failure: fall back)
                self.compiled = None
                _COMPILED[self.key] = None
                if self.key not in _WARNED:
                    _WARNED.add(self.key)
                    warnings.warn(f"torch.compile of the TV-L1 function {self.key[0]} failed on "
                                  f"{self.key[1]} ({type(exc).__name__}: {str(exc)[:300]}); "
                                  f"running it eagerly", RuntimeWarning, stacklevel=2)
        return self.eager(*args)


# What is compiled by default, per device type (measured, see docs/performance.md): on the CPU
# inductor makes the iteration ~3.5x faster than eager, but its code for the 25-input median
# network was 3x slower than the eager ops (and for the written-out gather remap 3.5x slower; the
# remap is one grid_sample call now, 4 % of the time), so those stay eager there.
COMPILE_PARTS = {"cpu": ("step",), "cuda": ("step", "median", "warp")}


def compile_default(device: torch.device) -> bool:
    """Compile by default where torch.compile can work: CUDA, or a CPU with a C++ compiler.
    The environment variable TSN_TORCH_COMPILE=0 (or 1) overrides this."""
    env = os.environ.get("TSN_TORCH_COMPILE", "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    if device.type == "cuda":
        return True
    if device.type == "cpu":
        import shutil

        return any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++"))
    return False

