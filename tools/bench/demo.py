"""README command 1, measured as a newcomer runs it: a fresh clone and a fresh virtualenv, then
`pip install -e . && bash tools/demo.sh` timed as one command, every line it prints kept with the
time it came; with --untrimmed, then `bash tools/untrimmed_demo.sh` in the same clone. Its figures
(docs/bench/demo.json) are the one source of the demo's time and of what the pages quote it
printing (``renders`` below). tests/test_demo_docs.py fails when the demo's scripts change after
their figures were taken.

    python -m tools.bench.demo --untrimmed --write-docs
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

from tools.bench.common import REPO, code_version, finish, log, machine_info, now, parse_args, parser

# What the demos are made of: when one of these changes, the recorded figures are stale.
DEMO_INPUTS = ("tools/demo.sh", "tools/demo_settings.sh", "tools/make_demo_videos.py")
UNTRIMMED_INPUTS = (*DEMO_INPUTS, "tools/untrimmed_demo.sh", "tools/make_untrimmed_demo.py")
COMMAND_1 = "pip install -e . && bash tools/demo.sh"
PACKAGES = ("torch", "torchvision", "opencv-contrib-python", "numpy", "av", "lmdb")
VISUALIZE = "tsn-train visualize --checkpoint data/demo/runs/flow/last.pt --out vis/demo"
PREDICT = ("tsn-train predict --checkpoint data/demo/runs/rgb/last.pt --checkpoint "
           "data/demo/runs/flow/last.pt --weights 1,1.5 --crops 3 data/demo/videos/move_up/move_up_07.mp4")
# The pictures of the recorded run the docs show (from the clone, to docs/pictures/).
PICTURES = {"data/demo/runs/flow/curves.png": "curves_demo_flow.png",
            "data/demo/scores/rgb_confusion.png": "confusion_demo_rgb.png",
            "data/untrimmed/scores/flow_mtwi-thumos14/pr_curve.png": "pr_curve_untrimmed_mtwi.png",
            "vis/demo/overview.png": "../visualize_demo_flow.png",
            "vis/demo/move_up.png": "../visualize_demo_move_up.jpg"}


def inputs_sha1(paths: tuple[str, ...], repo: Path = REPO) -> str:
    """One SHA-1 over the demo's files, as they are in ``repo``."""
    h = hashlib.sha1()
    for p in paths:
        h.update(p.encode() + b"\0" + (repo / p).read_bytes() + b"\0")
    return h.hexdigest()


def run_lines(command: str, cwd: Path, env: dict) -> tuple[int, float, list[tuple[float, str]]]:
    """Run ``command`` in bash; its exit code, seconds, and every line it printed (stdout and
    stderr as they interleave) with the seconds since the start at which it came."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines = []
    for line in proc.stdout:
        lines.append((time.perf_counter() - t0, line.rstrip("\n")))
        log(f"  {lines[-1][0]:6.1f} s  {lines[-1][1]}")
    return proc.wait(), time.perf_counter() - t0, lines


_STEP = re.compile(r"^== (\d+)/(\d+) (.*)$")


def steps(lines: list[tuple[float, str]], end: float) -> list[dict]:
    """The script's steps (its ``== N/M title`` lines): title, seconds, and the lines they printed;
    what came before the first step (the install) is step 0."""
    out = [{"step": 0, "title": "install", "start": 0.0, "lines": []}]
    for t, text in lines:
        m = _STEP.match(text)
        if m:
            out.append({"step": int(m.group(1)), "title": m.group(3), "start": t, "lines": []})
        elif text.strip():
            out[-1]["lines"].append(text)
    for step, nxt in zip(out, out[1:] + [{"start": end}]):
        step["seconds"] = round(nxt["start"] - step["start"], 1)
        step["shown"] = elided(step["lines"])
        del step["start"]
    return out


def elided(lines: list[str]) -> list[str]:
    """``lines`` with the epoch lines of each training run between its first and last as one
    ``...`` line (what the docs quote)."""
    out: list[str] = []
    run: list[str] = []
    for line in [*lines, ""]:
        if line.startswith("epoch "):
            run.append(line)
            continue
        if run:
            out += run if len(run) <= 2 else [run[0], "...", run[-1]]
            run = []
        if line:
            out.append(line)
    return out


def fresh_clone(work: Path) -> tuple[Path, dict]:
    """A clone of this repository's HEAD and a new virtualenv beside it: (clone, environment with
    the virtualenv activated)."""
    clone = work / "tsn"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = dict(os.environ, VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)
    return clone, env


def versions(env: dict) -> dict:
    """The versions of the packages that decide the demo's numbers, in the fresh virtualenv."""
    out = subprocess.run(["pip", "list", "--format=freeze"], env=env, capture_output=True, text=True).stdout
    have = dict(line.split("==", 1) for line in out.splitlines() if "==" in line)
    return {p: have.get(p, "-") for p in PACKAGES}


def main(argv: Optional[list[str]] = None) -> int:
    p = parser(__doc__)
    p.add_argument("--untrimmed", action="store_true", help="also run tools/untrimmed_demo.sh after it")
    p.add_argument("--keep", type=Path, help="work here (kept) instead of a temporary folder")
    args = parse_args(p, argv)
    started, t0 = now(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tsn-demo-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        clone, env = fresh_clone(work)
        log(f"$ {COMMAND_1}   (in {clone}, a fresh clone, and a fresh virtualenv)")
        code, seconds, lines = run_lines(COMMAND_1, clone, env)
        if code:
            log(f"command 1 exited {code}")
            return 1
        demo = steps(lines, seconds)
        log(f"$ {PREDICT}")
        code, _, plines = run_lines(PREDICT, clone, env)
        if code:
            log(f"predict exited {code}")
            return 1
        figures = {
            "template": "demo", "renders": [
                {"template": "demo_readme", "section": "demo", "page": "README.md"},
                {"template": "demo_steps", "section": "demo_transcript", "page": "docs/getting-started.md"},
                {"template": "results_measured", "section": "results_measured", "page": "docs/results.md"}],
            "date": f"{started:%Y-%m-%d}", "command": COMMAND_1, "seconds": round(seconds, 1),
            "install_seconds": demo[0]["seconds"], "steps": demo[1:], "versions": versions(env),
            "machine": machine_info(torch_too=True), "code": code_version(),
            "load_start": list(os.getloadavg()), "inputs_sha1": inputs_sha1(DEMO_INPUTS),
            "final": [line for line in demo[-1]["lines"] if " top-1 " in line],
            "predict": {"command": PREDICT, "lines": [t for _, t in plines]}}
        figures["renders"].append({"template": "demo_predict", "section": "demo_predict",
                                   "page": "docs/getting-started.md"})
        log(f"$ {VISUALIZE}")
        code, vseconds, _ = run_lines(VISUALIZE, clone, env)
        if code:
            log(f"visualize exited {code}")
            return 1
        config = json.loads((clone / "data" / "demo" / "runs" / "flow" / "config.json").read_text())
        figures["visualize"] = dict(drawn(clone / "vis" / "demo"), command=VISUALIZE,
                                    seconds=round(vseconds, 1), input_size=config["input_size"])
        figures["renders"].append({"template": "visualize_table", "section": "visualize_demo",
                                   "page": "docs/visualize.md"})
        if args.untrimmed:
            log("$ bash tools/untrimmed_demo.sh")
            code, useconds, ulines = run_lines("bash tools/untrimmed_demo.sh", clone, env)
            if code:
                log(f"the untrimmed demo exited {code}")
                return 1
            figures["renders"].append({"template": "untrimmed_table", "section": "untrimmed_demo",
                                       "page": "docs/untrimmed.md"})
            figures["untrimmed"] = {
                "command": "bash tools/untrimmed_demo.sh", "seconds": round(useconds, 1),
                "steps": steps(ulines, useconds)[1:], "inputs_sha1": inputs_sha1(UNTRIMMED_INPUTS),
                "map": parse_map(ulines)}
        if args.write_docs:  # the pictures the docs show, from this run
            for source, name in PICTURES.items():
                if (clone / source).exists():
                    copy_picture(clone / source, REPO / "docs" / "pictures" / name)
    figures["minutes"] = (time.perf_counter() - t0) / 60
    finish("demo", figures, args)
    return 0


def copy_picture(source: Path, dest: Path) -> None:
    """Copy a PNG the run drew to the docs: as it is, or as a JPEG (quality 90) where the docs
    keep a JPEG (smaller, for photographs and colour-coded flow)."""
    dest = dest.resolve()
    if dest.suffix.lower() in (".jpg", ".jpeg"):
        import cv2

        cv2.imwrite(str(dest), cv2.imread(str(source)), [cv2.IMWRITE_JPEG_QUALITY, 90])
    else:
        shutil.copyfile(source, dest)


def drawn(folder: Path) -> dict:
    """What ``tsn-train visualize`` drew, per class: the picture's probability, the noise's, and
    the picture's mean flow in px (x, y), dequantised as the store reads it."""
    import numpy as np

    from tsn_core.quantize import dequantize

    summary = json.loads((folder / "summary.json").read_text())
    rows = []
    for name, c in summary["classes"].items():
        levels = np.load(folder / c["file"].replace(".png", ".npz"))["levels"]
        mean = dequantize(levels, summary["bound"]).reshape(-1, 2).mean(axis=0)
        rows.append({"class": name, "probability": c["probability"], "noise": c["noise_probability"],
                     "mean_flow": [float(mean[0]), float(mean[1])]})
    return {"rows": rows, "settings": summary["settings"]}


def parse_map(lines: list[tuple[float, str]]) -> dict:
    """``{protocol: {metric: mAP, ...}}`` from the untrimmed demo's evaluate lines
    (``segments thumos14 mAP 0.5753 over 4 classes ...``)."""
    out: dict = {}
    for _, text in lines:
        m = re.match(r"^(segments|mtwi)\s+(thumos14|activitynet) mAP ([0-9.]+) over (\d+) classes"
                     r"(?:, hit@(\d+) ([0-9.]+))?", text)
        if m:
            row = out.setdefault(m.group(1), {})
            row[m.group(2)] = float(m.group(3))
            if m.group(5):
                row[f"hit@{m.group(5)}"] = float(m.group(6))
    return out


if __name__ == "__main__":
    sys.exit(main())
