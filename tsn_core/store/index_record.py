"""The compact index (format 2): ``entries`` holds, under each ``meta`` key, the few fields every
process that opens a store needs, in 18 bytes: images per channel, frames decoded (-1: not
recorded), the id of its parameter set (``params``: id -> the parameters' JSON, each distinct set
once), flags, the modality. Millions of entries open in seconds without parsing their JSON."""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Optional

from tsn_core import modalities
from tsn_core.errors import Damaged
from tsn_core.meta import EntryMeta

from .checksums import CHECKSUM

RECORD = struct.Struct("<IiQBB")
DTYPE = [("count", "<u4"), ("frames", "<i4"), ("params", "<u8"), ("flags", "u1"), ("modality", "u1")]
FLAG_CHECKSUM, FLAG_WARNING, FLAG_IMPORTED = 1, 2, 4
MODALITY_SUFFIX = [f"|{m}".encode() for m in modalities.STORED]  # an entry key's end, per code


def parameters_key(parameters: Optional[dict]) -> tuple[bytes, bytes]:
    """(``params`` key, value) of a parameter set: the first 8 bytes of the SHA-1 of its JSON with
    sorted keys, and that JSON. Equal parameters get the same key in every shard and writer."""
    data = json.dumps(parameters or {}, sort_keys=True).encode("utf-8")
    return hashlib.sha1(data).digest()[:8], data


def compact_entry(meta: EntryMeta, modality: str) -> tuple[bytes, bytes, bytes]:
    """(``entries`` value, ``params`` key, ``params`` value) of one entry's metadata."""
    pkey, pvalue = parameters_key(meta.parameters)
    flags = ((FLAG_CHECKSUM if meta.checksum == CHECKSUM else 0) | (FLAG_WARNING if meta.warning else 0)
             | (FLAG_IMPORTED if meta.imported_from is not None else 0))
    frames = -1 if meta.num_frames is None else meta.num_frames
    return (RECORD.pack(meta.count or 0, frames, int.from_bytes(pkey, "little"), flags,
                        modalities.STORED.index(modality)), pkey, pvalue)


def fits_key(key: bytes, value: bytes) -> bool:
    """Whether ``value`` can be the index record of ``key``: its size, and the modality it names
    is the one the key ends in."""
    return (len(value) == RECORD.size and value[-1] < len(MODALITY_SUFFIX)
            and key.endswith(MODALITY_SUFFIX[value[-1]]))


def check_parameters(path: Path, params: dict[bytes, bytes]) -> None:
    """Damaged unless every parameter set of a shard is keyed by its own hash (``parameters_key``):
    a changed byte in one shows."""
    for pkey, pvalue in params.items():
        try:
            same = parameters_key(json.loads(pvalue))[0] == pkey
        except ValueError:
            same = False
        if not same:
            raise Damaged(str(path), "a recorded parameter set does not match its key: its bytes "
                                     "have changed")
