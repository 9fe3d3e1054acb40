"""The list format: ``video_id label`` per line (and untrimmed videos' ``video_id LABELS``), read
so that every line means exactly one known video or is an error naming the file, the line and the
reason (docs/training.md, "What a list line means"); and class-name files.

The ids a list is resolved against are any container (``Known``): ``tsn_train`` passes a store's,
``tsn-prep export --labels`` the same, ``evaluate`` a score file's.
"""
from __future__ import annotations

import codecs
import contextlib
import gc
import re
import unicodedata
from collections.abc import Callable, Container, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


class ListError(Exception):
    """A list, class file or split file is malformed or does not match the store."""


@dataclass(frozen=True)
class Record:
    video_id: str
    label: int


@dataclass(frozen=True)
class Reading:
    """One way to read a list line: the video id, and for a legacy TSN line (``path num_frames
    label``) read as such, the frame count that is then not part of the id."""
    video_id: str
    frames: Optional[int] = None


@dataclass(frozen=True)
class ListLine:
    """A parsed list line: its number (1-based), text (without the line terminator), the ways its
    id can be read (the most literal first), and its labels (one for ``read_list``'s lines; sorted,
    possibly none, for multi-label lines). A ``comment`` line (it starts with ``#``) is a video only
    when one of its readings is a known video."""
    number: int
    text: str
    readings: tuple[Reading, ...]
    labels: tuple[int, ...]
    comment: bool = False

    def describe(self, reading: Reading) -> str:
        """``'x/take' (frame count 2, label 0)``: a reading as error messages show it."""
        frames = f"frame count {reading.frames}, " if reading.frames is not None else ""
        return f"{reading.video_id!r} ({frames}{_labels(self.labels)})"


@dataclass(frozen=True)
class ParsedList:
    """A list file's lines that can name a video, before they are resolved against known ids."""
    path: Path
    lines: tuple[ListLine, ...]


def _no_hint(missing: list[str]) -> str:
    return ""


@dataclass(frozen=True)
class Known:
    """The ids a list is resolved against, and how messages name them: ``name`` as in ``'v' is not
    in the store``, ``lacking`` as in ``2 of 9 videos have no rgb in /data/store``; ``hint(ids)``
    is appended to the missing-videos message. ``ids`` needs only ``in``; when it can also be
    iterated, missing ids are compared with it after Unicode normalisation."""
    ids: Container[str]
    name: str = "the store"
    lacking: str = "entry in the store"
    hint: Callable[[list[str]], str] = _no_hint


def parse_list(path: Path) -> ParsedList:
    """The lines of a ``video_id label`` list and the ways each can be read (docs/training.md,
    "What a list line means"). Raises ListError for a line that is no ``video_id label``."""
    return _parse(path, multilabel=False)


def parse_multilabel_list(path: Path) -> ParsedList:
    """The lines of an untrimmed-video list (``video_id 3,7``, ``video_id -``, ``video_id``) and
    the ways each can be read; see ``read_multilabel_list``."""
    return _parse(path, multilabel=True)


def resolve_list(parsed: ParsedList, known: Optional[Known | Container[str]],
                 list_name: Optional[str] = None, allow_missing: bool = False) -> list[Record]:
    """Every line of ``parsed`` as the one known video it names, in list order (see ``_resolve``)."""
    return [Record(vid, line.labels[0]) for line, vid in _resolve(parsed, known, list_name, allow_missing)]


def resolve_multilabel_list(parsed: ParsedList, known: Optional[Known | Container[str]],
                            list_name: Optional[str] = None) -> list[MultiRecord]:
    """Every line of ``parsed`` as the one known video it names, in list order (see ``_resolve``)."""
    return [MultiRecord(vid, line.labels) for line, vid in _resolve(parsed, known, list_name, False)]


def read_list(path: Path, known: Optional[Known | Container[str]] = None,
              list_name: Optional[str] = None, allow_missing: bool = False) -> list[Record]:
    """Read ``video_id label`` lines and resolve each against ``known`` (the ids of a store: see
    ``store_known``). The label is the last field, so ids may contain spaces.

    Every line names exactly one known video or this raises ListError naming the file, the line
    and why: a line that can be read several ways (a separator of several whitespace characters,
    a TSN-style ``path num_frames label`` line, leading whitespace) is the one reading that is
    known; a ``#`` line is a comment unless one of its readings is known; an id listed twice is an
    error. Without ``known`` a line with several readings is an error (ambiguous) and ``#`` lines
    are comments. ``allow_missing`` keeps a line with one reading that is not known (the caller
    reports it). ``list_name`` (e.g. ``train list PATH``) starts the message about several missing
    videos (else ``PATH:LINE:`` of the first). docs/training.md, "What a list line means", has the
    rules.
    """
    return resolve_list(parse_list(path), known, list_name, allow_missing)


def read_text(path: Path, what: str = "file") -> str:
    """A text file's contents as UTF-8 (a byte-order mark at the start is dropped); ListError
    ``PATH: no such WHAT`` or ``PATH:LINE: not UTF-8 (...)``."""
    path = Path(path)
    if not path.is_file():
        raise ListError(f"{path}: no such {what}")
    data = path.read_bytes()
    data = data[len(codecs.BOM_UTF8):] if data.startswith(codecs.BOM_UTF8) else data  # "utf-8-sig"
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        n = data.count(b"\n", 0, exc.start) + 1
        raise ListError(f"{path}:{n}: not UTF-8 (byte {data[exc.start]:#04x}: {exc.reason})") from None


def _read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a list file's non-blank lines: UTF-8 (a byte-order mark at the
    start is dropped), each line verbatim but for its ``\\n`` or ``\\r\\n`` terminator."""
    for n, line in enumerate(read_text(path, "list file").split("\n"), 1):
        line = line[:-1] if line.endswith("\r") else line
        if line.strip():
            yield n, line


_LABEL = re.compile(r"-?[0-9]+")
_LABELS = re.compile(r"-|[0-9]+(,[0-9]+)*")
_FRAMES = re.compile(r"[0-9]+")


def _split_last(text: str) -> tuple[str, str, str]:
    """``(head, separator, last field)`` of ``text`` without its trailing whitespace; the head is
    ``''`` when the text is one field (then the separator is any leading whitespace)."""
    body = text.rstrip()
    fields = body.rsplit(None, 1)  # str's own whitespace rules, at C speed (ids run to 100s of chars)
    last = fields[-1] if fields else ""
    rest = body[:len(body) - len(last)]
    head = rest.rstrip()
    return head, rest[len(head):], last


def _ids(head: str, sep: str) -> list[str]:
    """The ids ``head`` followed by ``sep`` (whitespace before a field) can be: all but at least one
    character of ``sep`` may belong to the id, longest first."""
    return [head + sep[:i] for i in range(len(sep) - 1, -1, -1)]


def _readings(head: str, sep: str) -> tuple[Reading, ...]:
    """The readings of a line whose labels follow ``head`` + ``sep``: the id is ``head`` plus part
    of ``sep``; or, when ``head`` ends in a number, a legacy TSN ``path num_frames`` whose path is
    the rest; and either without leading whitespace. Distinct, the most literal first."""
    readings = [Reading(vid) for vid in _ids(head, sep)]
    prefix, sep2, last = _split_last(head)
    if prefix and _FRAMES.fullmatch(last):
        readings += [Reading(vid, int(last)) for vid in _ids(prefix, sep2)]
    if not head[:1].isspace():  # then the readings above are distinct, none empty, none to strip
        return tuple(readings)
    readings += [Reading(r.video_id.lstrip(), r.frames) for r in readings]
    seen: set[Reading] = set()
    return tuple(r for r in readings if r.video_id and not (r in seen or seen.add(r)))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a list's objects are made: they form no cycles, and
    each collection would walk every object made so far (at 650k lines, a third of the parse)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_gc_paused()
def _parse(path: Path, multilabel: bool) -> ParsedList:
    lines = []
    for n, text in _read_lines(path):
        head, sep, last = _split_last(text)
        comment = text.lstrip().startswith("#")
        if multilabel and not head:  # one field (after any leading whitespace): a background video
            line = ListLine(n, text, _readings(sep + last, " "), (), comment)
        elif head and (_LABELS if multilabel else _LABEL).fullmatch(last):
            labels = (() if last == "-" else tuple(sorted({int(x) for x in last.split(",")})))
            line = ListLine(n, text, _readings(head, sep), labels, comment)
        elif comment:
            continue
        else:
            expected = ("'video_id label[,label...]' or 'video_id -'" if multilabel
                        else "'video_id label'")
            raise ListError(f"{path}:{n}: expected {expected}, got {text!r}")
        lines.append(line)
    return ParsedList(Path(path), tuple(lines))


@_gc_paused()
def _resolve(parsed: ParsedList, known: Optional[Known | Container[str]], list_name: Optional[str],
             allow_missing: bool) -> list[tuple[ListLine, str]]:
    """``(line, video id)`` of every line of ``parsed`` that names a video, in list order.

    A line's readings are looked up in ``known``: the one known reading is the video; several are
    an error; none is an error (all such lines in one message; a spelling that differs from a known
    id only in its Unicode normalisation is named as such), or with ``allow_missing`` the line's
    only reading. A comment line with no known reading is skipped. Without ``known`` a line's only
    reading is taken, several are an error, and comment lines are skipped. An id on two lines is
    an error naming both.
    """
    path = parsed.path
    if known is not None and not isinstance(known, Known):
        known = Known(known)
    out: list[tuple[ListLine, str]] = []
    missing: list[ListLine] = []
    first_line: dict[str, ListLine] = {}
    named = 0  # lines that name a video (all but skipped comments)
    for line in parsed.lines:
        if known is None:
            if line.comment:
                continue
            found = list(line.readings)
        else:
            found = [r for r in line.readings if r.video_id in known.ids]
        if len(found) > 1:
            why = (f"{_both(len(found))} are in {known.name}" if known is not None
                   else "without a store to check against, the line is ambiguous")
            raise ListError(f"{path}:{line.number}: could be read as "
                            f"{_or([line.describe(r) for r in found])}; {why}")
        if not found and line.comment:
            continue
        named += 1
        if not found:
            missing.append(line)
            if not (allow_missing and len(line.readings) == 1):
                continue
            found = list(line.readings)
        vid = found[0].video_id
        if vid in first_line:
            earlier = first_line[vid]
            labels = "" if earlier.labels == line.labels else (
                f" ({_labels(earlier.labels)}, then {_labels(line.labels)})")
            raise ListError(f"{path}:{line.number}: {vid!r} is listed twice, on lines "
                            f"{earlier.number} and {line.number}{labels}")
        first_line[vid] = line
        out.append((line, vid))
    if missing:
        _raise_missing(parsed, known, missing, named, list_name, allow_missing)
    return _non_empty(path, out)


def _raise_missing(parsed: ParsedList, known: Known, missing: list[ListLine], total: int,
                   list_name: Optional[str], allow_missing: bool) -> None:
    """Raise the error for lines none of whose readings is known (with ``allow_missing``, only for
    those with several readings, or spelled as a known id in another Unicode normalisation).
    Several missing lines are one message: ``path:LINE:`` of the first, or ``list_name:`` and the
    path after the line numbers."""
    path = parsed.path
    respelled = _respelled(known.ids, [r.video_id for m in missing for r in m.readings])
    for line in missing:
        for r in line.readings:
            if r.video_id in respelled:
                stored = respelled[r.video_id]
                more = sum(any(x.video_id in respelled for x in m.readings) for m in missing) - 1
                raise ListError(
                    f"{path}:{line.number}: {r.video_id!r} is not in {known.name}, but {stored!r} is, "
                    f"spelled with another Unicode normalisation ({_form(stored)} in {known.name}, "
                    f"{_form(r.video_id)} in the list); write the list with {known.name}'s spelling"
                    + (f" ({more} more lines of the list are spelled so)" if more else ""))
    if allow_missing:
        missing = [m for m in missing if len(m.readings) > 1]
        if missing:
            line = missing[0]
            raise ListError(f"{path}:{line.number}: could be read as "
                            f"{_or([line.describe(r) for r in line.readings])}; "
                            f"{'neither' if len(line.readings) == 2 else 'none'} is in {known.name}")
        return
    ids = [r.video_id for m in missing for r in m.readings]
    hint = known.hint(ids)
    if len(missing) == 1:
        line = missing[0]
        raise ListError(f"{path}:{line.number}: {_or([repr(r.video_id) for r in line.readings])} "
                        f"has no {known.lacking}{hint}")
    shown = [_or([_show(r.video_id) for r in m.readings]) for m in missing]
    numbers = ", ".join(str(m.number) for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
    where = (f"{list_name}: " if list_name else f"{path}:{missing[0].number}: ")
    raise ListError(f"{where}{len(missing)} of {total} videos have no {known.lacking}: "
                    f"{preview(shown)}, on lines {numbers}{f' of {path}' if list_name else ''}{hint}")


def _respelled(ids: Container[str], wanted: list[str]) -> dict[str, str]:
    """``{wanted id: known id}`` for the wanted ids that are not known but equal a known id after
    NFC normalisation. The known ids are only iterated (once) when they can be; the ones already
    in NFC are found by lookup, so the map holds only the few stored in another form."""
    nfc = {w: unicodedata.normalize("NFC", w) for w in wanted}
    found = {w: n for w, n in nfc.items() if n != w and n in ids}
    if isinstance(ids, Iterable):
        other = {}
        for k in ids:
            if not k.isascii() and not unicodedata.is_normalized("NFC", k):
                other.setdefault(unicodedata.normalize("NFC", k), k)
        found.update({w: other[n] for w, n in nfc.items() if w not in found and n in other
                      and other[n] != w})
    return found


def _form(s: str) -> str:
    return ("NFC" if unicodedata.is_normalized("NFC", s) else "NFD" if unicodedata.is_normalized("NFD", s)
            else "neither NFC nor NFD")


def _show(vid: str) -> str:
    """An id as a list preview shows it: plain, or quoted when whitespace or odd characters at its
    ends or inside would otherwise hide what it is."""
    plain = vid.isprintable() and vid == vid.strip() and "  " not in vid and "," not in vid
    return vid if plain else repr(vid)


def _or(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _both(n: int) -> str:
    return "both" if n == 2 else f"all {n}"


def _labels(labels: tuple[int, ...]) -> str:
    return ("no label" if not labels else f"label {labels[0]}" if len(labels) == 1
            else f"labels {','.join(map(str, labels))}")


def _non_empty(path: Path, records: list) -> list:
    if not records:
        raise ListError(f"{path}: the list is empty")
    return records


@dataclass(frozen=True)
class MultiRecord:
    """An untrimmed video and its labels: several, one, or none (``()``: a background video)."""
    video_id: str
    labels: tuple[int, ...]


def read_multilabel_list(path: Path, known: Optional[Known | Container[str]] = None,
                         list_name: Optional[str] = None) -> list[MultiRecord]:
    """Read an untrimmed-video list: ``video_id LABELS`` per line, LABELS comma-separated
    (``v1 3``, ``v2 0,7``) or ``-`` for a background video; a line that is one field is a
    background video too. Labels are sorted and deduplicated.

    As in ``read_list`` the labels are the last field (so ``read_list``'s files, labels >= 0,
    read the same, one label each), ids may contain spaces (then write ``-`` for no label), and
    every line is resolved against ``known`` (e.g. a score file's ids) by the same rules.
    """
    return resolve_multilabel_list(parse_multilabel_list(path), known, list_name)


def write_list(path: Path, records: list[Record]) -> None:
    Path(path).write_text("".join(f"{r.video_id} {r.label}\n" for r in records), encoding="utf-8")


def write_multilabel_list(path: Path, records: list[MultiRecord]) -> None:
    """``video_id 3``, ``video_id 0,7`` or ``video_id -`` (background) per line, as
    ``read_multilabel_list`` reads them: labels sorted, each once."""
    Path(path).write_text("".join(f"{r.video_id} {','.join(map(str, sorted(set(r.labels)))) or '-'}\n"
                                  for r in records), encoding="utf-8")


def read_classes(path: Path) -> list[str]:
    """One class name per line, in label order: read as a list is (UTF-8, a byte-order mark
    dropped, blank lines skipped, each name without its surrounding spaces), and its errors name the
    file and line: not UTF-8, a name given twice (which label would it be?), no names at all."""
    path = Path(path)
    names: list[str] = []
    first: dict[str, int] = {}
    for n, line in enumerate(read_text(path, "class-name file").split("\n"), 1):
        name = line.strip()
        if not name:
            continue
        if name in first:
            raise ListError(f"{path}:{n}: class {name!r} again (line {first[name]} names it too): "
                            "each label needs a name of its own")
        first[name] = n
        names.append(name)
    if not names:
        raise ListError(f"{path}: no class names")
    return names


def write_classes(path: Path, names: list[str]) -> None:
    Path(path).write_text("".join(f"{n}\n" for n in names), encoding="utf-8")


def preview(items: list[str], n: int = 5) -> str:
    """The first ``n`` items and how many there are in all, for error messages."""
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else f" ({len(items)})")
