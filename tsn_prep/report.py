"""What is in a store (`info`) and whether all of it is readable and intact (`verify`)."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Optional

from tsn_core import modalities
from tsn_core.codec import decode_image
from .store import CHECKSUM, Store, StoreError, checksum_problem, has_checksums

# `tsn-prep verify`'s exit status. 2 is left to click: a usage error, e.g. OUT does not exist.
EXIT_OK = 0  # every image intact, counts right, no recorded failures
EXIT_DAMAGED = 1  # some image or metadata is wrong (whatever failures are recorded besides)
EXIT_FAILURES = 3  # nothing damaged, but some extractions failed and were recorded
EXIT_WARNINGS = 4  # nothing damaged or failed, but some videos were stored with a warning


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


@dataclass(frozen=True)
class Verification:
    """What `verify` found: the problems (damage), the recorded failures, and how many entries
    carry no checksums (written before they were recorded: decoded and counted, not compared)."""

    entries: int
    problems: list[str]
    failures: list[dict]
    unchecked: int
    warnings: list[dict] = field(default_factory=list)  # entries stored with a warning

    @property
    def exit_code(self) -> int:
        if self.problems:
            return EXIT_DAMAGED
        return EXIT_FAILURES if self.failures else EXIT_WARNINGS if self.warnings else EXIT_OK

    def note(self) -> Optional[str]:
        if not self.unchecked:
            return None
        return (f"note: {self.unchecked} of {self.entries} entries carry no checksums (written before "
                f"tsn-prep recorded them): their images were decoded and counted, but a changed byte "
                f"that still decodes goes unnoticed there")

    def summary(self) -> str:
        """The last line: counts, then the verdict, which the exit code repeats."""
        line = (f"{self.entries} entries checked, {len(self.problems)} problems, "
                f"{len(self.failures)} recorded failures")
        if self.warnings:
            line += f", {len(self.warnings)} stored with warnings"
        verdict = {EXIT_OK: "OK", EXIT_DAMAGED: "DAMAGED", EXIT_FAILURES: "FAILURES RECORDED, no damage",
                   EXIT_WARNINGS: "WARNINGS RECORDED, no damage"}
        return f"{line}: {verdict[self.exit_code]}"


def stored_warnings(store: Store) -> list[dict]:
    """``{"video_id", "modality", "warning"}`` of every entry stored with a warning, in id order."""
    return [{"video_id": vid, "modality": mod, "warning": e.meta.warning}
            for (vid, mod), e in sorted(store.index.items()) if e.meta.warning]


def verify(store: Store, progress: Optional[Callable[[int], None]] = None) -> Verification:
    """Everything `tsn-prep verify` reports: :func:`verify_store`, recorded failures, entries
    without checksums. Metadata that does not parse is damage too."""
    try:
        index = store.index
    except StoreError as exc:
        return Verification(0, [str(exc)], store.failures(), 0)
    return Verification(len(index), verify_store(store, progress), store.failures(),
                        sum(not has_checksums(e.meta) for e in index.values()), stored_warnings(store))


def verify_store(store: Store, progress: Optional[Callable[[int], None]] = None) -> list[str]:
    """Decode every stored image, compare it with the checksum recorded when it was written (entries
    that have them) and check counts against the metadata; returns the problems."""
    problems = []
    seen: Counter = Counter()
    sizes = {key: tuple(e.meta.stored_size or ()) for key, e in store.index.items()}
    sums: dict[tuple[str, str], Optional[bytes]] = {}  # the channel being read: one lookup each
    for shard, vid, channel, idx, data in store.iter_images():
        modality = modalities.CHANNEL_MODALITY.get(channel)
        entry = store.index.get((vid, modality))
        where = f"{store.shard_paths[shard].name}: {vid} {channel} {idx}"
        if entry is None:
            problems.append(f"{where}: image without a complete entry (orphan)")
            continue
        if idx >= entry.meta.count:
            problems.append(f"{where}: index beyond the recorded count {entry.meta.count}")
        if entry.shard != shard:
            problems.append(f"{where}: stored in the wrong shard (entry in shard {entry.shard})")
        image = decode_image(data)
        if image is None:
            problems.append(f"{where}: does not decode as an image")  # says more than its checksum
        elif has_checksums(entry.meta):  # catches what decoding misses: changed bytes that decode
            if (vid, channel) not in sums:
                sums = {(vid, channel): store.checksums(vid, channel)}
            recorded = sums[(vid, channel)]
            problem = None if recorded is None else checksum_problem(data, recorded, idx)
            if problem:
                problems.append(f"{where}: {problem}")
        if image is not None and sizes[(vid, modality)] and image.shape[1::-1] != sizes[(vid, modality)]:
            problems.append(f"{where}: {image.shape[1]}x{image.shape[0]}, "
                            f"metadata says {sizes[(vid, modality)][0]}x{sizes[(vid, modality)][1]}")
        seen[(vid, channel)] += 1
        if progress is not None:
            progress(1)
    for (vid, modality), entry in sorted(store.index.items()):
        count = entry.meta.count
        for channel in modalities.get(modality).channels:
            if seen[(vid, channel)] != count:
                problems.append(f"{vid} {channel}: {seen[(vid, channel)]} images, metadata says {count}")
            if has_checksums(entry.meta):
                recorded = store.checksums(vid, channel) or b""
                if len(recorded) != 4 * count:
                    problems.append(f"{vid} {channel}: {len(recorded) // 4} {CHECKSUM} checksums stored, "
                                    f"metadata says {count} images")
        n = entry.meta.num_frames
        expected = (None if n is None or entry.meta.imported_from is not None
                    else modalities.get(modality).images_per_video(n))
        if expected is not None and count != expected:
            problems.append(f"{vid} {modality}: {count} images for {n} decoded frames (expected {expected})")
    return problems
