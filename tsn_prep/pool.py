"""A few helper processes that run one function over many tasks, results in task order.

``multiprocessing.Pool`` is not used: its queues are named POSIX semaphores that the resource
tracker must see unlinked exactly once, and a pool torn down mid-work (Ctrl-C, a dead worker) can
leave one for the tracker to warn about at exit; its workers die by the SIGTERM it sends them. Here
each helper has a pipe of its own (no named object at all), ignores Ctrl-C and SIGTERM
(``tsn_prep.child``: the command ends it), dies with the command (PR_SET_PDEATHSIG), and one that
dies by itself (a crash, the OOM killer) fails its task with ``HelperDied`` naming how it ended.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from multiprocessing.connection import Connection, wait
from typing import Callable, Iterable, Iterator, Optional

from .child import become_child, tasks

END_S = 5.0  # how long ``close`` waits for a helper to end before SIGKILL


class HelperDied(RuntimeError):
    """A helper process ended while it had a task; ``exitcode`` says how (negative: a signal)."""

    def __init__(self, task, exitcode: Optional[int]):
        self.task, self.exitcode = task, exitcode
        super().__init__(f"a helper process died ({how_it_ended(exitcode)})")


def how_it_ended(exitcode: Optional[int]) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def _serve(conn: Connection, fn: Callable, parent: int) -> None:
    become_child(parent)
    for index, arg in tasks(conn):
        try:
            reply = (index, True, fn(arg))
        except Exception as exc:  # noqa: BLE001 - the command decides what a failed task means
            reply = (index, False, exc)
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
        except Exception as exc:  # noqa: BLE001 - a result that does not pickle: its words
            conn.send((index, False, RuntimeError(f"{type(exc).__name__}: {exc}")))


class Pool:
    """``processes`` spawned helpers running ``fn``; use as a context manager."""

    def __init__(self, fn: Callable, processes: int):
        self.fn = fn
        self.ctx = multiprocessing.get_context("spawn")  # never a fork of a process holding LMDB or CUDA
        self.helpers: dict[Connection, multiprocessing.process.BaseProcess] = {}
        for _ in range(max(1, processes)):
            self._start()

    def _start(self) -> Connection:
        mine, theirs = self.ctx.Pipe()
        proc = self.ctx.Process(target=_serve, args=(theirs, self.fn, os.getpid()), daemon=True,
                                name="tsn-helper")
        proc.start()
        theirs.close()
        self.helpers[mine] = proc
        return mine

    def imap(self, tasks: Iterable, errors: bool = False) -> Iterator:
        """``fn(task)`` of every task, in task order. A task's exception, or its helper's death as
        ``HelperDied`` (a new helper takes the tasks after it), is raised when its turn comes, or
        with ``errors`` given in its place."""
        tasks = list(tasks)
        todo = deque(enumerate(tasks))
        busy: dict[Connection, int] = {}
        done: dict[int, tuple[bool, object]] = {}
        for conn in list(self.helpers):
            self._give(conn, todo, busy)
        for i in range(len(tasks)):
            while i not in done:
                for conn in wait(list(busy)):
                    index = busy.pop(conn)
                    try:
                        _, ok, value = conn.recv()
                    except (EOFError, OSError):
                        proc = self.helpers.pop(conn)
                        proc.join(timeout=END_S)
                        ok, value = False, HelperDied(tasks[index], proc.exitcode)
                        conn.close()
                        conn = self._start()
                    done[index] = (ok, value)
                    self._give(conn, todo, busy)
            ok, value = done.pop(i)
            if not ok and not errors:
                raise value
            yield value

    @staticmethod
    def _give(conn: Connection, todo: deque, busy: dict) -> None:
        if todo:
            index, arg = todo.popleft()
            conn.send((index, arg))
            busy[conn] = index

    def close(self) -> None:
        """End every helper: an idle one at once, a busy one after END_S (SIGKILL)."""
        for conn in self.helpers:
            try:
                conn.send(None)
            except OSError:
                pass
            conn.close()
        for proc in self.helpers.values():
            proc.join(timeout=END_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self.helpers = {}

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
