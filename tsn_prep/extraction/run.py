"""Runs an extraction job over many videos: shard filter, resume, workers, progress, failures."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import lmdb
from tqdm import tqdm

from tsn_core.progress import Rates, bar as progress_bar
from tsn_core.text import shown

from tsn_core.diskspace import DiskFull
from tsn_core.store import FOLDER_FAILURE
from tsn_core.store.shards import shard_of
from tsn_core.video_files import VideoItem, list_videos

from ..writer import ShardWriter
from .params import ExtractParams, parameter_differences
from .plan import RunPlan
from .results import VideoResult
from .scheduler import Job, engine_results


@dataclass
class RunSummary:
    total: int = 0        # videos of this shard
    skipped: int = 0      # already complete for every requested modality
    done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, error)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # stored, with a warning
    unlisted: list[tuple[str, str]] = field(default_factory=list)  # folders that cannot be listed
    replaced: int = 0     # stored with other settings, recomputed (--recompute)
    pairs: int = 0
    frames: int = 0
    seconds: float = 0.0


class SettingsConflict(Exception):
    """Videos of this shard are already stored with other settings than the ones asked for."""


def _say(line: str) -> None:
    tqdm.write(line, file=sys.stderr)


def run_extraction(videos: Path, out: Path, params: ExtractParams, plan: RunPlan = RunPlan(),
                   shard_index: int = 0, num_shards: int = 1, progress: bool = True,
                   recompute: bool = False, strict: bool = False) -> RunSummary:
    """Extract ``params.modalities`` for the videos of one shard into ``out``, as ``plan`` says
    (``scheduler`` does the work); resumable.

    A video is skipped when every requested modality is already complete with the same settings;
    otherwise only its missing modalities are computed. A video stored with other settings stops
    the run before any work (SettingsConflict, naming what differs) unless ``recompute``: then it
    is computed again and replaces the stored one in one transaction. A failure is printed,
    recorded in the store and the run goes on; so is a video that decodes with a warning (e.g. a
    truncated file), stored with the warning in its metadata, or with ``strict`` a failure.
    """
    start = time.perf_counter()
    listing = list_videos(videos)
    writer = ShardWriter(out, shard_index, num_shards)
    summary = RunSummary()
    results = None
    try:
        mine = lambda vid: shard_of(vid, num_shards) == shard_index  # noqa: E731
        for note in listing.notes:
            _say(f"note: {note}")
        _record_unlisted(writer, summary, listing.unlisted, params.modalities, mine)
        for item, problem in listing.rejected:
            if mine(item.id):
                summary.total += 1
                _record_failure(writer, summary, item, params.modalities, problem)

        # JSON's view of the parameters, as the stored ones read back (lists, not tuples); the
        # backend that runs is recorded but not compared (NOT_COMPARED), so none is resolved here
        asked = {m: json.loads(json.dumps(params.parameters(m))) for m in params.modalities}
        todo: list[Job] = []
        conflicts: dict[tuple[str, ...], list[str]] = {}  # differences -> "video [modality]"
        for item in (i for i in listing.items if mine(i.id)):
            summary.total += 1
            missing = []
            for m in params.modalities:
                stored = writer.stored_meta(item.id, m)
                differences = None if stored is None else parameter_differences(
                    stored.parameters or {}, asked[m])
                if stored is None:
                    missing.append(m)
                elif differences and recompute:
                    missing.append(m)
                    summary.replaced += 1
                elif differences:
                    conflicts.setdefault(tuple(differences), []).append(f"{item.id} [{m}]")
            if missing:
                todo.append(Job(item, tuple(missing)))
            else:
                summary.skipped += 1
        if conflicts:
            raise SettingsConflict(_conflict_message(out, conflicts))

        wanted = {job.item.id: job.modalities for job in todo}
        bar = progress_bar(total=len(todo), unit="video", quiet=not progress,
                           desc=f"shard {shard_index}/{num_shards}" if num_shards > 1 else "videos")
        inside = Rates(bar, "frames", "pairs")  # a long video moves the bar within seconds
        # In completion order: a slow video does not hold back the writes of the ones after it.
        results = engine_results(todo, params, plan, say=_say, progress=inside.add)
        for result in results:
            meta = next(iter(result.meta.values()), None)  # video-level fields are in every modality's
            warning = meta.warning if meta else None
            if result.error:
                _record_failure(writer, summary, result.item, wanted[result.item.id], result.error)
            elif warning and strict:
                _record_failure(writer, summary, result.item, wanted[result.item.id],
                                f"{warning} (--strict: not stored)")
            elif _store(writer, summary, result, wanted[result.item.id]):
                summary.done += 1
                summary.pairs += result.pairs
                summary.frames += meta.num_frames
                if warning:
                    summary.warnings.append((str(result.item.path), warning))
                    _say(f"warning: {shown(result.item.path)}: {shown(warning)} (stored; --strict makes "
                         "this a failure)")
            bar.set_postfix_str(inside.text(), refresh=False)
            bar.update(1)
        bar.close()
    finally:
        if results is not None:
            results.close()  # the engine's workers and threads end now
        writer.close()
    summary.seconds = time.perf_counter() - start
    return summary


def _store(writer: ShardWriter, summary: RunSummary, result: VideoResult,
           modalities: tuple[str, ...]) -> bool:
    """Write one video's modalities; a video the store refuses (not a full disk: that ends the run,
    everything stored so far kept) is this video's failure, and the others go on."""
    stored = []
    for modality, images in result.images.items():
        try:
            writer.put_video(result.item.id, modality, images, result.meta[modality])
        except DiskFull:
            raise
        except (lmdb.Error, OSError, ValueError, TypeError) as exc:
            left = tuple(m for m in modalities if m not in stored)
            _record_failure(writer, summary, result.item, left,
                            f"could not be stored ({type(exc).__name__}: {exc})")
            return False
        stored.append(modality)
    return True


def _conflict_message(out: Path, conflicts: dict[tuple[str, ...], list[str]]) -> str:
    n = sum(map(len, conflicts.values()))
    lines = [f"{out}: {n} stored video entr{'y is' if n == 1 else 'ies are'} of other settings than "
             "this command's, so this run would not make them:"]
    for differences, entries in conflicts.items():
        shown = ", ".join(entries[:3]) + (f", ... ({len(entries)} in all)" if len(entries) > 3 else "")
        lines.append(f"  {'; '.join(differences)}: {shown}")
    lines.append("Extract into a new OUT, or add --recompute to replace those videos (each one "
                 "atomically, once its new images are complete).")
    return "\n".join(lines)


def _record_unlisted(writer: ShardWriter, summary: RunSummary, unlisted: list[tuple[str, Path, str]],
                     modalities: tuple[str, ...], mine) -> None:
    """Folders that cannot be listed fail every shard's run (their videos could be anyone's); the
    shard their path hashes to records them, and forgets them once they can be listed."""
    writer.clear_folder_failures(keep={rel for rel, _, _ in unlisted})
    for rel, path, reason in unlisted:
        summary.unlisted.append((str(path), reason))
        _say(f"error: {shown(path)}: {shown(reason)}")
        if mine(rel):
            for m in modalities:
                writer.put_failure(rel, m, os.path.abspath(path), reason, kind=FOLDER_FAILURE)


def _record_failure(writer: ShardWriter, summary: RunSummary, item: VideoItem,
                    modalities: tuple[str, ...], error: str) -> None:
    summary.failed.append((str(item.path), error))
    _say(f"error: {shown(item.path)}: {shown(error)}")
    for m in modalities:
        try:  # the source as an absolute path: `clear-failures --gone` tests it from anywhere
            writer.put_failure(item.id, m, os.path.abspath(item.path), error)
        except DiskFull:
            raise
        except lmdb.Error as exc:
            _say(f"error: {shown(item.path)}: the failure could not be recorded either ({exc})")
