"""What Ctrl-C (SIGINT) and SIGTERM do in every command of tsn-prep and tsn-train.

One contract: the signal raises :class:`Interrupted` in the main thread; the command stops its
helpers in order (threads running native code are joined, helper processes ended), keeps what is
complete, prints one line saying what is safe and how to continue, and exits 130 (SIGINT) or 143
(SIGTERM, which SLURM sends before it kills or requeues a job). It never aborts and never dumps
core. A second signal while stopping ends the process at once with the same line: everything a
command commits is committed atomically, so stopping hard loses only the work in flight.

Why threads are joined: a daemon thread still inside C++ code (an OpenCV solve, a decoder) when
the interpreter finalises is made to unwind by ``pthread_exit`` as it reaches for the GIL; the
unwinding meets C++ code that cannot let it pass and the C++ runtime calls ``std::terminate``:
"FATAL: exception not rethrown", SIGABRT, exit 134. So nothing of ours may be left running at
exit, and :func:`install` registers a last check at exit that waits for our threads (named
``tsn-...``) and, should one still be inside native code after :data:`SETTLE_S`, leaves with
``os._exit`` rather than finalise around it.

Helper processes ignore both signals (``tsn_prep.child``): the command ends them itself, in order.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time
from typing import Iterator, Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)
THREAD_PREFIX = "tsn-"   # every thread of ours is named so, and waited for at exit
SETTLE_S = 10.0          # how long the check at exit waits for a thread of ours to end
DEFAULT_SAFE = "nothing is left half-written; run the same command again"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM. A KeyboardInterrupt, so ``except Exception`` never swallows it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return exit_code(self.signum)

    def __str__(self) -> str:
        return describe(self.signum)


def exit_code(signum: int) -> int:
    """130 for SIGINT, 143 for SIGTERM: 128 + the signal's number, as shells report it."""
    return 128 + int(signum)


def describe(signum: int) -> str:
    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


_requested: Optional[int] = None   # the first signal received, until ``reset``
_deferring = 0                     # depth of ``deferred`` blocks
_safe = DEFAULT_SAFE               # what the interrupt line says is safe
_installed = False
_exit_code: Optional[int] = None   # set when a command ends by a signal: the check at exit uses it


def requested() -> Optional[int]:
    """The signal number received, or None: a command that catches a helper's failure asks this
    first (a SIGTERM from SLURM reaches every process of a job, helpers included)."""
    return _requested


def safe(line: str) -> None:
    """Set what the interrupt line says is safe and how to continue, e.g. "finished videos are
    safe in out/; re-run the same command to do the rest"."""
    global _safe
    _safe = line


def line(signum: int) -> str:
    """The one line a command prints when ``signum`` stopped it."""
    return f"interrupted ({describe(signum)}): {_safe}"


def _handler(signum, frame) -> None:
    global _requested
    if _requested is not None:  # a second signal while stopping: stop now, nothing in flight kept
        _write(line(signum) + " (stopped at once)")
        _hard_exit(exit_code(_requested))
    _requested = signum
    if not _deferring:
        raise Interrupted(signum)


def _write(text: str) -> None:
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - e.g. a reentrant call: the line matters more
        pass
    with contextlib.suppress(OSError):
        # on a terminal, a progress bar may hold the line: start a new one
        start = "\n" if os.isatty(2) else ""
        os.write(2, (start + text + "\n").encode("utf-8", "backslashreplace"))


def _hard_exit(code: int) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(code)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Install the handlers for the duration of a command (main thread only; elsewhere a no-op),
    then restore the previous ones: commands run in-process by tests leave no trace."""
    global _installed, _requested, _safe
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _handler)
    if not _installed:
        atexit.register(_settle_at_exit)
        _installed = True
    _requested, _safe = None, DEFAULT_SAFE
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A block a signal must not cut in two (ending helpers, a commit): the signal is noted and
    raised as Interrupted when the block ends."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _requested is not None and sys.exc_info()[0] is None:
            raise Interrupted(_requested)


def note_exit(code) -> None:
    """Remember the exit status a command is leaving with (``SystemExit.code``), for the check at
    exit."""
    global _exit_code
    _exit_code = code if isinstance(code, int) else (0 if code is None else 1)


def finish(signum: int) -> int:
    """Say what is safe (one line on stderr) and give the exit code of a command ``signum``
    stopped, once its helpers have ended (the caller's ``finally`` blocks have run)."""
    global _exit_code
    _exit_code = exit_code(signum)
    _close_progress_bars()
    _write(line(signum))
    return _exit_code


def _close_progress_bars() -> None:
    """A progress bar cut short still holds its line: close it (tqdm then ends the line), so the
    interrupt's line stands on its own. tqdm keeps its live bars in ``tqdm._instances``."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        with contextlib.suppress(Exception):
            bar.close()


def ignore_in_helper() -> None:
    """What a helper process of ours calls first: ignore Ctrl-C and SIGTERM, which reach every
    process of a terminal's job or a SLURM step; the command that started the helper ends it, in
    order (SIGKILL if need be: the check at exit kills any still running)."""
    for s in SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def loader_worker(*_) -> None:
    """A DataLoader worker's ``worker_init_fn``: Ctrl-C is left to PyTorch (its workers end
    quietly on it); SIGTERM ends the worker at once with exit status 0, so that SLURM's SIGTERM,
    which reaches the command and its workers together, reads as the command's interrupt and not
    as a worker that crashed. (Ignoring it would hang the command's exit: multiprocessing ends
    daemonic children with SIGTERM and waits for them.)"""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))


def our_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t is not threading.current_thread() and t.name.startswith(THREAD_PREFIX) and t.is_alive()]


def settle(timeout: float = SETTLE_S) -> list[threading.Thread]:
    """Wait up to ``timeout`` s for our threads to end; those still running."""
    deadline = time.monotonic() + timeout
    for t in our_threads():
        t.join(max(0.0, deadline - time.monotonic()))
    return our_threads()


def _settle_at_exit() -> None:
    """The last check before the interpreter finalises: no thread of ours may still be running
    (see the module's docstring); one that is, after SETTLE_S, is left by ``os._exit``. A helper
    process of ours still alive (an error path that skipped its end) is killed: it ignores the
    SIGTERM multiprocessing's own exit handler would send it, then wait for it forever."""
    mp = sys.modules.get("multiprocessing")
    if mp is not None:
        for p in mp.active_children():
            if p.name.startswith(THREAD_PREFIX):
                p.kill()
                p.join(5)
    if settle():
        _hard_exit(_exit_code if _exit_code is not None else 1)
