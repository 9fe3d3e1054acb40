"""Upkeep of a store that ``tsn-prep`` commands do besides extracting: which recorded failures to
forget and forgetting them shard by shard (``clear-failures``), whether a failure's source is
gone, and how to mend a damaged shard (``verify``)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from tsn_core.store import Failure, Store

from .writer import ShardWriter


def source_gone(source: str) -> Optional[bool]:
    """Whether a failure's recorded source no longer exists; None when the record cannot say: a
    relative path, written before sources were recorded absolute."""
    if not os.path.isabs(source):
        return None
    return not os.path.lexists(source)


def repair_hint(store: Store, shard: int) -> str:
    """How to mend a damaged shard (docs/format.md, "A damaged shard")."""
    path = store.shard_paths[shard]
    return (f"restore {path} from a copy, or move it aside (mv {path} {store.root}.damaged-{path.name}) "
            f"and run your extraction commands again with --shard-index {shard} --num-shards "
            f"{store.num_shards}: they extract exactly this shard's videos")


@dataclass(frozen=True)
class FailureChoice:
    """The failure records ``choose_failures`` picked out of ``recorded``."""

    recorded: list[Failure]
    chosen: list[Failure]
    undecided: list[Failure]  # --gone cannot tell: a relative source, written before sources were absolute
    unknown: set[str]      # video ids asked for that have no failure recorded


def choose_failures(recorded: list[Failure], video_ids: Iterable[str], gone: bool, everything: bool) -> FailureChoice:
    """The records of ``video_ids``, with ``gone`` those whose source no longer exists, or with
    ``everything`` all of them."""
    wanted = set(video_ids)
    chosen = [f for f in recorded
              if everything or f.video_id in wanted or (gone and source_gone(f.source) is True)]
    undecided = [f for f in recorded if gone and f not in chosen and source_gone(f.source) is None]
    return FailureChoice(recorded, chosen, undecided, wanted - {f.video_id for f in recorded})


def forget_failures(out: Path, store: Store, failures: list[Failure]) -> None:
    """Forget ``failures`` in the store at ``out``: one writer per shard, each record in its own
    transaction. Raises StoreError or DiskFull."""
    by_shard: dict[int, list[Failure]] = {}
    for f in failures:
        by_shard.setdefault(f.shard, []).append(f)
    for shard, records in sorted(by_shard.items()):
        writer = ShardWriter(out, shard, store.num_shards)
        try:
            for f in records:
                writer.clear_failure(f.video_id, f.modality)
        finally:
            writer.close()
