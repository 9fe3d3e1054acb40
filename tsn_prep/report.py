"""What is in a store (`tsn-prep info`); whether it is intact is ``tsn_prep.verify``."""
from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np

from tsn_core import modalities
from tsn_core.store import Store
from tsn_core.text import shown


def store_info(store: Store, per_video: bool = False) -> dict:
    """A JSON-able summary: shards, per-modality counts and parameters, failures, warnings; with
    ``per_video``, also ``{video_id: {modality: images per channel}}`` under ``per_video``.
    Counted from the compact index's arrays: no entry's metadata is read but those with a warning."""
    tables = store.index.tables
    per_modality: dict[str, dict] = {}
    params: dict[str, Counter] = defaultdict(Counter)
    for shard, table in sorted(tables.items()):
        r = table.records
        for code, mod in enumerate(modalities.STORED):
            mine = r[r["modality"] == code]
            if not len(mine):
                continue
            m = per_modality.setdefault(mod, {"videos": 0, "images_per_channel": 0, "frames_decoded": 0})
            m["videos"] += len(mine)
            m["images_per_channel"] += int(mine["count"].sum(dtype=np.int64))
            m["frames_decoded"] += int(np.maximum(mine["frames"], 0).sum(dtype=np.int64))
            keys, counts = np.unique(mine["params"], return_counts=True)
            for key, n in zip(keys, counts):
                params[mod][table.params[int(key).to_bytes(8, "little")].decode("utf-8")] += int(n)
    for mod, counter in params.items():
        per_modality[mod]["parameters"] = [
            {"videos": n, **json.loads(p)} for p, n in sorted(counter.items(), key=lambda c: (-c[1], c[0]))
        ]
    return {
        "root": str(store.root),
        "num_shards": store.num_shards,
        "shards": [
            {"index": i, "path": str(p), "entries": len(tables[i]) if i in tables else 0,
             "bytes": store.shard_bytes(i)}
            for i, p in sorted(store.shard_paths.items())
        ],
        "shards_missing": sorted(set(range(store.num_shards)) - set(store.shard_paths)),
        "bytes": store.disk_bytes(),
        "videos": sum(t.video_count() for t in tables.values()),
        "modalities": dict(sorted(per_modality.items())),
        "failures": [f.to_dict() for f in store.failures()],
        "warnings": stored_warnings(store),
        **({"per_video": video_counts(store)} if per_video else {}),
    }


def video_counts(store: Store) -> dict[str, dict[str, int]]:
    """Images per channel of every stored (video, modality): frames for rgb, flows for flow."""
    out: dict[str, dict[str, int]] = {}
    for (vid, mod), entry in sorted(store.index.items()):
        out.setdefault(vid, {})[mod] = entry.count
    return out


def format_info(info: dict) -> str:
    """The human-readable form of :func:`store_info`: a column of labels as wide as the longest
    (``warped_flow``), then the values."""
    labels = ["store", "shards", "size", "videos", "failures", "warnings", *info["modalities"]]
    w = max(map(len, labels)) + 1

    def row(label: str, text: str) -> str:
        return f"{label:<{w}}{text}"

    lines = [row("store", info["root"]),
             row("shards", f"{len(info['shards'])} of {info['num_shards']}"
                 + (f" (missing: {info['shards_missing']})" if info["shards_missing"] else "")),
             row("size", f"{info['bytes'] / 2**20:.1f} MiB on disk"),
             row("videos", str(info["videos"]))]
    for mod, m in sorted(info["modalities"].items()):
        kind = "flows" if modalities.get(mod).is_flow else "frames"
        lines.append(row(mod, f"{m['videos']} videos, {m['images_per_channel']} {kind}"
                              f" ({m['images_per_channel'] / max(m['videos'], 1):.1f} per video)"))
        for p in m["parameters"]:
            settings = {k: v for k, v in p.items() if k not in ("videos", "tsn_prep_version")}
            lines.append(row("", f"{p['videos']} with {json.dumps(settings, sort_keys=True)}"))
    lines.append(row("failures", str(len(info["failures"]))))
    for f in info["failures"]:
        lines.append(f"  {shown(f['source'])} [{f['modality']}]: {shown(f['error'])}")
    if info["warnings"]:
        lines.append(row("warnings", str(len(info["warnings"]))))
        for warn in info["warnings"]:
            lines.append(f"  {shown(warn['video_id'])} [{warn['modality']}]: {shown(warn['warning'])}")
    if "per_video" in info:
        mods = sorted({m for counts in info["per_video"].values() for m in counts})
        width = max([len("video"), *map(len, info["per_video"])])
        lines.append("")
        lines.append("  ".join([f"{'video':<{width}}", *(f"{m:>11}" for m in mods)]))
        for vid, counts in info["per_video"].items():
            lines.append("  ".join([f"{vid:<{width}}", *(f"{counts.get(m, '-'):>11}" for m in mods)]))
    return "\n".join(lines)


def stored_warnings(store: Store) -> list[dict]:
    """``{"video_id", "modality", "warning"}`` of every entry stored with a warning, in id order."""
    return [{"video_id": e.video_id, "modality": e.modality, "warning": e.meta.warning}
            for e in sorted(store.index.warned(), key=lambda e: (e.video_id, e.modality))]
