"""The checksum of every stored image and record.

Its name, as recorded in each meta entry's "checksum" field (absent in entries written before
checksums were recorded), and the function: CRC-32 as zlib, gzip and PNG compute it. It catches
every 1-bit and every burst error up to 32 bits, costs about 8 us per 19 KiB JPEG (2.3 GiB/s;
docs/format.md has the measurements) and any language has it.
"""
from __future__ import annotations

import struct
import zlib
from typing import Optional

from tsn_core.errors import StoreError
from tsn_core.meta import EntryMeta

CHECKSUM = "crc32"


class ChecksumError(StoreError):
    """A stored image whose bytes no longer match the checksum recorded when it was written."""


def checksum(data: bytes) -> int:
    """The checksum recorded for an image's stored bytes: CRC-32, unsigned."""
    return zlib.crc32(data)


def pack_checksums(images: list[bytes]) -> bytes:
    """The ``checksums`` value of one channel: each image's CRC-32 as 4 bytes, big-endian, in index
    order."""
    return struct.pack(f">{len(images)}I", *map(checksum, images))


def record_checksum(value: bytes) -> bytes:
    """The ``checksums`` value of a record: its CRC-32, 4 bytes, big-endian."""
    return struct.pack(">I", checksum(value))


def has_checksums(meta: EntryMeta) -> bool:
    """Whether an entry's images have checksums this version can check (stores written before
    checksums were recorded have entries without)."""
    return meta.checksum == CHECKSUM


def checksum_problem(data: bytes, sums: bytes, index: int) -> Optional[str]:
    """What is wrong with image ``index`` given its channel's ``checksums`` value, or None."""
    if len(sums) < 4 * (index + 1):
        return f"no checksum recorded ({len(sums) // 4} for this channel)"
    recorded = int.from_bytes(sums[4 * index: 4 * index + 4], "big")
    actual = checksum(data)
    if actual != recorded:
        return (f"checksum mismatch ({CHECKSUM} {actual:08x}, recorded {recorded:08x} when written): "
                f"the stored bytes have changed")
    return None
