"""The child side of a ``RingSolver``: builds the solver, maps the slots the parent sends, and
answers each ``Solve`` or ``Probe`` with a ``Done`` (``ring_messages``)."""
from __future__ import annotations

import mmap
import os
import sys
from multiprocessing.reduction import recv_handle
from typing import Callable, Optional

import numpy as np

from ..child import become_child
from .batch_size import probe_batch
from .ring_messages import Bye, Done, Hello, Probe, Segment, SolverTraits, views
from .solver import BatchSolver

TORCH_SOLVER_MODULE = f"{__package__}.tvl1_torch"  # imported by a factory that made a TorchTVL1


class MappedSlot:
    """A slot's memfd mapped in the child (page-locked for ``gpu`` when that is a CUDA device)."""

    def __init__(self, fd: int, size: int, gpu: Optional[int]):
        self.mm = mmap.mmap(fd, size)
        os.close(fd)
        self.size = size
        self.pinned = False
        self.ptr = None
        if gpu is not None:
            try:
                import torch

                self.ptr = np.frombuffer(self.mm, np.uint8).ctypes.data
                rc = torch.cuda.cudart().cudaHostRegister(self.ptr, size, 0)
                self.pinned = int(rc) == 0
            except Exception:  # noqa: BLE001 - pageable copies are slower, not wrong
                self.pinned = False

    def close(self) -> None:
        if self.pinned:
            import torch

            torch.cuda.cudart().cudaHostUnregister(self.ptr)
        try:
            self.mm.close()
        except BufferError:  # a view still alive: the mapping goes with it
            pass


def solve_into(solver: BatchSolver, prev: np.ndarray, cur: np.ndarray, bound: Optional[float], buf,
               out: int, room: int) -> str:
    """Solve the pairs (prev[i], cur[i]) and write their flows into ``buf`` at ``out``; returns
    the flows' dtype ("uint8": quantised, planar; "float32")."""
    n, h, w = prev.shape
    torch_solver = sys.modules.get(TORCH_SOLVER_MODULE)
    if torch_solver is not None and isinstance(solver, torch_solver.TorchTVL1):
        import torch

        from tsn_core.quantize import quantize_tensor

        # TorchTVL1.batch, step for step, with the copy to the host going into the slot
        i0 = torch.from_numpy(prev).to(solver.device).to(torch.float32)
        i1 = torch.from_numpy(cur).to(solver.device).to(torch.float32)
        u1, u2 = solver.flow(i0, i1)
        if bound is not None:
            flow, dtype = quantize_tensor(torch.stack([u1, u2], dim=1), bound), "uint8"
        else:
            flow, dtype = torch.stack([u1, u2], dim=-1), "float32"
        torch.from_numpy(views(buf, n, h, w, out, dtype)[2]).copy_(flow)
        return dtype
    flows = solver.batch(prev, cur, bound)
    dtype = "uint8" if np.asarray(flows[0]).dtype == np.uint8 else "float32"
    if out + n * h * w * 2 * np.dtype(dtype).itemsize > room:
        raise ValueError(f"the solver returned {dtype} flows; the slot was sized for quantised ones")
    dst = views(buf, n, h, w, out, dtype)[2]
    for i in range(n):
        f = np.asarray(flows[i])
        np.copyto(dst[i], f.transpose(2, 0, 1) if dtype == "uint8" else f, casting="same_kind")
    return dtype


def serve(requests, replies, factory: Callable[[], BatchSolver], gpu: Optional[int], parent: int,
          threads: int) -> None:
    """The child's life: make the solver, say ``Hello``, answer requests until None or EOF."""
    become_child(parent)
    if gpu is not None:
        import torch

        torch.cuda.set_device(gpu)
    try:
        solver = factory()
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        replies.send(Hello(SolverTraits(bool(solver.batches), bool(solver.compiled), bool(solver.quantizes))))
    except Exception as exc:  # noqa: BLE001 - the run says why its solver could not start
        _send(replies, lambda e: Hello(None, e), exc)
        return
    slots: dict[int, MappedSlot] = {}
    batches = 0
    while True:
        try:
            msg = requests.recv()
        except (EOFError, OSError):  # the run closed its end, or died
            return
        if msg is None:
            solver.close()
            replies.send(Bye(batches))
            return
        if isinstance(msg, Segment):
            fd = recv_handle(requests)
            if msg.slot in slots:
                slots.pop(msg.slot).close()
            slots[msg.slot] = MappedSlot(fd, msg.size, gpu)
            continue
        try:
            if isinstance(msg, Probe):
                value = probe_batch(solver, msg.size, "cpu" if gpu is None else f"cuda:{gpu}")
            else:
                slot = slots[msg.slot]
                prev, cur, _ = views(slot.mm, msg.n, msg.h, msg.w, msg.out, np.uint8)
                value = solve_into(solver, prev, cur, msg.bound, slot.mm, msg.out, slot.size)
                batches += 1
                del prev, cur
            replies.send(Done(msg.seq, value, None, batches))
        except Exception as exc:  # noqa: BLE001 - the run decides what a failed batch means
            _send(replies, lambda e, seq=msg.seq: Done(seq, None, e, batches), exc)


def _send(conn, reply: Callable[[BaseException], object], exc: BaseException) -> None:
    """``reply(exc)``, or where ``exc`` does not pickle, ``reply`` of its words."""
    try:
        conn.send(reply(exc))
    except Exception:  # noqa: BLE001 - an exception that does not pickle: send its words
        conn.send(reply(RuntimeError(f"{type(exc).__name__}: {exc}")))
