"""``python -m tools.bench.gpu_check --prepare``: what the GPU check needs and the GPU machine
lacks, gathered here into the git-ignored folder ``.gpu_check/`` that the device call carries:

    videos/        the five real clips (../shared/data/videos)
    grove3/        Middlebury Grove3: both frames and the ground truth
    refs.npz       fixed grey frame pairs of those clips at 340x256, OpenCV's TV-L1 flow of each
                   and OpenCV's Grove3 end-point error (the machine's cv2 has no ``optflow``,
                   so OpenCV's CPU TV-L1 runs here, once), and the TV-L1 parameters
    refs-tiny.npz  the same at 64x48 (Grove3 at 80x60) with ``TINY_TVL1``, for ``--tiny``
    wheels/        wheels for CPython 3.12 x86-64 of this project's dependencies the machine lacks
                   (``modules.txt`` names what each provides, for tools/gpu_check.sh)
    prepare.json   what was prepared, with which OpenCV, and what travels (bytes)
"""
from __future__ import annotations

import configparser
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tools.bench.common import GROVE, REPO, VIDEOS, code_version, epe, find_clips, grey_pairs, log, now, write_json

SIZE, TINY_SIZE = (340, 256), (64, 48)
GROVE_TINY_SCALE = 1 / 8     # Grove3 640x480 -> 80x60 in --tiny
# --tiny's TV-L1 (against OpenCV's defaults: 5 levels, 5 warps, epsilon 0.01): about 30 inner
# iterations a pair instead of 900 at 64x48, so the eager torch solver takes 0.2 s, not 2 s
TINY_TVL1 = {"scales": 2, "warps": 2, "epsilon": 0.05}
REFS_PER_CLIP = 2            # pairs per clip with an OpenCV reference: 10 pairs, about 6 MB
CARRY_LIMIT = 64 * 2**20     # the device tool's limit on what travels
# setup.cfg's install_requires against the GPU machine's image (/work/.library/device/KINDS.md,
# "Python packages already there", read 2026-11-17): carried (as a wheel) or why not.
ON_GPU_MACHINE = {
    "numpy": "there",
    "opencv-contrib-python": "not carried: opencv-python-headless is there (decoding, JPEG); its "
                             "missing cv2.optflow only gives OpenCV's TV-L1, whose reference flows "
                             "are computed here (refs.npz); the contrib wheel is 73 MB",
    "lmdb": "carried",
    "click": "there",
    "tqdm": "there",
    "av": "not carried: imported only for a file OpenCV cannot decode (these clips it can); 36 MB",
    "torch": "there (2.11.0+cu130, Triton 3.6.0, seen 2026-11)",
    "torchvision": "there",
    "pillow": "there",
}
MODULES = {"lmdb": "lmdb"}   # import name of each carried distribution
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")


def requirements(setup_cfg: Path = REPO / "setup.cfg") -> list[str]:
    """The distribution names of setup.cfg's install_requires."""
    cfg = configparser.ConfigParser()
    cfg.read(setup_cfg)
    lines = cfg["options"]["install_requires"].split("\n")
    return [re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0] for line in lines if line.strip()]


def to_carry(names: list[str]) -> tuple[list[str], list[str]]:
    """(distributions to carry, notes): the carried ones, plus any requirement the table above
    does not know (a new dependency: carried, to be safe, with a note saying so)."""
    return ([n for n in names if ON_GPU_MACHINE.get(n, "carried") == "carried"],
            [f"{n}: not in ON_GPU_MACHINE (tools/bench/gpu_check_prepare.py); carried"
             for n in names if n not in ON_GPU_MACHINE])


def download_wheels(names: list[str], folder: Path) -> list[dict]:
    """``pip download`` of each distribution for CPython 3.12 x86-64, pinned to the version
    installed here (the one the tests ran with); a failure is recorded, not raised."""
    folder.mkdir(parents=True, exist_ok=True)
    got = []
    for name in names:
        try:
            spec = f"{name}=={importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            spec = name
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", "--implementation", "cp", "-d", str(folder), spec]
        for platform in PLATFORMS:
            cmd += ["--platform", platform]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        files = sorted(p.name for p in folder.glob(f"{name.replace('-', '_')}-*.whl"))
        got.append({"requirement": spec, "files": files, "ok": proc.returncode == 0 and bool(files),
                    "error": None if proc.returncode == 0 else proc.stderr.strip().splitlines()[-1:]})
        log(f"[prepare] wheel {spec}: {'ok ' + ', '.join(files) if got[-1]['ok'] else got[-1]['error']}")
    (folder / "modules.txt").write_text("".join(MODULES.get(n, n.replace("-", "_")) + "\n" for n in names))
    return got


def grove3_at(folder: Path, scale: float = 1.0):
    """Grove3's grey frames and ground truth, resized by ``scale`` (flow resized and scaled)."""
    import cv2

    from tools.bench.common import grove3
    grey, gt = grove3(folder)
    if scale == 1.0:
        return grey, gt
    h, w = (round(n * scale) for n in grey[0].shape)
    grey = [cv2.resize(g, (w, h), interpolation=cv2.INTER_AREA) for g in grey]
    return grey, cv2.resize(gt, (w, h), interpolation=cv2.INTER_AREA) * np.float32(scale)


def reference_pairs(videos: Path, size: tuple[int, int], per_clip: int = REFS_PER_CLIP):
    """``per_clip`` grey pairs of each clip, spread evenly over it, decoded as the pipeline does."""
    prev, nxt, names = [], [], []
    for clip in find_clips(videos):
        pairs = grey_pairs(clip, size, None)
        for j in range(per_clip):
            k = round(len(pairs) * (j + 1) / (per_clip + 1))
            prev.append(pairs[k][0])
            nxt.append(pairs[k][1])
            names.append(f"{clip.name}:{k}")
    return np.stack(prev), np.stack(nxt), names


def make_refs(folder: Path, tiny: bool) -> dict:
    """refs.npz (or refs-tiny.npz): the pairs, OpenCV's TV-L1 flow of each, and Grove3's EPE."""
    import cv2

    from tsn_prep.extraction.backends import OpenCVTVL1
    from tsn_prep.extraction.tvl1_params import TVL1Params

    size, scale = (TINY_SIZE, GROVE_TINY_SCALE) if tiny else (SIZE, 1.0)
    params = TVL1Params(**(TINY_TVL1 if tiny else {}))
    t0 = time.perf_counter()
    prev, nxt, names = reference_pairs(folder / "videos", size)
    flows = np.stack([OpenCVTVL1(params)(a, b) for a, b in zip(prev, nxt)])
    grey, gt = grove3_at(folder / "grove3", scale)
    grove_epe = epe(OpenCVTVL1(params)(*grey), gt)
    path = folder / ("refs-tiny.npz" if tiny else "refs.npz")
    np.savez_compressed(path, prev=prev, nxt=nxt, flow=flows, names=np.array(names),
                        tvl1=np.array(json.dumps(params.as_dict())),
                        grove3_opencv_epe=np.float64(grove_epe), grove3_scale=np.float64(scale),
                        cv2_version=np.array(cv2.__version__))
    log(f"[prepare] {path.name}: {len(names)} pairs at {size[0]}x{size[1]}, OpenCV {cv2.__version__}, "
        f"Grove3 EPE {grove_epe:.4f} px, {time.perf_counter() - t0:.0f} s")
    return {"file": path.name, "pairs": names, "size": list(size), "tvl1": params.as_dict(),
            "grove3_opencv_epe": grove_epe}


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def tree_bytes() -> int:
    """Bytes of what travels without ``carry``: tracked and untracked-not-ignored files."""
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard", "-z"],
                         capture_output=True, text=True).stdout
    return sum((REPO / f).stat().st_size for f in out.split("\0") if f and (REPO / f).is_file())


def prepare(folder: Path, tiny_only: bool = False, wheels: bool = True) -> dict:
    """Fill ``folder`` (see the module's docstring); returns what prepare.json records."""
    for src, sub in ((VIDEOS, "videos"), (GROVE, "grove3")):
        shutil.rmtree(folder / sub, ignore_errors=True)
        (folder / sub).mkdir(parents=True)
        for f in sorted(Path(src).iterdir()):  # contents only: the shared folder is read-only
            if f.is_file():
                shutil.copyfile(f, folder / sub / f.name)
    record = {"date": f"{now():%Y-%m-%d %H:%M} UTC", "code": code_version(),
              "videos": sorted(p.name for p in (folder / "videos").iterdir()),
              "refs": [make_refs(folder, tiny=True)] + ([] if tiny_only else [make_refs(folder, tiny=False)])}
    carry, notes = to_carry(requirements())
    record["requirements"] = {n: ON_GPU_MACHINE.get(n, "unknown: carried") for n in requirements()}
    record["notes"] = notes
    if wheels:
        shutil.rmtree(folder / "wheels", ignore_errors=True)
        record["wheels"] = download_wheels(carry, folder / "wheels")
    ignored = subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", str(folder)]).returncode == 0
    if not ignored and folder.resolve().is_relative_to(REPO):
        notes.append(f"{folder} is not git-ignored: it would travel twice (add it to .gitignore)")
    record["bytes"] = {"carried": folder_bytes(folder), "tree": tree_bytes()}
    record["bytes"]["total"] = record["bytes"]["carried"] + record["bytes"]["tree"]
    record["bytes"]["limit"] = CARRY_LIMIT
    write_json(folder / "prepare.json", record)
    mib = {k: v / 2**20 for k, v in record["bytes"].items()}
    log(f"[prepare] {folder}: {mib['carried']:.1f} MiB carried + {mib['tree']:.1f} MiB working tree = "
        f"{mib['total']:.1f} MiB of the {mib['limit']:.0f} MiB that may travel")
    for note in notes:
        log(f"[prepare] note: {note}")
    if record["bytes"]["total"] > CARRY_LIMIT:
        raise SystemExit(f"{folder}: {mib['total']:.1f} MiB would travel, over the {mib['limit']:.0f} MiB limit")
    return record
