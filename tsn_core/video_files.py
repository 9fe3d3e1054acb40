"""Which files are videos and what their ids are: the file name extensions taken for videos, the
expansion of VIDEOS (a folder searched recursively, one file, or a list of paths) into items with
their ids (``list_videos``), and which strings may be ids (``check_id``). tsn-prep stores videos
under these ids, and everything that later names a video by its file (a store's hint that its root
holds videos, ``tsn-train lists --videos``) finds the same ids here."""
from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .text import shown
from .tree import walk

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .avi .mkv .webm .mov .m4v .mpg .mpeg .flv .wmv .3gp .ogv .ts .mts .m2ts".split()
)


class ListingError(ValueError):
    """VIDEOS cannot be used at all: missing, or holding no video."""


@dataclass(frozen=True)
class VideoItem:
    """One input video: its store id and where it is."""

    id: str
    path: Path


@dataclass
class Listing:
    """What VIDEOS expanded to: usable items, inputs rejected before decoding, folders that could
    not be listed (``(id, path, reason)``: their videos are unknown, so the run must fail), and
    notes (harmless oddities worth a line, e.g. one file listed twice)."""

    items: list[VideoItem] = field(default_factory=list)
    rejected: list[tuple[VideoItem, str]] = field(default_factory=list)
    unlisted: list[tuple[str, Path, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _id_for(path: Path, root: Optional[Path]) -> str:
    rel = path.relative_to(root) if root is not None else Path(path.name)
    return rel.with_suffix("").as_posix()


def check_id(video_id: str) -> Optional[str]:
    """Why ``video_id`` cannot be a store key, or None. '|' separates key fields in the store."""
    if not video_id:
        return "empty video id"
    try:
        video_id.encode("utf-8")
    except UnicodeEncodeError:  # a file name of bytes that are not UTF-8 (os gives surrogates)
        return (f"the name is not valid UTF-8 (its id {shown(video_id)} shows the other bytes as "
                "\\xNN); rename it")
    if "|" in video_id or "\n" in video_id:
        return f"video id {shown(video_id)} holds '|' or a line break, which the store reserves; rename it"
    return None


def _is_video(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def _walk(root: Path, listing: Listing) -> list[Path]:
    """Video files under ``root`` (symlinked folders followed); a folder that cannot be listed
    goes to ``listing.unlisted``, a link back up to ``listing.notes``."""
    tree = walk(root)
    for folder, why in tree.unlisted:
        listing.unlisted.append((folder.relative_to(root).as_posix(), folder,
                                 f"folder cannot be listed ({why}); its videos were not extracted"))
    listing.notes += [f"{p}: links back to a folder above it; not followed again" for p in tree.loops]
    return sorted(folder / name for folder, names in tree.files.items() for name in names if _is_video(name))


def _other_normalisation(path: Path) -> Optional[str]:
    """The name of an entry beside ``path`` that is ``path``'s name in another Unicode
    normalisation (NFC vs NFD), or None."""
    target = unicodedata.normalize("NFC", path.name)
    try:
        names = os.listdir(path.parent)
    except OSError:
        return None
    return next((n for n in names if n != path.name and unicodedata.normalize("NFC", n) == target), None)


def _read_video_list(source: Path, listing: Listing) -> list[VideoItem]:
    """The items of a VIDEOS text file: one path per line, relative to the list's folder or
    absolute. Each line means one file or is an error (docs/format.md, "VIDEOS"): a line is taken
    verbatim (only the line break removed); when it names no file but the line without its
    surrounding spaces does, that is it, and when both name different files it is an error. A line
    starting with '#' is a comment unless it names a file. Blank lines are skipped."""
    root = source.parent.resolve()
    candidates: list[VideoItem] = []
    first_line: dict[str, int] = {}
    try:
        text = source.read_text(encoding="utf-8-sig", errors="surrogateescape")
    except OSError as exc:
        raise ListingError(f"{source}: cannot read the list ({exc.strerror or exc})") from None
    if "\x00" in text:
        raise ListingError(f"{source}: not a text list (it holds NUL bytes): VIDEOS is a folder, a "
                           "video file, or a text file with one path per line")
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        readings = list(dict.fromkeys([raw, raw.strip()]))
        paths = [Path(r) if Path(r).is_absolute() else source.parent / r for r in readings]
        existing = [p for p in paths if os.path.lexists(p)]
        if raw.lstrip().startswith("#") and not existing:
            continue  # a comment
        if len(existing) > 1 and os.path.realpath(existing[0]) != os.path.realpath(existing[1]):
            item = VideoItem(_id_for(paths[-1], None), paths[-1])
            listing.rejected.append((item, f"{source}:{n}: could be read as {readings[0]!r} or "
                                           f"{readings[1]!r}, and both are files; rename one"))
            continue
        p = existing[0] if existing else paths[-1]
        if not existing:
            other = _other_normalisation(p)
            if other is not None:
                form = "NFD" if unicodedata.is_normalized("NFD", other) else "NFC"
                item = VideoItem(_id_for(p, None), p)
                listing.rejected.append((item, f"{source}:{n}: no such file, but {other!r} is there, the "
                                               f"same name in another Unicode normalisation ({form}); "
                                               "write the list with the file's spelling"))
                continue
        try:
            vid = _id_for(p.resolve(), root)
        except ValueError:
            vid = _id_for(p, None)
        key = os.path.abspath(p)
        if key in first_line:  # the same file again: one video, said once
            listing.notes.append(f"{source}:{n}: the same file as line {first_line[key]}; it is one video")
            continue
        first_line[key] = n
        candidates.append(VideoItem(vid, p))
    return candidates


def list_videos(source: Path) -> Listing:
    """Expand VIDEOS: a directory searched recursively, one video file, or a text file with one
    path per line.

    Ids are paths relative to the directory without the extension; for a list file, relative to the
    list's directory when the path lies under it, else the file name without extension. Files that
    map to the same id are all rejected: picking one silently would mislabel data. Symlinked
    folders are followed. Raises ListingError when VIDEOS is missing or holds no video at all.
    """
    source = Path(source)
    listing = Listing()
    if source.is_dir():
        candidates = [VideoItem(_id_for(p, source), p) for p in _walk(source, listing)]
    elif source.is_file() and source.suffix.lower() in VIDEO_EXTENSIONS:
        candidates = [VideoItem(_id_for(source, None), source)]  # one video: its id is its stem
    elif source.is_file():
        candidates = _read_video_list(source, listing)
    else:
        raise ListingError(f"{source}: no such directory or list file")
    if not candidates and not listing.rejected and not listing.unlisted:
        what = ("no video files under it (extensions: " + " ".join(sorted(VIDEO_EXTENSIONS)) + ")"
                if source.is_dir() else "lists no video")
        raise ListingError(f"{source}: {what}")

    # Symlinks stay distinct videos: datasets are often built from links to shared files.
    by_id: dict[str, list[VideoItem]] = {}
    for item in candidates:
        by_id.setdefault(item.id, []).append(item)
    for item in candidates:
        same = by_id[item.id]
        problem = check_id(item.id)
        if problem:
            listing.rejected.append((item, problem))
        elif len(same) > 1:
            names = ", ".join(str(o.path) for o in same)
            listing.rejected.append((item, f"duplicate video id {item.id!r} shared by {names}; rename all but one"))
        else:
            listing.items.append(item)
    return listing
