"""The JSON records of a store: a meta entry read as :class:`~tsn_core.meta.EntryMeta`, and a
recorded extraction failure as :class:`Failure`. A record that is not what its database holds is
damage of its shard."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from tsn_core.errors import Damaged
from tsn_core.meta import EntryMeta
from tsn_core.text import shown

from .keys import full_id, split_entry_key

FOLDER_FAILURE = "folder"  # a failure record's "kind": a folder that could not be listed


def parse_record(path: Path, key: bytes, value: bytes) -> dict:
    """A meta entry's (or failure's) JSON object; one that is not a JSON object is damage of the
    shard at ``path``."""
    try:
        record = json.loads(value)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        kvid, mod = split_entry_key(key)
        raise Damaged(str(path), f"the meta entry of {shown(kvid)} {mod} is not JSON")
    return record


def parse_meta(path: Path, key: bytes, value: bytes, video_id: Optional[str] = None) -> EntryMeta:
    """The meta entry stored under ``key`` (of ``video_id``, default the key's id); one that is
    not a meta record is damage."""
    record = parse_record(path, key, value)
    try:
        return EntryMeta.from_dict(record)
    except (TypeError, ValueError, AttributeError):
        kvid, mod = split_entry_key(key)
        raise Damaged(str(path), f"the meta entry of {shown(video_id or kvid)} {mod} is not a "
                                 "meta record") from None


@dataclass(frozen=True)
class Failure:
    """One recorded extraction failure (``failures``: ``<id>|<modality>`` -> its JSON): the video
    (or, ``kind`` FOLDER_FAILURE, a folder of VIDEOS that could not be listed, by its path relative
    to VIDEOS), the modality, the shard that holds the record, the source file and the error."""

    video_id: str
    modality: str
    shard: int
    source: str
    error: str
    time: Optional[float] = None   # time.time() when it was recorded
    kind: Optional[str] = None     # FOLDER_FAILURE, or None for a video

    @classmethod
    def from_record(cls, path: Path, key: bytes, value: bytes, shard: int) -> "Failure":
        """The failure stored under ``failures`` key ``key`` in the shard at ``path``."""
        kvid, modality = split_entry_key(key)
        record = parse_record(path, key, value)
        try:
            return cls(full_id(kvid, record), modality, shard, record["source"], record["error"],
                       record.get("time"), record.get("kind"))
        except KeyError:
            raise Damaged(str(path), f"the failure record of {shown(kvid)} {modality} is not a "
                                     "failure record") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (`tsn-prep info --json`): the fields, ``time`` and ``kind`` where set."""
        out: dict[str, Any] = {"source": self.source, "error": self.error}
        if self.time is not None:
            out["time"] = self.time
        if self.kind is not None:
            out["kind"] = self.kind
        return dict(out, video_id=self.video_id, modality=self.modality, shard=self.shard)
