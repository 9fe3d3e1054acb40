"""A store's shards: which shard a video belongs to, how shard directories are named, the named
databases each holds, and the layout record that says which shard a directory was written as."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Optional

from tsn_core.errors import Damaged
from tsn_core.text import utf8

SHARD_RE = re.compile(r"^shard-(\d{5})-of-(\d{5})$")
DATABASES = (b"images", b"meta", b"failures", b"info", b"checksums", b"entries", b"params")
# Stores written before checksums were recorded lack ``checksums``; readers treat it as empty.
# Stores of format 1 lack ``entries`` and ``params``: their index is read from ``meta``.
OPTIONAL_DATABASES = (b"checksums", b"entries", b"params")
LAYOUT_KEY = b"layout"  # ``info`` key of the layout record


def shard_of(video_id: str, num_shards: int) -> int:
    """The shard a video belongs to: first 8 bytes of SHA-1 of its UTF-8 id, big-endian, mod N.

    Depends on the id alone, so every array job agrees on the split without talking to the others.
    An id of a file name that is not UTF-8 (it is a recorded failure, never a video) hashes its
    bytes as the file system has them.
    """
    digest = hashlib.sha1(utf8(video_id)).digest()
    return int.from_bytes(digest[:8], "big") % num_shards


def shard_name(index: int, num_shards: int) -> str:
    return f"shard-{index:05d}-of-{num_shards:05d}"


def list_shards(root: Path) -> list[tuple[int, int, Path]]:
    """(index, num_shards, path) of every shard directory under ``root``, sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = SHARD_RE.match(p.name)
        if m and p.is_dir():
            found.append((int(m.group(1)), int(m.group(2)), p))
    return sorted(found)


def layout_record(shard_index: int, num_shards: int, version: int) -> dict:
    """The ``info`` record ``layout`` a writer keeps in each shard: the format and which shard of
    how many the directory is."""
    return {"format": "tsn-store", "version": version, "shard_index": shard_index, "num_shards": num_shards}


def check_layout(path: Path, layout: Optional[bytes]) -> None:
    """Damaged when the layout record of the shard at ``path`` names another shard (a directory
    renamed or copied to the wrong name) or is not JSON; a shard without one passes."""
    m = SHARD_RE.match(Path(path).name)
    if not m or layout is None:
        return
    try:
        record = json.loads(layout)
        recorded = (int(record["shard_index"]), int(record["num_shards"]))
    except (ValueError, KeyError, TypeError):
        raise Damaged(str(path), "its layout record is not JSON") from None
    if recorded != (int(m.group(1)), int(m.group(2))):
        raise Damaged(str(path), f"it was written as {shard_name(*recorded)} (its layout record): "
                                 "a shard directory renamed or copied under another name")
