"""The `tsn-prep` command: videos -> frames and flow in LMDB shards, and tools around the store."""
from __future__ import annotations

import functools
import json
import sys
from collections import Counter
from pathlib import Path

import click
import lmdb
from tqdm import tqdm

from . import __version__
from tsn_core.diskspace import DiskFull
from .cli_options import EXTRACT, QUIET_HELP, BatchPairs, ExtractJob, extract_options, shard_options
from .extraction.backends import ALGORITHMS, BACKENDS, BackendUnavailable
from .extraction.solver_choice import checked_plan
from .extraction.batch_size import AUTO_MAX_BATCH, AUTO_MEMORY_FRACTION
from .extraction.params import ExtractParams
from .folders import (PREFIXES, Naming, accepted_prefixes, channel_prefixes, export_store, import_tree,
                      write_rawframe_lists)
from tsn_core import interrupts
from tsn_core.command import group
from tsn_core.meta import FORMAT_VERSION
from tsn_core.options import DeviceList, record_options
from tsn_core.progress import bar as progress_bar
from tsn_core.text import shown
from tsn_core.modalities import FLOW, STORED
from .extraction.plan import RunPlan
from .report import format_info, store_info
from .extraction.run import RunSummary, SettingsConflict, run_extraction
from tsn_core.errors import StoreError
from tsn_core.store import Store
from .extraction.tvl1_params import TVL1Params
from .writer import ShardWriter
from .upkeep import FailureChoice, choose_failures, forget_failures, repair_hint, source_gone
from .verify import EXIT_DAMAGED, EXIT_FAILURES, EXIT_OK, EXIT_WARNINGS, verify
from tsn_core.video_files import ListingError
from .extraction.warp import WarpParams


def _run(job: ExtractJob, params: ExtractParams, plan: RunPlan) -> None:
    out = job.out
    interrupts.safe(f"finished videos are safe in {out}; re-run the same command to do the rest")
    try:
        summary = run_extraction(job.videos, out, params, plan, job.shard_index, job.num_shards,
                                 progress=not job.quiet, recompute=job.recompute, strict=job.strict)
    except (StoreError, BackendUnavailable, ListingError, SettingsConflict, DiskFull) as exc:
        raise click.ClickException(str(exc)) from None
    except lmdb.Error as exc:
        raise click.ClickException(f"{out}: writing the store failed ({exc}); the videos stored "
                                   "so far are kept, and re-running the same command does the "
                                   "rest") from None
    _finish(summary, out)


def _finish(summary: RunSummary, out: Path) -> None:
    warned = f" ({len(summary.warnings)} with warnings)" if summary.warnings else ""
    replaced = f", {summary.replaced} entries replaced (--recompute)" if summary.replaced else ""
    click.echo(f"{summary.done} extracted{warned}, {summary.skipped} already complete, "
               f"{len(summary.failed)} failed, of {summary.total} videos in this shard{replaced} "
               f"({summary.seconds:.1f} s) -> {out}", err=True)
    if summary.warnings:
        click.echo(f"{len(summary.warnings)} video(s) stored with a warning (see above; counted by "
                   f"`tsn-prep info {out}` and `verify`); --strict makes them failures.", err=True)
    if summary.unlisted:
        click.echo(f"{len(summary.unlisted)} folder(s) could not be listed (see above): their videos "
                   "are missing; fix the permissions and re-run the same command.", err=True)
    if summary.failed:
        click.echo(f"{len(summary.failed)} video(s) failed; see above or `tsn-prep info {out}`; "
                   "fix them and re-run the same command to finish.", err=True)
    if summary.failed or summary.unlisted:
        sys.exit(1)


@group()
@click.version_option(__version__, prog_name="tsn-prep")
def main():
    """Turn videos into RGB frames, TV-L1 optical flow and warped flow, stored as JPEGs in LMDB shards.

    VIDEOS is a directory (searched recursively), one video file, or a text file of paths. A video's
    id is its path relative to that directory without the extension, e.g.
    ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01 (a single file: its name without the extension).
    Every extraction is resumable: re-run the same command and finished videos are skipped.
    """


@main.command("extract-frames", short_help="Extract RGB frames of VIDEOS into the store OUT.")
@extract_options()
def extract_frames_cmd(job: ExtractJob):
    """Extract RGB frames of VIDEOS into the store OUT (N frames per N-frame video)."""
    _run(job, job.params(modalities=("rgb",)), job.plan())


@main.command("extract-flow", short_help="Compute TV-L1 flow (and warped flow) of VIDEOS into OUT.")
@extract_options(flow=True)
@click.option("--modality", "modalities", type=click.Choice(FLOW), multiple=True,
              help="flow (TV-L1) and/or warped_flow (camera motion removed); repeat for both, "
                   "computed from one decode pass.  [default: flow]")
@click.option("--bound", type=click.FloatRange(min=0, min_open=True), default=EXTRACT.bound, show_default=True,
              help="Clip flow to +-BOUND px before mapping it to 0..255 (zero motion -> 128).")
@click.option("--algorithm", type=click.Choice(list(ALGORITHMS)), default=EXTRACT.algorithm,
              show_default=True,
              help="Flow algorithm: " + "; ".join(f"{k}: {v}" for k, v in ALGORITHMS.items())
                   + ". The TV-L1 options below apply to tvl1 only. Recorded per video.")
@click.option("--gpu", "gpus", type=DeviceList(), default=None,
              help="CUDA device(s) for TV-L1: '0', or '0,1,2,3' to deal videos over several GPUs.")
@click.option("--backend", type=click.Choice(["auto", *BACKENDS]), default="auto",
              show_default=True,
              help="TV-L1 implementation. auto: with --gpu, OpenCV's CUDA TV-L1 when the installed "
                   "cv2 has CUDA (PyPI wheels do not), else our PyTorch TV-L1 on the GPU; without "
                   "--gpu, OpenCV on the CPU. torch also runs on the CPU.")
@click.option("--batch-pairs", type=BatchPairs(), default="auto", show_default=True,
              help="Frame pairs per TV-L1 call of the torch backend, batched across videos (the "
                   "OpenCV solvers take one pair at a time). auto: on a GPU the largest batch that "
                   f"fits {AUTO_MEMORY_FRACTION:.0%} of the free memory (probed once per frame "
                   f"size, at most {AUTO_MAX_BATCH}); on the CPU 1 pair at 340x256, up to 8 for "
                   "small frames. Never changes a stored byte.")
@record_options(TVL1Params, "tvl1")
@record_options(WarpParams, "warp", prefix="warp-", help_prefix="Warped flow: ")
def extract_flow_cmd(job: ExtractJob, modalities, bound, algorithm, gpus, backend, batch_pairs,
                     tvl1: TVL1Params, warp: WarpParams):
    """Compute optical flow (and/or warped flow) of VIDEOS into the store OUT: TV-L1 by default.

    Flow i is from frame i to frame i+1, so an N-frame video gets N-1 flows. Each flow is stored as
    two one-channel JPEGs (x and y), quantised as TSN does.

    \b
    Example:
      tsn-prep extract-flow --modality flow --modality warped_flow --workers 2 videos/ out.lmdb
    """
    gpus = gpus or ()
    params = job.params(modalities=tuple(dict.fromkeys(modalities or ("flow",))), bound=bound, tvl1=tvl1,
                        algorithm=algorithm, warp=warp)
    try:
        plan = checked_plan(params, job.plan(gpus=gpus, backend=backend, batch_pairs=batch_pairs))
    except BackendUnavailable as exc:
        raise click.ClickException(f"--gpu {','.join(map(str, gpus))}: {exc}" if gpus else str(exc)) from None
    if backend == "auto" and gpus and algorithm == "tvl1" and not job.quiet:
        click.echo(f"flow backend: {plan.backend} on GPU {', '.join(map(str, gpus))}"
                   + (" (the installed OpenCV has no CUDA)" if plan.backend == "torch" else ""), err=True)
    _run(job, params, plan)


def _open(out: Path) -> Store:
    try:
        return Store(out)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None


@main.command("info", short_help="Show what the store OUT holds.")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--videos", "per_video", is_flag=True,
              help="Also list every video with its image count per modality (frames; flows, N-1 for "
                   "N frames), as the 'per_video' mapping with --json.")
def info_cmd(out, as_json, per_video):
    """Show what the store OUT holds: videos, frames and flows per modality, shards, bytes,
    parameters and failures."""
    info = store_info(_open(out), per_video)
    click.echo(json.dumps(info, indent=2, sort_keys=True) if as_json else format_info(info))


@main.command("verify", short_help="Check every image and record of the store OUT.", help=f"""Decode every image in the store OUT, compare it with the checksum
recorded when it was written, and check counts against the metadata.

Damage ('problem: ...' lines on stderr, naming shard, video, channel and index), recorded
extraction failures ('failed extraction: ...') and videos stored with a warning ('warning: ...',
e.g. a truncated file) are listed; the last line counts them and ends in the verdict: ': OK',
': DAMAGED', ': FAILURES RECORDED, no damage' or ': WARNINGS RECORDED, no damage'. Entries
written before checksums were recorded are decoded and counted only, and a 'note:' line says how
many.

At dataset scale: --workers N checks ranges of whole videos in N processes; an array job
(--shard-index/--num-shards, by default from SLURM's array variables as for extraction) makes task
I of N check the store shards whose number is I modulo N, so a store is verified shard by shard on
many machines; add up the tasks' verdicts (any damaged task: damaged). --checksums-only compares
every image's bytes with its CRC-32 and checks the counts, shards and orphans without decoding,
at the speed the disk reads: it catches every changed, missing or misplaced byte of an image
written with a checksum, but not an image that was already bad when it was written (bytes that
never decoded, or a size other than the metadata's), and for entries written before checksums
were recorded it only counts the images.

\b
Exit status:
  {EXIT_OK}  OK: everything intact, no recorded failures or warnings
  {EXIT_DAMAGED}  damage: an image or metadata is wrong (changed bytes, undecodable,
     missing, orphaned, wrong shard or size)
  2  usage error (e.g. OUT does not exist)
  {EXIT_FAILURES}  no damage, but extractions failed and were recorded; re-run the
     extraction to retry them, or forget them with `tsn-prep clear-failures`
  {EXIT_WARNINGS}  no damage or failure, but videos were stored with a warning (e.g.
     decoded only up to part of their duration); `tsn-prep info` lists them
""")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes checking ranges of whole videos side by side.")
@functools.partial(shard_options, index_help="Which task of an array job this is (0-based): it checks "
                   "the store shards whose number is this modulo --num-shards.",
                   count_help="How many tasks the verification is split into.")
@click.option("--checksums-only", is_flag=True,
              help="Compare checksums and counts without decoding (disk speed; see above).")
@click.option("--quiet", is_flag=True, help=QUIET_HELP)
def verify_cmd(out, workers, shard_index, num_shards, checksums_only, quiet):
    store = _open(out)
    shards = sorted(s for s in store.shard_paths if s % num_shards == shard_index)
    if num_shards > 1:
        if not shards:
            raise click.UsageError(f"{out} has {len(store.shard_paths)} shard(s): task {shard_index} "
                                   f"of {num_shards} has none to check; use --num-shards "
                                   f"{len(store.shard_paths)} or fewer")
        click.echo(f"task {shard_index} of {num_shards}: checking shard(s) {', '.join(map(str, shards))} "
                   f"of {store.num_shards}", err=True)
    with progress_bar(unit="img", quiet=quiet, desc="verify") as bar:
        found = verify(store, bar.update, shards, workers, decode=not checksums_only)
    for p in found.problems:
        click.echo(f"problem: {p}", err=True)
    for shard in found.damaged_shards:
        click.echo(f"repair: shard {shard}: {repair_hint(store, shard)}", err=True)
    for f in found.failures:
        gone = "" if source_gone(f.source) is not True else (
            f" (the source is gone: `tsn-prep clear-failures {out} --gone` forgets such records)")
        click.echo(f"failed extraction: {shown(f.source)} [{f.modality}]: {shown(f.error)}{gone}",
                   err=True)
    for w in found.warnings:
        click.echo(f"warning: {shown(w['video_id'])} [{w['modality']}]: {shown(w['warning'])}", err=True)
    if found.note():
        click.echo(found.note())
    click.echo(found.summary())
    sys.exit(found.exit_code)


@main.command("upgrade", short_help="Bring the store OUT to the current format.")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
def upgrade_cmd(out):
    """Bring the store OUT to the current format: shards written before the compact index (format
    1) get it, so that opening the store reads a few bytes per entry instead of parsing every
    entry's metadata. Readers need not wait for this (they read format 1 as it is), and the next
    extraction into a shard does it too. Images and metadata are not touched."""
    store = _open(out)
    for shard in sorted(store.shard_paths):
        ShardWriter(out, shard, store.num_shards).close()  # a writer brings its shard up to date
    click.echo(f"{out}: {len(store.shard_paths)} shard(s) of {store.num_shards} at format {FORMAT_VERSION}")


@main.command("clear-failures", short_help="Forget recorded extraction failures in OUT.")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("video_ids", nargs=-1)
@click.option("--gone", is_flag=True,
              help="Forget the failures whose source file or folder no longer exists.")
@click.option("--all", "everything", is_flag=True, help="Forget every recorded failure.")
def clear_failures_cmd(out, video_ids, gone, everything):
    """Forget recorded extraction failures in the store OUT: those of VIDEO_IDS, with --gone those
    whose source no longer exists (a video deleted from the dataset), or --all. Stored videos are
    not touched. A failure is forgotten anyway when its video is extracted successfully; this is
    for the ones that never will be, which otherwise keep `verify` at exit 3.

    \b
    Example:
      tsn-prep clear-failures out/ --gone
    """
    if not (video_ids or gone or everything):
        raise click.UsageError("name VIDEO_IDS, or give --gone or --all")
    interrupts.safe(f"each failure record is forgotten in one transaction; the store is whole; run "
                    "the same command again for the rest")
    store = _open(out)
    found = choose_failures(store.failures(), video_ids, gone, everything)
    try:
        forget_failures(out, store, found.chosen)
    except (StoreError, DiskFull) as exc:
        raise click.ClickException(str(exc)) from None
    for f in found.chosen:
        click.echo(f"forgot: {shown(f.video_id)} [{f.modality}]: {shown(f.error)}", err=True)
    click.echo(f"{len(found.chosen)} failure record(s) forgotten, {len(found.recorded) - len(found.chosen)} "
               f"left in {out}")
    if _not_forgotten(found):
        sys.exit(1)


def _not_forgotten(found: FailureChoice) -> bool:
    """clear-failures' errors: records --gone cannot decide on, ids with no record. True if any."""
    if found.undecided:
        click.echo(f"error: {len(found.undecided)} failure record(s) name their source relative to the "
                   f"folder their extraction ran in (e.g. {shown(found.undecided[0].source)}), which "
                   "tsn-prep did not record before it recorded absolute paths: --gone cannot tell "
                   "whether they still exist; forget them by id, or with --all", err=True)
    if found.unknown:
        click.echo(f"error: no failure is recorded for {', '.join(map(shown, sorted(found.unknown)))}",
                   err=True)
    return bool(found.undecided or found.unknown)


_NAMING = Naming()


@main.command("export", short_help="Write the store OUT as TSN-style frame folders.")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--img-prefix", default=_NAMING.prefix("img"), show_default=True, help="RGB frame file prefix.")
@click.option("--flow-prefix", default=_NAMING.prefix("flow_x")[:-2], show_default=True,
              help="Flow file prefix; 'x_' and 'y_' follow it (flow_x_00001.jpg, as dense_flow, denseflow "
                   "and mmaction2's TSN configs). '' gives mmaction2's x_00001.jpg.")
@click.option("--warp-prefix", default=_NAMING.prefix("warped_flow_x")[:-2], show_default=True,
              help="Warped flow file prefix; 'x_' and 'y_' follow it.")
@click.option("--start-index", type=click.IntRange(0, 1), default=_NAMING.start, show_default=True,
              help="Number of the first file: 1 as dense_flow writes and mmaction2 reads, "
                   "0 as denseflow writes.")
@click.option("--modality", "modalities", type=click.Choice(STORED), multiple=True,
              help="Export only these modalities (repeatable). Default: all.")
@click.option("--lists", is_flag=True,
              help="Also write mmaction2 rawframe annotation lists, one per modality: "
                   "DIR/rawframes_<modality>.txt with 'video_id count' per line, the count being "
                   "that modality's images (N-1 flows for N frames), and the label with --labels.")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path), multiple=True,
              help="A 'video_id label' list (tsn-train's format, e.g. trainlist.txt); repeatable. "
                   "--lists then also writes DIR/<stem>_rawframes_<modality>.txt per list with these videos, "
                   "in this order, with their labels (mmaction2 needs a label on every line).")
@click.option("--quiet", is_flag=True, help=QUIET_HELP)
def export_cmd(out, dir, img_prefix, flow_prefix, warp_prefix, start_index, modalities, lists, labels, quiet):
    """Write the store OUT as TSN-style folders: DIR/<id>/img_00001.jpg, flow_x_00001.jpg, ...

    Images are copied byte for byte. The defaults are the names and numbering mmaction2's TSN
    configs read (its RawframeDataset with filename_tmpl 'img_{:05d}.jpg' / 'flow_{}_{:05d}.jpg').
    """
    if labels and not lists:
        raise click.UsageError("--labels only applies with --lists")
    store = _open(out)
    naming = Naming(channel_prefixes({"rgb": img_prefix, "flow": flow_prefix, "warped_flow": warp_prefix}),
                    start=start_index)
    only = tuple(modalities) or None
    labelled = _labelled(store, out, labels) if labels else None
    interrupts.safe(f"every image file in {dir} is whole (each is written to a temporary name, then "
                    "renamed); run the same command again to write them all")
    with progress_bar(total=len(store.index), unit="entry", quiet=quiet, desc="export") as bar:
        n = export_store(store, dir, naming, only, bar.update)
    click.echo(f"wrote {n} images to {dir}")
    if lists:
        _write_lists(store, dir, only, labelled)


def _labelled(store: Store, out: Path, labels) -> dict[str, list[tuple[str, int]]]:
    """export --labels: each list's (video_id, label) lines, by the list's file stem."""
    from tsn_core.lists import Known, ListError, read_list

    # every line resolved against the store's ids (one set for all lists); a line naming no
    # stored video is kept and left out with a warning below, as one lacking a modality is
    known = Known({vid for vid, _ in store.index}, "the store", f"entry in {out}")
    try:
        return {p.stem: [(r.video_id, r.label) for r in read_list(p, known, allow_missing=True)]
                for p in labels}
    except ListError as exc:
        raise click.BadParameter(str(exc), param_hint="--labels") from None


def _write_lists(store: Store, dir: Path, only, labelled) -> None:
    """export --lists: the rawframe lists, each named with its count and the videos left out."""
    try:
        written_lists = write_rawframe_lists(store, dir, only, labelled)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    for path, written, missing in written_lists:
        click.echo(f"wrote {path} ({written} videos)")
        if missing:
            click.echo(f"warning: {path.name}: {len(missing)} listed videos are not in the store "
                       f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}); left out", err=True)


def _frame_range(ctx, param, value):
    if value is None:
        return None
    a, sep, b = value.partition(":")
    try:
        if not sep:
            raise ValueError
        return (int(a) if a.strip() else None, int(b) if b.strip() else None)
    except ValueError:
        raise click.BadParameter(f"expected A:B (B excluded; either may be left out), got {value!r}") from None


@main.command("show", short_help="Draw a video of a store: frame | flow | warped flow.")
@click.argument("store", type=click.Path(path_type=Path))
@click.argument("video_id")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="FILE.png (or FILE.jpg, much smaller for a web page): a contact sheet, one "
                   "row per time step; FILE.gif or FILE.mp4: an animation, one row per animation "
                   "frame.")
@click.option("--frames", "frame_range", callback=_frame_range, metavar="A:B",
              help="Show time steps A..B-1 (0-based, like a Python slice).  [default: 8 evenly "
                   "spaced across the video, or all of a shorter one]")
@click.option("--every", type=click.IntRange(min=1), default=None,
              help="Every Nth time step of --frames (or of the whole video).")
@click.option("--columns", type=click.IntRange(min=1), default=1, show_default=True,
              help="PNG / JPEG: lay the rows out in N groups side by side, for long selections.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=4.0, show_default=True,
              help="GIF / MP4: animation frames per second.")
@click.option("--labels/--no-labels", default=True, show_default=True,
              help="Write each row's time step index into its top-left corner. (The column "
                   "titles and the colour key sit outside the cells and are always drawn.)")
def show_cmd(store, video_id, out_file, frame_range, every, columns, fps, labels):
    """Draw the video VIDEO_ID of the store STORE: frame i | flow i | warped flow i per row.

    Flow i is between frames i and i+1 (the last frame has none: a black cell); modalities the
    video lacks are left out. Flow is drawn with the Middlebury colour wheel (hue: direction,
    saturation: speed) on a fixed scale: white is no motion, full colour is the stored bound
    (--bound at extraction, 20 px by default) or more, so videos compare. Each cell is the stored
    size, so a PNG is (rows x height) by (columns x modalities x width), plus a title band naming
    the columns above and, when flow is drawn, a key below (the colour wheel, the bound in px);
    each picture of an animation has both too.

    \b
    Example:
      tsn-prep show out/ ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01 --out sheet.png --frames 0:16 --every 2
    """
    from .show import ShowError, describe, legend_of, pick_steps, rows, write

    opened = _open(store)
    try:
        video = describe(opened, video_id)
        indices = pick_steps(video.steps, frame_range, every)
        drawn = rows(opened, video, indices, labels)
        with interrupts.deferred():  # the picture whole, or not begun
            write(out_file, drawn, columns, fps, legend_of(video))
    except (ShowError, StoreError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {out_file}: {video_id}, {', '.join(video.modalities)}, time steps "
               f"{', '.join(map(str, indices))}", err=True)


@main.command("import-frames", short_help="Copy existing frame folders into the store OUT.")
@click.argument("dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--img-prefix", help="RGB frame file prefix. Default: detected per folder among "
              + ", ".join(p[0] for p in PREFIXES["rgb"]) + ".")
@click.option("--flow-prefix", help="Flow file prefix; 'x_' and 'y_' follow it ('' means x_00001.jpg). "
              "Default: detected per folder among " + ", ".join("/".join(p) for p in PREFIXES["flow"]) + ".")
@click.option("--warp-prefix", help="Warped flow file prefix; 'x_' and 'y_' follow it. Default: detected "
              "among " + ", ".join("/".join(p) for p in PREFIXES["warped_flow"]) + ".")
@click.option("--flow-modality", type=click.Choice(FLOW), default="flow", show_default=True,
              help="Store the flow images found as this modality: warped_flow for a tree written by "
                   "dense_flow's extract_warp_gpu, which names warped flow flow_x_/flow_y_.")
@click.option("--ignore-unmatched", is_flag=True,
              help="Leave out image files no naming claims (counted in the summary) instead of failing "
                   "their folder.")
@click.option("--bound", type=float, default=EXTRACT.bound, show_default=True,
              help="The bound the flow images were quantised with (recorded in the metadata).")
@shard_options
@click.option("--quiet", is_flag=True, help=QUIET_HELP)
def import_cmd(dir, out, img_prefix, flow_prefix, warp_prefix, flow_modality, ignore_unmatched, bound,
               shard_index, num_shards, quiet):
    """Copy existing frame folders (dense_flow, denseflow, mmaction2) under DIR into the store OUT
    (the folders are left as they are).

    Every folder holding images becomes one video, its id the folder's path relative to DIR. The
    naming of each modality is detected per folder among the conventions listed under the prefix
    options, numbered from 0 or 1. Nothing is dropped silently: an image file in no naming, x and y
    counts that differ, or a gap in the numbering fails that folder (named, with the reason; the
    others go on, and the exit code is 1). Images are stored byte for
    byte after checking that they decode; the detected naming is printed and kept in the metadata.
    """
    try:
        accepted = accepted_prefixes(img_prefix, flow_prefix, warp_prefix, flow_modality)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    interrupts.safe(f"imported videos are safe in {out}; re-run the same command to do the rest")
    with progress_bar(unit="video", quiet=quiet, desc="import") as bar:
        def on_video(result):
            if result.error:
                tqdm.write(f"error: {shown(result.folder)}: {shown(result.error)}", file=sys.stderr)
            bar.update(1)
        try:
            results = import_tree(dir, out, accepted, bound, shard_index, num_shards, ignore_unmatched, on_video)
        except (StoreError, DiskFull) as exc:
            raise click.ClickException(str(exc)) from None
    if _import_summary(results, out):
        sys.exit(1)


def _import_summary(results, out: Path) -> int:
    """import-frames' last lines on stderr: the namings found, the files left out, the counts.
    Returns how many folders failed."""
    namings = Counter(f.describe() for r in results for f in r.found)
    for naming, n in sorted(namings.items()):
        click.echo(f"found {naming}: {n} folder{'s' * (n != 1)}", err=True)
    left_out = [r for r in results if r.unmatched]
    if left_out:
        click.echo(f"left out {sum(len(r.unmatched) for r in left_out)} unmatched image files in "
                   f"{len(left_out)} folders (--ignore-unmatched), e.g. {left_out[0].folder}/"
                   f"{left_out[0].unmatched[0]}", err=True)
    failed = sum(r.error is not None for r in results)
    done = sum(bool(r.written) for r in results)
    click.echo(f"imported {done} videos, {failed} failed -> {out}", err=True)
    return failed


if __name__ == "__main__":
    main()
