"""Progress bars of every command, one policy: on stderr, shown only when stderr is a terminal and
``--quiet`` is not given (a log file or a SLURM job gets the command's summary line alone), and
redrawn at least twice a second while work goes on, so a long video shows motion within seconds.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Optional

from tqdm import tqdm

REDRAW_S = 0.5  # at least this often while the counts move


def shown(quiet: bool = False) -> bool:
    """Whether progress is drawn: not ``quiet`` and stderr is a terminal."""
    try:
        return not quiet and sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def bar(total: Optional[float] = None, desc: Optional[str] = None, unit: str = "it",
        quiet: bool = False, iterable: Optional[Iterable] = None, **kwargs) -> tqdm:
    """A tqdm bar on stderr following the policy above (disabled, it costs nothing). It follows
    the terminal's size; a terminal that reports none (0 x 0: a pseudo-terminal nobody sized, as
    `script` or a CI runner makes) is taken as 100 x 20, where tqdm would draw nothing at all."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
        sized = size.columns > 0 and size.lines > 0
    except (OSError, AttributeError, ValueError):
        sized = False
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not shown(quiet), file=sys.stderr,
                dynamic_ncols=sized, ncols=None if sized else 100, nrows=None if sized else 20,
                mininterval=REDRAW_S, **kwargs)


class Rates:
    """Counts that grow inside a unit of a bar (frames and pairs inside a video), shown as the
    bar's postfix with their rates, ``frames 1,234 (56/s), pairs 789 (12/s)``, redrawn at most
    every REDRAW_S."""

    def __init__(self, progress: tqdm, *names: str):
        self.bar, self.counts = progress, dict.fromkeys(names, 0)
        self.start = self.last = time.perf_counter()

    def add(self, name: str, n: int = 1) -> None:
        self.counts[name] += n
        now = time.perf_counter()
        if now - self.last >= REDRAW_S:
            self.last = now
            self.bar.set_postfix_str(self.text(), refresh=True)

    def text(self) -> str:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        return ", ".join(f"{name} {n:,} ({n / elapsed:.1f}/s)" for name, n in self.counts.items() if n)
