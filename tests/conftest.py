"""Shared fixtures: the real clips in ../shared/data, helpers to run tsn-prep and tsn-train (in
this process, or as real processes to start, wait for and kill), and to run Python code in a fresh
interpreter."""
from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from tsn_prep.cli import main

# A shell starts a background job (`cmd &`, nohup, some CI runners) with SIGINT ignored, and an
# ignored signal stays ignored across exec: every run these tests start would then ignore the
# Ctrl-C the interruption tests send. A handler is reset to the default at exec instead.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Python's multiprocessing resource tracker (a process of its own, sharing the command's stderr)
# warns at exit about a named semaphore or shared-memory block that was leaked or unlinked twice:
# a lifecycle bug of ours (issue 38). In every process the tests start, such a warning is an error
# (a traceback on stderr), and the helpers below that run the CLI fail on its name.
os.environ["PYTHONWARNINGS"] = "error:resource_tracker:UserWarning"
TRACKER = "resource_tracker"

REPO = Path(__file__).resolve().parents[1]
# the shared test data beside the checkout; TSN_TEST_DATA points elsewhere (e.g. on a GPU machine)
DATA = Path(os.environ.get("TSN_TEST_DATA") or REPO.parent / "shared" / "data")
VIDEOS = DATA / "videos"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    assert DATA.is_dir(), f"the shared test data is missing: {DATA}"
    return DATA


def link_videos(dest: Path, names: dict[str, str]) -> Path:
    """Make ``dest`` a video folder: {relative name: real clip file name} as symlinks."""
    for rel, clip in names.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(VIDEOS / clip)
    return dest


def invoke(command, args: tuple, expect: int | None):
    """Run a click command in-process; assert the exit code unless ``expect`` is None."""
    result = CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)
    if expect is not None:
        assert result.exit_code == expect, f"exit {result.exit_code}\n{result.output}"
    return result


def cli(*args: str, expect: int | None = 0):
    """Run tsn-prep in-process."""
    return invoke(main, args, expect)


def unprivileged() -> list[str]:
    """A command prefix under which permission bits apply. Root reads and writes anywhere, so as
    root the command runs without the capabilities that let it (setpriv, util-linux); the test
    skips where there is no setpriv."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: permission bits cannot be made to apply")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


PREP, TRAIN = "tsn_prep.cli", "tsn_train.cli"


def cli_argv(*args, module: str = PREP, prefix: Sequence[str] = ()) -> list[str]:
    """The command line of tsn-prep (or ``module``, e.g. TRAIN) with ``args``, after ``prefix``
    (e.g. ``unprivileged()``)."""
    return [*prefix, sys.executable, "-m", module, *map(str, args)]


def cli_subprocess(*args, module: str = PREP, prefix: Sequence[str] = (),
                   **kwargs) -> subprocess.CompletedProcess:
    """Run tsn-prep (or ``module``) as a real process to its end (for exit codes, stderr and
    signals); its output as text. Fails on a resource tracker's warning (see TRACKER)."""
    r = subprocess.run(cli_argv(*args, module=module, prefix=prefix), capture_output=True,
                       text=True, **kwargs)
    assert TRACKER not in r.stderr, r.stderr
    return r


def start_cli(*args, module: str = PREP, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
              **kwargs) -> subprocess.Popen:
    """Start tsn-prep (or ``module``) as a real process and return at once (to interrupt it, read
    its output as it comes...); stdout and stderr are discarded unless given."""
    return subprocess.Popen(cli_argv(*args, module=module), stdout=stdout, stderr=stderr, **kwargs)


@contextmanager
def killed_after(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """``proc`` inside the block; SIGKILLed (if still running) and reaped after it, whatever
    happened: no test leaves a run behind."""
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def wait_until(done: Callable[[], bool], what: Callable[[], str] | str,
               proc: subprocess.Popen | None = None, poll: float = 0.01) -> None:
    """Poll ``done()`` until true; fail, saying ``what`` (a callable: what it returns then), if
    ``proc`` ends first or GUARD seconds pass (GUARD only bounds a broken run)."""
    deadline = time.monotonic() + GUARD
    while not done():
        ok = (proc is None or proc.poll() is None) and time.monotonic() < deadline
        assert ok, what() if callable(what) else what
        time.sleep(poll)


def run_python(code: str, *args) -> str:
    """What ``python -c code args`` prints: a fresh interpreter, e.g. to see which modules an import
    pulls in. A non-zero exit fails."""
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, check=True).stdout


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """PyTorch's intra-op threads set to ``n`` inside the block, restored after it."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def decode(data: bytes, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    assert image is not None
    return image


def read_frames(path: Path, n: int, size: tuple[int, int] | None = None, first: int = 0,
                grey: bool = False) -> list[np.ndarray]:
    """Frames ``first`` .. ``first + n - 1`` (0-based) of a video as OpenCV decodes them, BGR or
    ``grey``, resized to ``size`` (width, height) if given; fewer if the video ends before."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"OpenCV cannot open {path}"
    frames = []
    index = 0
    while len(frames) < n:
        ok, frame = cap.read()
        if not ok:
            break
        if index >= first:
            frame = cv2.resize(frame, size) if size else frame
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if grey else frame)
        index += 1
    cap.release()
    return frames


def count_frames(path: Path) -> int:
    """How many frames OpenCV reads from the video file ``path``."""
    cap = cv2.VideoCapture(str(path))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    return frames


# --- tsn-train: a small real store shared by the training tests --------------------------------

CLIPS = ["armwrestling_kinetics", "poolcleaning", "eyemakeup_ucf101like", "tree", "carphone"]


@contextmanager
def built_once(tmp_path_factory, worker_id: str, name: str) -> Iterator[tuple[Path, bool]]:
    """A folder for session data that every xdist worker of this run shares: ``(folder, done)``
    under a file lock; a builder writes into ``folder`` when ``done`` is False and the folder is
    marked done when the block ends without an error. Without xdist, a folder of this session."""
    if worker_id == "master":
        yield tmp_path_factory.mktemp(name), False
        return
    import fcntl

    root = tmp_path_factory.getbasetemp().parent / name  # the run's folder, shared by its workers
    root.mkdir(exist_ok=True)
    with open(root.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the others wait for the first to build
        done = (root / ".built").exists()
        if not done:
            shutil.rmtree(root)
            root.mkdir()
        yield root, done
        (root / ".built").touch()


@pytest.fixture(scope="session")
def train_store(tmp_path_factory, worker_id) -> Path:
    """rgb (40 frames), flow and warped flow (15 fields) of the five real clips at 112x84, one
    class each, built once per run (read only: every worker shares it).

    Also writes ``train.txt`` (``clip label``, label = position in CLIPS) beside the store.
    """
    with built_once(tmp_path_factory, worker_id, "train_store") as (root, done):
        store = root / "store"
        if not done:
            videos = link_videos(root / "videos", {f"{c}{Path(p).suffix}": p for c, p in
                                                   ((c, next(VIDEOS.glob(c + ".*")).name) for c in CLIPS)})
            cli("extract-frames", videos, store, "--size", "112x84", "--max-frames", "40")
            cli("extract-flow", videos, store, "--size", "112x84", "--max-frames", "16", "--workers", "2",
                "--modality", "flow", "--modality", "warped_flow")
            (root / "train.txt").write_text("".join(f"{c} {i}\n" for i, c in enumerate(CLIPS)))
    return store


def fit_killed_at(epoch: int, step: int) -> str:
    """A script for ``python -c SCRIPT ARGS`` that runs ``tsn-train ARGS`` and SIGKILLs itself
    right after logging step ``step`` of epoch ``epoch``: a kill -9 in the middle of an epoch, at
    a moment the test decides rather than a race with a poll loop."""
    return f"""
import os, signal
from tsn_train import fit
from tsn_train.cli import main
step = fit.RunLog.step
def step_then_die(self, record):
    step(self, record)
    if (record["epoch"], record["step"]) == ({epoch}, {step}):
        os.kill(os.getpid(), signal.SIGKILL)
fit.RunLog.step = step_then_die
main()
"""


def train_cli(*args: str, expect: int | None = 0):
    """Run tsn-train in-process."""
    from tsn_train.cli import main as train_main
    return invoke(train_main, args, expect)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module's tests (``pytestmark = pytest.mark.usefixtures(...)``): on
    a busy 2-core machine two threads spin against each other (a tiny Inception-v3 fit and test
    took 23 s with two, 4 s with one)."""
    with torch_threads(1):
        yield


# --- interrupting a real run at a fixed point: a named pipe among the videos --------------------

GUARD = 120  # s; only bounds a broken run, no outcome depends on it


def make_pipe(path: Path) -> None:
    """Turn the video at ``path`` into a named pipe that blocks whoever opens it for reading."""
    path.unlink()
    os.mkfifo(path)


def open_pipe_writer(fifo: Path, proc: subprocess.Popen) -> int:
    """Wait until ``proc`` (or its worker) opens the pipe; return our write end, which keeps the
    reader's reads waiting. Opening a write end without blocking succeeds only while a reader has
    the pipe open, so no timing is involved."""
    deadline = time.monotonic() + GUARD
    while True:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            assert exc.errno == errno.ENXIO, exc  # no reader yet
        assert proc.poll() is None, f"the run ended (exit {proc.returncode}) without opening {fifo}"
        assert time.monotonic() < deadline, f"{fifo} not opened within {GUARD} s"
        time.sleep(0.01)


def committed_ids(out: Path) -> list[str]:
    """Sorted ids of the videos with a complete entry in the store ``out`` (none yet: [])."""
    from tsn_core.store import Store
    try:
        return sorted(vid for vid, _ in Store(out).index)
    except Exception:  # not created yet
        return []
