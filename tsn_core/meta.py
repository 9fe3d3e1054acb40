"""A stored entry's metadata: the JSON value of a store's ``meta`` key ``<id>|<modality>``, read and
written only through ``EntryMeta`` (docs/format.md, "meta"); and the store format's version."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, Optional

FORMAT_VERSION = 2  # of the store as a whole, recorded in each shard's ``info``; 2: the compact index


@dataclass(frozen=True)
class EntryMeta:
    """What a store records about one (video, modality). Fields that are None are not written (an
    entry from an import has no ``num_frames``, one from an extraction no ``imported_from``);
    keys this version does not know are kept in ``extra``, so reading and rewriting loses none."""

    modality: Optional[str] = None
    count: Optional[int] = None                   # images per channel (N frames, N-1 flows)
    channels: Optional[tuple[str, ...]] = None    # the modality's channels, in order
    source: Optional[str] = None                  # the video file (or imported folder) it came from
    stored_size: Optional[tuple[int, ...]] = None  # width, height of the stored images
    parameters: Optional[dict] = None             # the settings that decide its bytes (ExtractParams)
    num_frames: Optional[int] = None              # frames decoded
    fps: Optional[float] = None
    source_size: Optional[tuple[int, ...]] = None  # width, height of the video
    declared_frames: Optional[int] = None         # what the container says it holds
    decoder: Optional[str] = None                 # the decoder that read it (opencv, pyav)
    warning: Optional[str] = None                 # e.g. a truncated file: it decoded only in part
    imported_from: Optional[str] = None           # import-frames: the folder
    naming: Optional[dict] = None                 # import-frames: the file naming found
    video_id: Optional[str] = None                # the full id, when the keys hold a shorter form
    stored_at: Optional[float] = None             # time.time() of the writing transaction
    checksum: Optional[str] = None                # the name of the images' checksum (crc32)
    extra: dict = field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, d: dict) -> "EntryMeta":
        # Every training process reads every entry when it opens a store: keep this lean.
        values = {k: v for k, v in d.items() if k in _NAMES}
        for k in _TUPLES:
            v = values.get(k)
            if v is not None:
                values[k] = tuple(v)
        extra = {k: v for k, v in d.items() if k not in _NAMES} if len(values) < len(d) else {}
        return cls(**values, extra=extra)

    @classmethod
    def from_json(cls, data: bytes) -> "EntryMeta":
        return cls.from_dict(json.loads(data))

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.extra)
        for name in _NAMES:
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value) if name in _TUPLES else value
        return out

    def to_json(self) -> bytes:
        """The stored bytes: sorted keys, so equal records are equal bytes."""
        return json.dumps(self.to_dict(), sort_keys=True).encode()


_NAMES = frozenset(f.name for f in fields(EntryMeta)) - {"extra"}
_TUPLES = ("channels", "stored_size", "source_size")  # JSON lists, kept as tuples
