"""Fault injection (tools/faults.py) in the suite: a real small store damaged every way a file can
be (cut short, bits flipped, a page zeroed, garbage, deleted), data.mdb and lock.mdb alike, and
every reader run on it as a real process. None may be killed by a signal, print a traceback, or
exit 0 claiming all is well when data is missing (docs/format.md, "A damaged shard"). A fixed
seed: the same faults every run. ``python -m tools.faults --cases 2000`` runs many more."""
from __future__ import annotations

import random
import shutil
from collections import Counter

import pytest

from tools import faults as tool
from tsn_core.store import Store

from .conftest import cli, link_videos

PREP = ("info", "verify", "export", "extract")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tool.Setup:
    return tool.make_setup(tmp_path_factory.mktemp("faults"), with_training=True)


def sample(setup: tool.Setup, per_kind: int, seed: int) -> list[tool.Fault]:
    """``per_kind`` faults of every kind for every file, chosen by ``seed``."""
    every = tool.faults(setup.store, random.Random(seed), per_kind=6)
    rng, chosen = random.Random(seed), []
    for file in sorted({f.file for f in every}):
        for kind in ("truncate", "flip", "zero", "garbage", "delete"):
            some = [f for f in every if f.file == file and f.kind == kind]
            chosen += rng.sample(some, min(per_kind, len(some)))
    return chosen


def assert_no_problem(results: list[tool.Result]) -> None:
    bad = [f"{r.fault} | {r.command}: {'; '.join(r.problems)} | {r.stderr.strip()[-300:]}"
           for r in results if r.problems]
    assert not bad, "\n".join(bad)


def test_every_store_reader_on_every_kind_of_damage(setup, tmp_path):
    cases = sample(setup, per_kind=2, seed=0)
    assert Counter(f.kind for f in cases) == {"truncate": 4, "flip": 4, "zero": 4, "garbage": 2, "delete": 2}
    results = tool.campaign(setup, cases, PREP, tmp_path)
    assert_no_problem(results)
    verdicts = {(r.fault, r.command): r.returncode for r in results}
    cut = next(f for f in cases if f.kind == "truncate" and f.file.endswith("data.mdb") and f.offset)
    # a shard cut short: every reader says so in one line naming it, and exits 1
    assert [verdicts[(cut, c)] for c in PREP] == [1, 1, 1, 1]
    line = next(r.stderr for r in results if r.fault == cut and r.command == "info").strip()
    assert line.startswith("Error: ") and "shard-00000-of-00001: damaged: " in line and "\n" not in line
    # lock.mdb: readers never read it and writers make it anew: no damage at all
    assert all(r.returncode == 0 for r in results if r.fault.file.endswith("lock.mdb")
               and r.command in ("info", "verify", "export"))


def test_fit_and_test_on_a_damaged_store(setup, tmp_path):
    every = tool.faults(setup.store, random.Random(1), per_kind=6)
    data = [f for f in every if f.file.endswith("data.mdb")]
    cases = [next(f for f in data if f.kind == "truncate" and f.offset), next(f for f in data if f.kind == "zero")]
    results = tool.campaign(setup, cases, ("fit", "test"), tmp_path)
    assert_no_problem(results)
    assert all(r.returncode == 1 for r in results if r.fault.kind == "truncate")


def test_the_judge_catches_what_it_is_for():
    assert tool.judge("info", -7, "", changed=True, opened=False) == ["killed by signal 7"]
    assert tool.judge("verify", 0, "", changed=True, opened=True) == \
        ["verify exit 0 although what the store holds has changed"]
    assert tool.judge("export", 0, "", changed=False, opened=False) == ["exit 0 on a store that cannot be opened"]
    assert tool.judge("fit", 1, "Traceback (most recent call last):", changed=True, opened=True) == \
        ["printed a traceback"]
    assert tool.judge("info", 0, "", changed=True, opened=True) == []  # info reads no image


def test_the_repair_line_mends_a_damaged_shard(tmp_path):
    """verify names the damaged shard and how to mend it; doing what it says gives the store back."""
    videos = link_videos(tmp_path / "videos", {"a.mp4": "carphone.mp4", "b.avi": "tree.avi",
                                               "c.mp4": "poolcleaning.mp4"})
    out = tmp_path / "out"
    args = ("--size", "64x48", "--max-frames", "4", "--num-shards", "2", "--quiet")
    for shard in ("0", "1"):
        cli("extract-frames", videos, out, *args, "--shard-index", shard)
    want = {(v, c, i): d for _, v, c, i, d in Store(out).iter_images()}
    data = out / "shard-00001-of-00002" / "data.mdb"
    data.write_bytes(data.read_bytes()[:data.stat().st_size // 2])  # an interrupted copy
    r = cli("verify", out, "--quiet", expect=1)
    repair = [line for line in r.stderr.splitlines() if line.startswith("repair: ")]
    aside = f"{out}.damaged-shard-00001-of-00002"
    assert repair == [f"repair: shard 1: restore {out / 'shard-00001-of-00002'} from a copy, or move it "
                      f"aside (mv {out / 'shard-00001-of-00002'} {aside}) and run your extraction "
                      "commands again with --shard-index 1 --num-shards 2: they extract exactly this "
                      "shard's videos"]
    r = cli("extract-frames", videos, out, *args, "--shard-index", "1", expect=1)  # no writer writes to it
    assert "shard-00001-of-00002: damaged: " in r.output
    shutil.move(out / "shard-00001-of-00002", aside)
    cli("extract-frames", videos, out, *args, "--shard-index", "1")
    assert cli("verify", out, "--quiet").exit_code == 0
    assert {(v, c, i): d for _, v, c, i, d in Store(out).iter_images()} == want
