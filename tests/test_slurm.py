"""tools/slurm_extract_flow.sh and tools/slurm_train.sh submitted to a real SLURM.

The module starts a one-node cluster of its own (Debian's munge, slurmctld and slurmd; every file
in a temp dir, ports of its own) and stops it afterwards. It skips, saying why, where SLURM is not
installed (`.ci/run` installs it with apt when it can) or cannot run here (not root).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tsn_train import checkpoint

from .conftest import GUARD, REPO, cli

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "sinfo", "scontrol", "scancel", "squeue")
INSTALL = "apt-get install -y slurmctld slurmd munge"


@dataclass
class Cluster:
    env: dict  # the environment jobs are submitted with: SLURM_CONF, and this checkout importable
    node: str

    def run(self, *args, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([str(a) for a in args], env=kwargs.pop("env", self.env),
                              capture_output=True, text=True, timeout=GUARD, **kwargs)

    def sbatch(self, *args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
        """Submit and wait for the job (all tasks of an array): exit status 0 only if every task
        exited 0."""
        return self.run("sbatch", "--wait", *args, cwd=cwd, env=env or self.env)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _slurm_conf(tmp: Path, node: str, ports: list[int]) -> str:
    # The node as slurmd measures it (CPUs, sockets, cores, threads, memory), under our name.
    hardware = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in hardware.splitlines() if ln.startswith("NodeName="))
    fields = [f for f in line.split()[1:] if not f.startswith("UpTime=")]
    return "\n".join([
        "ClusterName=tsntest",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={ports[0]}",
        f"SlurmdPort={ports[1]}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={tmp}/munge.sock",
        f"StateSaveLocation={tmp}/state",
        f"SlurmdSpoolDir={tmp}/spool",
        f"SlurmctldPidFile={tmp}/slurmctld.pid",
        f"SlurmdPidFile={tmp}/slurmd.pid",
        f"SlurmctldLogFile={tmp}/slurmctld.log",
        f"SlurmdLogFile={tmp}/slurmd.log",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",  # CPUs are the consumable: array tasks share the node
        "MpiDefault=none",
        "ReturnToService=2",
        # sbatch --wait polls every 2 s while MinJobAge < 5 (it backs off to 8 and 32 s otherwise)
        "MinJobAge=4",
        "MailProg=/bin/true",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        f"NodeName={node} NodeAddr=127.0.0.1 {' '.join(fields)} State=UNKNOWN",
        "PartitionName=tsn Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def _wait_for(what: str, ready, procs: dict, tmp: Path) -> None:
    """Poll ``ready()`` until true; skip the module if a daemon died or it never happens (GUARD
    only bounds a cluster that cannot start here)."""
    deadline = time.monotonic() + GUARD
    while not ready():
        dead = [name for name, p in procs.items() if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            logs = "".join(f"\n--- {f.name}\n" + f.read_text(errors="replace")[-1500:]
                           for f in sorted(tmp.glob("*.log")) + sorted(tmp.glob("*.out")))
            pytest.skip(f"SLURM cannot start here ({what}; exited: {dead or 'none'}):{logs}")
        time.sleep(0.2)


def _stop(procs: dict, env: dict) -> None:
    """Cancel what is left of our jobs, then stop slurmd, slurmctld and munged (in that order)."""
    if procs.get("slurmctld") and procs["slurmctld"].poll() is None:
        subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True, timeout=GUARD)
        deadline = time.monotonic() + GUARD
        while time.monotonic() < deadline:
            queue = subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True,
                                   timeout=GUARD)
            if queue.returncode != 0 or not queue.stdout.strip():
                break
            time.sleep(0.2)
    for name in reversed(DAEMONS):
        proc = procs.get(name)
        if proc is None or proc.poll() is not None:
            continue
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def slurm():
    missing = [b for b in DAEMONS + CLIENTS if shutil.which(b) is None]
    if missing:
        pytest.skip(f"SLURM is not installed (no {', '.join(missing)}): `{INSTALL}` "
                    "(.ci/run does it where apt works)")
    if os.geteuid() != 0:
        pytest.skip("starting a SLURM cluster needs root (slurmd and SlurmUser run as root here)")
    node = socket.gethostname().split(".")[0]
    # A short path of its own: munge's socket path must fit in a sockaddr_un (108 bytes).
    tmp = Path(tempfile.mkdtemp(prefix="tsn-slurm-"))
    procs: dict = {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}  # not a job's
    env["SLURM_CONF"] = str(tmp / "slurm.conf")
    # Jobs run `tsn-prep`, `torchrun -m tsn_train.cli`: this checkout, whatever is installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    # ... and those commands from this interpreter's environment, activated or not (pytest run as
    # /path/to/venv/bin/python -m pytest finds them there, not on the caller's PATH)
    env["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), os.environ.get("PATH")]))
    try:
        for d in ("state", "spool"):
            (tmp / d).mkdir()
        key = tmp / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        (tmp / "slurm.conf").write_text(_slurm_conf(tmp, node, _free_ports(2)))
        sock = tmp / "munge.sock"

        def start(name: str, *args) -> None:
            with open(tmp / f"{name}.out", "w") as out:
                procs[name] = subprocess.Popen([name, *map(str, args)], stdout=out,
                                               stderr=subprocess.STDOUT, env=env,
                                               start_new_session=True)

        start("munged", "--foreground", "--force", f"--socket={sock}", f"--key-file={key}",
              f"--pid-file={tmp}/munged.pid", f"--log-file={tmp}/munged.log",
              f"--seed-file={tmp}/munged.seed")
        _wait_for("munged's socket", sock.exists, procs, tmp)
        start("slurmctld", "-D", "-f", tmp / "slurm.conf")
        start("slurmd", "-D", "-f", tmp / "slurm.conf", "-N", node)

        def idle() -> bool:
            state = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True,
                                   text=True, timeout=GUARD)
            return state.returncode == 0 and state.stdout.split() == ["idle"]

        _wait_for(f"node {node} idle in sinfo", idle, procs, tmp)
        yield Cluster(env, node)
    finally:
        _stop(procs, env)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """8 demo clips (4 classes x 2: one train, one test each) with their lists, as tools/demo.sh
    makes them, only smaller."""
    root = tmp_path_factory.mktemp("slurm_demo")
    subprocess.run([sys.executable, str(REPO / "tools" / "make_demo_videos.py"),
                    str(root / "videos"), "--clips-per-class", "2", "--test-per-class", "1",
                    "--frames", "8", "--size", "112x84", "--lists", str(root / "lists")],
                   check=True, capture_output=True, timeout=GUARD)
    return root


def _ids(videos: Path) -> list[str]:
    return sorted(str(p.relative_to(videos).with_suffix("")) for p in videos.rglob("*.mp4"))


def _logs_text(logs: list[Path]) -> str:
    return "".join(f"\n--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)


def test_extraction_array_from_a_directory_without_logs(slurm, demo, tmp_path):
    submit = tmp_path / "submit"  # a fresh, empty directory: no logs/ in it
    submit.mkdir()
    out = tmp_path / "store"
    proc = slurm.sbatch("--array=0-2", "--cpus-per-task=1", "--mem=1G", "--time=10",
                        REPO / "tools" / "slurm_extract_flow.sh", demo / "videos", out,
                        "--size", "112x84", "--max-frames", "6", cwd=submit)
    logs = sorted(submit.glob("tsn-flow-*_*.log"))
    assert proc.returncode == 0, proc.stdout + proc.stderr + _logs_text(logs)
    job = re.search(r"Submitted batch job (\d+)", proc.stdout).group(1)
    assert [p.name for p in logs] == [f"tsn-flow-{job}_{i}.log" for i in range(3)]
    assert sorted(p.name for p in submit.iterdir()) == [p.name for p in logs]  # nothing else

    # Every task ran both steps on its own shard, without a failure; together they saw each
    # video once per step.
    per_step = {"frames": 0, "flow": 0}
    for log in logs:
        text = log.read_text()
        done = re.findall(r"(\d+) extracted, (\d+) already complete, (\d+) failed, "
                          r"of (\d+) videos in this shard", text)
        assert len(done) == 2, text
        for step, (extracted, skipped, failed, total) in zip(per_step, done):
            assert (int(extracted), int(skipped), int(failed)) == (int(total), 0, 0), text
            per_step[step] += int(total)
        assert "error" not in text.lower(), text
    ids = _ids(demo / "videos")
    assert per_step == {"frames": len(ids), "flow": len(ids)}

    info = json.loads(cli("info", out, "--json", "--videos").output)
    assert (info["num_shards"], len(info["shards"]), info["shards_missing"]) == (3, 3, [])
    assert sorted(s["path"].rsplit("/", 1)[-1] for s in info["shards"]) == \
        [f"shard-{i:05d}-of-00003" for i in range(3)]
    assert sorted(info["per_video"]) == ids and info["failures"] == []
    assert all(v == {"rgb": 6, "flow": 5, "warped_flow": 5} for v in info["per_video"].values())
    cli("verify", out)  # exit 0: every image decodes, every count matches


def test_training_on_two_gloo_ranks_ends_with_identical_weights(slurm, demo, tmp_path):
    store = tmp_path / "store"
    cli("extract-frames", demo / "videos", store, "--size", "112x84", "--quiet")
    lists = demo / "lists"
    run = tmp_path / "run"
    run.mkdir()
    submit = tmp_path / "submit"
    submit.mkdir()
    # One node, one torchrun with 2 CPU processes (gloo). TSN_FIT starts tsn_train.cli's fit
    # through tests/helpers/ddp_fit.py, which also saves each rank's final weights as rankN.pt.
    # A free MASTER_PORT: the script's default (from the job id) is the same in every test cluster.
    env = dict(slurm.env, TSN_DEVICE="cpu", TSN_NPROC_PER_NODE="2",
               MASTER_PORT=str(_free_ports(1)[0]),
               TSN_FIT=f"{REPO / 'tests' / 'helpers' / 'ddp_fit.py'} {run} --")
    proc = slurm.sbatch(
        "--nodes=1", "--cpus-per-task=2", "--mem=4G", "--time=10",
        REPO / "tools" / "slurm_train.sh", "--modality", "rgb", "--store", store,
        "--train-list", lists / "demo_train.txt", "--val-list", lists / "demo_test.txt",
        "--classes", lists / "demo_classes.txt", "--out", run, "--arch", "resnet18",
        "--input-size", "64", "--no-partial-bn", "--batch-size", "2", "--accumulate", "1",
        "--workers", "0", "--epochs", "1", "--lr", "0.01", cwd=submit, env=env)
    logs = sorted(submit.glob("tsn-train-*.log"))
    assert proc.returncode == 0, proc.stdout + proc.stderr + _logs_text(logs)
    job = re.search(r"Submitted batch job (\d+)", proc.stdout).group(1)
    assert [p.name for p in logs] == [f"tsn-train-{job}.log"]
    text = logs[0].read_text()
    assert (f"1 node(s) x 2 process(es), device cpu, rendezvous {slurm.node}:{env['MASTER_PORT']}"
            in text), text
    assert "device cpu x 2 ranks" in text, text

    r0, r1 = (torch.load(run / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["state"].keys() == r1["state"].keys()
    # BatchNorm running statistics are each rank's own (DDP broadcasts them from rank 0 before
    # every forward pass); the trained parameters must be identical.
    params = [k for k in r0["state"] if "running" not in k and "num_batches" not in k]
    assert params and all(torch.equal(r0["state"][k], r1["state"][k]) for k in params)
    saved = checkpoint.load(run / "last.pt")  # rank 0 alone writes the checkpoint
    assert all(torch.equal(saved.model[k], r0["state"][k]) for k in params)
    # Each rank trained on 2 of the 4 training videos; the metrics were summed over both ranks.
    assert [h["train_videos"] for h in r0["history"]] == [4]
    assert [h["val_videos"] for h in r0["history"]] == [4]
    assert sorted(p.name for p in run.iterdir() if p.suffix == ".pt") == \
        ["best.pt", "last.pt", "rank0.pt", "rank1.pt"]


def test_a_requeued_array_task_ends_on_sigterm_with_one_line_and_resumes(slurm, demo, tmp_path):
    """`scontrol requeue` of a running array task: SLURM sends SIGTERM to every process of the
    task (tsn-prep's decoding workers included), tsn-prep ends with 143 and its one line, and the
    task, run again by SLURM, finishes the same store as a run that was never interrupted."""
    ref = tmp_path / "ref"
    args = ["--size", "112x84", "--max-frames", "6", "--workers", "2", "--quiet"]
    cli("extract-flow", demo / "videos", ref, *args)
    out = tmp_path / "store"
    submit = tmp_path / "submit"
    submit.mkdir()
    script = submit / "job.sh"
    # the run holds inside the transaction of its second video, in its first run only
    script.write_text("#!/bin/bash\n"
                      f"exec {sys.executable} {REPO / 'tests' / 'helpers' / 'moments.py'} tsn_prep.cli "
                      f"extract-flow {demo / 'videos'} {out} {' '.join(args)}\n")
    marks = tmp_path / "moments"
    marks.mkdir()
    env = dict(slurm.env, TSN_MOMENTS=str(marks), TSN_HOLD="write:2",
               TSN_HOLD_ONCE=str(tmp_path / "held"))
    submitted = slurm.run("sbatch", "--array=0-0", "--requeue", "--open-mode=append",
                          "--output=job-%A_%a.log", "--cpus-per-task=2", "--mem=2G", "--time=10",
                          script, cwd=submit, env=env)
    assert submitted.returncode == 0, submitted.stderr
    job = re.search(r"Submitted batch job (\d+)", submitted.stdout).group(1)
    deadline = time.monotonic() + GUARD
    while not (marks / "write.2").exists():
        assert time.monotonic() < deadline, _logs_text(sorted(submit.glob("*.log")))
        time.sleep(0.1)
    requeued = slurm.run("scontrol", "requeue", f"{job}_0")
    assert requeued.returncode == 0, requeued.stderr
    # SLURM holds a requeued job back for a while (its BeginTime); release it at once
    while slurm.run("squeue", "-h", "-j", job).stdout.strip():
        slurm.run("scontrol", "update", f"JobId={job}_0", "StartTime=now")
        assert time.monotonic() < deadline + GUARD, _logs_text(sorted(submit.glob("*.log")))
        time.sleep(0.5)
    text = (submit / f"job-{job}_0.log").read_text()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("slurmstepd")]
    assert lines[0] == f"interrupted (SIGTERM): finished videos are safe in {out}; re-run the " \
                       "same command to do the rest", text
    done = re.fullmatch(r"(\d+) extracted, 1 already complete, 0 failed, of (\d+) videos in this "
                        r"shard .*", lines[1])
    assert done and int(done[1]) + 1 == int(done[2]), text
    assert len(lines) == 2 and "Traceback" not in text and "core" not in text, text
    assert _images(out) == _images(ref)


def _images(store: Path) -> list:
    from tsn_core.store import Store

    return [(v, c, i, d) for _, v, c, i, d in Store(store).iter_images()]
