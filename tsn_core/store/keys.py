"""The store's keys: how a video id, a channel and an image index become LMDB keys, and back.

``images``: ``<id>|<channel>|<index:06d>``; ``meta``, ``failures`` and ``entries``:
``<id>|<modality>``; ``checksums``: ``<id>|<channel>`` (an image channel), ``<id>|<modality>`` (a
meta entry's CRC-32) or ``<id>|<modality>|failure``. An id too long for a key, or a name no video
id may be, is keyed by a shorter form (:func:`key_id`); its records keep the full id under
``video_id``. docs/format.md has the byte-level layout.
"""
from __future__ import annotations

import hashlib

from tsn_core.text import shown, utf8

# LMDB keys are at most 511 bytes, and the longest key is ``<id>|warped_flow_x|<index>``. An id of
# more UTF-8 bytes than this is keyed by a shorter form (see ``key_id``); its entries keep the id.
MAX_KEY_ID_BYTES = 400
MAX_KEY_BYTES = 511  # LMDB's
KEY_HASH = "|sha1:"  # '|' never occurs in a video id (check_id), so a key form matches no real id


def key_id(video_id: str) -> str:
    """The form of ``video_id`` in store keys: the id itself, or for an id longer than
    MAX_KEY_ID_BYTES, its first bytes (whole characters) then ``|sha1:`` and the SHA-1 of all of
    it. The same for a name no video id may be (``tsn_core.video_files.check_id``), which only a failure
    record keys: bytes that are not UTF-8, '|' or a newline; its printable form then ``|sha1:`` and
    the SHA-1 of its bytes. Entries and failures so keyed record the full id under ``video_id``."""
    try:
        raw = video_id.encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not UTF-8
        raw = None
    if raw is not None and len(raw) <= MAX_KEY_ID_BYTES and "|" not in video_id and "\n" not in video_id:
        return video_id
    keep = shown(video_id).replace("|", "/").encode("utf-8")[:MAX_KEY_ID_BYTES - len(KEY_HASH) - 40]
    return f"{keep.decode('utf-8', 'ignore')}{KEY_HASH}{hashlib.sha1(utf8(video_id)).hexdigest()}"


def is_key_form(key_vid: str) -> bool:
    """Whether a key's id field is the shorter form of a longer id (its record holds the id)."""
    return KEY_HASH in key_vid


def image_key(video_id: str, channel: str, index: int) -> bytes:
    return f"{key_id(video_id)}|{channel}|{index:06d}".encode("utf-8")


def entry_key(video_id: str, modality: str) -> bytes:
    return f"{key_id(video_id)}|{modality}".encode("utf-8")


def checksums_key(video_id: str, channel: str) -> bytes:
    """The ``checksums`` key of one video's channel: ``<video_id>|<channel>``."""
    return entry_key(video_id, channel)


def record_checksum_key(video_id: str, modality: str, failure: bool = False) -> bytes:
    """The ``checksums`` key of the CRC-32 of a meta entry (``<id>|<modality>``) or of a failure
    record (``<id>|<modality>|failure``). No channel is named like a modality and no channel key
    has three fields, so these never meet an image channel's key."""
    return entry_key(video_id, modality) + (b"|failure" if failure else b"")


def failure_checksum_key(key: bytes) -> bytes:
    """The ``checksums`` key of the failure record stored under ``failures`` key ``key``."""
    return key + b"|failure"


def split_entry_key(key: bytes) -> tuple[str, str]:
    """``(key id, modality)`` of a meta or failures key; the key id is the video id unless it was
    too long for a key (then the entry's ``video_id`` field holds it)."""
    video_id, modality = key.decode("utf-8").rsplit("|", 1)
    return video_id, modality


def split_image_key(key: bytes) -> tuple[str, str, int]:
    """``(key id, channel, index)`` of an ``images`` key."""
    vid, channel, idx = key.decode("utf-8").rsplit("|", 2)
    return vid, channel, int(idx)


def full_id(key_vid: str, record: dict) -> str:
    """The video id of a meta or failure record stored under ``key_vid``."""
    return record.get("video_id", key_vid) if KEY_HASH in key_vid else key_vid


def with_full_id(video_id: str, record: dict) -> dict:
    """``record`` plus the full ``video_id`` when the keys hold a shorter form of it."""
    return dict(record, video_id=video_id) if key_id(video_id) != video_id else record
