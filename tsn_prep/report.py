"""What is in a store (`tsn-prep info`); whether it is intact is ``tsn_prep.verify``."""
from __future__ import annotations

import json
from collections import Counter, defaultdict

from tsn_core import modalities

from .store import Store


def store_info(store: Store, per_video: bool = False) -> dict:
    """A JSON-able summary: shards, per-modality counts and parameters, failures, warnings; with
    ``per_video``, also ``{video_id: {modality: images per channel}}`` under ``per_video``."""
    per_shard: Counter = Counter()
    per_modality: dict[str, dict] = {}
    params: dict[str, Counter] = defaultdict(Counter)
    for (vid, mod), entry in sorted(store.index.items()):
        per_shard[entry.shard] += 1
        m = per_modality.setdefault(mod, {"videos": 0, "images_per_channel": 0, "frames_decoded": 0})
        m["videos"] += 1
        m["images_per_channel"] += entry.meta.count
        m["frames_decoded"] += (entry.meta.num_frames or 0)
        params[mod][json.dumps(entry.meta.parameters or {}, sort_keys=True)] += 1
    for mod, counter in params.items():
        per_modality[mod]["parameters"] = [
            {"videos": n, **json.loads(p)} for p, n in counter.most_common()
        ]
    return {
        "root": str(store.root),
        "num_shards": store.num_shards,
        "shards": [
            {"index": i, "path": str(p), "entries": per_shard.get(i, 0),
             "bytes": store.shard_bytes(i)}
            for i, p in sorted(store.shard_paths.items())
        ],
        "shards_missing": sorted(set(range(store.num_shards)) - set(store.shard_paths)),
        "bytes": store.disk_bytes(),
        "videos": len({vid for vid, _ in store.index}),
        "modalities": per_modality,
        "failures": store.failures(),
        "warnings": stored_warnings(store),
        **({"per_video": video_counts(store)} if per_video else {}),
    }


def video_counts(store: Store) -> dict[str, dict[str, int]]:
    """Images per channel of every stored (video, modality): frames for rgb, flows for flow."""
    out: dict[str, dict[str, int]] = {}
    for (vid, mod), entry in sorted(store.index.items()):
        out.setdefault(vid, {})[mod] = entry.meta.count
    return out


def format_info(info: dict) -> str:
    """The human-readable form of :func:`store_info`."""
    lines = [f"store      {info['root']}",
             f"shards     {len(info['shards'])} of {info['num_shards']}"
             + (f" (missing: {info['shards_missing']})" if info["shards_missing"] else ""),
             f"size       {info['bytes'] / 2**20:.1f} MiB on disk",
             f"videos     {info['videos']}"]
    for mod, m in sorted(info["modalities"].items()):
        kind = "flows" if modalities.get(mod).is_flow else "frames"
        lines.append(f"{mod:<10} {m['videos']} videos, {m['images_per_channel']} {kind}"
                     f" ({m['images_per_channel'] / max(m['videos'], 1):.1f} per video)")
        for p in m["parameters"]:
            shown = {k: v for k, v in p.items() if k not in ("videos", "tsn_prep_version")}
            lines.append(f"           {p['videos']} with {json.dumps(shown, sort_keys=True)}")
    lines.append(f"failures   {len(info['failures'])}")
    for f in info["failures"]:
        lines.append(f"  {f['source']} [{f['modality']}]: {f['error']}")
    if info["warnings"]:
        lines.append(f"warnings   {len(info['warnings'])}")
        for w in info["warnings"]:
            lines.append(f"  {w['video_id']} [{w['modality']}]: {w['warning']}")
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
    return [{"video_id": vid, "modality": mod, "warning": e.meta.warning}
            for (vid, mod), e in sorted(store.index.items()) if e.meta.warning]
