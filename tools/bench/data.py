"""The training benchmarks' data (``tools.bench.train``, ``loader``, ``scan``): the real clips
extracted once, then copied into distinct videos ``cNN/<clip>``, as a store and as the JPEG
folders ``tsn-prep export`` writes; and ``FolderImages``, an image source over those folders."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.bench.common import find_clips, log
from tsn_core import modalities
from tsn_core.lists import Record
from tsn_prep import __version__ as prep_version
from tsn_prep.folders import Naming
from tsn_core.store import Store

DEFAULT_CACHE = Path(tempfile.gettempdir()) / "tsn-bench-train"
COPIES = 40       # distinct copies of every clip in the full data
FLOW_FRAMES = 60  # frames per clip for flow: CPU TV-L1 takes most of a second per pair
NAMING = Naming()  # what `tsn-prep export` writes by default: img_00001.jpg, flow_x_00001.jpg


class FolderImages:
    """The images of TSN-style JPEG folders (``root/<id>/img_00001.jpg``, ``flow_x_``, ``flow_y_``:
    the layout dense_flow, mmaction2 and tsn-pytorch use), as a ``tsn_train.dataset.ImageSource``
    (decoded as a store's images are: ``EncodedImages``)."""

    fresh_workers = False

    def __init__(self, root: Path, naming: Naming = NAMING):
        self.root, self.naming = Path(root), naming

    def read(self, video_id: str, channel: str, indices: list[int]) -> list[bytes]:
        return [(self.root / video_id / self.naming.filename(channel, i)).read_bytes() for i in indices]

    def frames(self, video_id: str, modality: str, indices: list[int]):
        from tsn_train.dataset import EncodedImages  # torch: imported where a dataset reads
        return EncodedImages.frames(self, video_id, modality, indices)


def tsn_prep_cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "tsn_prep.cli", *args, "--quiet"], check=True, stdout=subprocess.DEVNULL)


def _stamped(path: Path, stamp: dict) -> bool:
    try:
        return json.loads(path.read_text()) == stamp
    except (OSError, ValueError):
        return False


def build(videos: Path, cache: Path, copies: int = COPIES, flow_frames: int = FLOW_FRAMES) -> tuple[list[Path], Path, Path]:
    """(clips, store, folders), built on first use and kept under ``cache`` while the clips and
    tsn_prep's version stay the same. The copies are made as folders and imported (real copies,
    so each has its own page-cache pages); the folders are exported from that store, so both
    storages hold the same bytes."""
    clips, cache = find_clips(videos), Path(cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    base_stamp = {"clips": [[c.name, c.stat().st_size, c.stat().st_mtime] for c in clips],
                  "flow_frames": flow_frames, "tsn_prep": prep_version}
    base = cache / f"base-{flow_frames}"
    if not _stamped(cache / f"{base.name}.json", base_stamp):
        shutil.rmtree(base, ignore_errors=True)
        log(f"[data] extracting {len(clips)} clips into {base} (flow of {flow_frames} frames each)")
        tsn_prep_cli("extract-frames", str(videos), str(base))
        tsn_prep_cli("extract-flow", str(videos), str(base), "--max-frames", str(flow_frames), "--workers", "2")
        (cache / f"{base.name}.json").write_text(json.dumps(base_stamp))
    data = cache / (f"copies-{copies}" if flow_frames == FLOW_FRAMES else f"copies-{copies}-flow{flow_frames}")
    store, folders, stamp = data / "store", data / "folders", {"base": base_stamp, "copies": copies}
    if not _stamped(data / "stamp.json", stamp):
        shutil.rmtree(data, ignore_errors=True)
        log(f"[data] making {copies} copies of every clip as distinct videos in {data}")
        tsn_prep_cli("export", str(base), str(data / "staging" / "c00"))
        for k in range(1, copies):
            shutil.copytree(data / "staging" / "c00", data / "staging" / f"c{k:02d}")
        tsn_prep_cli("import-frames", str(data / "staging"), str(store))
        shutil.rmtree(data / "staging")
        tsn_prep_cli("export", str(store), str(folders))
        os.sync()  # dirty pages cannot be evicted; the cold passes need clean ones
        (data / "stamp.json").write_text(json.dumps(stamp))
    return clips, store, folders


def pass_records(store: Path, clips: list[Path], pass_copies: int) -> list[Record]:
    """Every video of the first ``pass_copies`` copies once; the label is the clip's position."""
    labels = {c.stem: i for i, c in enumerate(clips)}
    wanted = {f"c{k:02d}" for k in range(pass_copies)}
    s = Store(store)
    ids = sorted(v for v in s.videos("rgb") if v.split("/", 1)[0] in wanted)
    s.close()
    return [Record(v, labels[v.split("/", 1)[1]]) for v in ids]


def data_files(store: Path, folders: Path) -> dict[str, list[Path]]:
    """Every file each storage may read: the shards' LMDB files; every exported JPEG."""
    return {"lmdb": sorted(p for p in Path(store).glob("shard-*/*") if p.is_file()),
            "folders": sorted(Path(d, f) for d, _, fs in os.walk(folders) for f in fs)}


def image_kb(jpegs: list[Path]) -> dict[str, float]:
    """Mean size (KB) of one stored image: rgb frames, flow fields."""
    sizes: dict[str, list[int]] = {"rgb": [], "flow": []}
    for p in jpegs:
        sizes["rgb" if p.name.startswith(NAMING.prefix("img")) else "flow"].append(p.stat().st_size)
    return {m: sum(v) / len(v) / 1000 for m, v in sizes.items() if v}


def images_per_snippet(modality: str) -> int:
    """Stored JPEGs one snippet of ``modality`` reads."""
    spec = modalities.get(modality)
    return spec.snippet_length * len(spec.channels)
