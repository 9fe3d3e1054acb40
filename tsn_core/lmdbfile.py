"""Read an LMDB data file without trusting it: every page and node is checked before it is used.

Why not read through py-lmdb: LMDB trusts its file. It maps it and follows whatever its pages say,
so a shard cut short by an interrupted copy kills the reader by SIGBUS (a read past the end of the
file), and a flipped byte in a page can make it read outside the page or trip one of its
assertions (SIGABRT). A training job, ``info`` or ``verify`` must instead say which shard is
damaged and how (``Damaged``). This reader reads pages with ``pread`` (past the end of the file a
read is short, never a signal), checks each page's header and each node's offsets and sizes
against the page and the file before following them, and finds keys by binary search as LMDB
does. It reads what tsn-prep writes: named databases without duplicates, keys compared as bytes,
the 64-bit layout of LMDB 0.9 (mdb.c's ``MDB_page``, ``MDB_node``, ``MDB_meta``). Writing stays
with py-lmdb (tsn_prep's ``ShardWriter``), after :meth:`LMDBFile.check` found the file whole.

The layout, little-endian: page ``n`` is at ``n * psize``; its header is ``pgno`` (8 bytes),
``pad``, ``flags``, ``lower``, ``upper`` (2 each; for the first page of an overflow run, ``pages``
(4) in place of the last two); node offsets (2 bytes each) follow it up to ``lower``; nodes lie
between ``upper`` and the page's end: ``lo``, ``hi``, ``flags``, ``ksize`` (2 each), the key, then
in a leaf the value (``lo | hi << 16`` bytes) or, with F_BIGDATA, the 8-byte number of the overflow
page holding it after its 16-byte header; in a branch the child's page number is ``lo | hi << 16 |
flags << 32`` and the first key is empty. Pages 0 and 1 hold the meta record at offset 16: magic,
version, address, map size, the free-page and main databases (48 bytes each: pad (the page size
in the free database's), flags, depth, branch, leaf and overflow page counts, entries, root), the
last page number and the transaction id; the one with the higher transaction id is current. The
main database's leaf nodes with F_SUBDATA name the named databases, their value a 48-byte record.
"""
from __future__ import annotations

import os
import struct
from bisect import bisect_right
from dataclasses import dataclass
from typing import Iterator, Optional, Union

from .errors import Damaged

MAGIC = 0xBEEFC0DE
DATA_VERSION = 1
HEADER = 16                      # bytes of a page header (PAGEHDRSZ)
NODE = 8                         # bytes of a node header (NODESIZE)
P_BRANCH, P_LEAF, P_OVERFLOW, P_META, P_LEAF2, P_SUBP = 0x01, 0x02, 0x04, 0x08, 0x20, 0x40
F_BIGDATA, F_SUBDATA, F_DUPDATA = 0x01, 0x02, 0x04
INTEGERKEY = 0x08                # a database flag: keys are native integers (the free list's)
MAX_VALUE = 1 << 28              # no value tsn-prep writes comes near: a larger one is damage
INVALID = (1 << 64) - 1          # the root of an empty database
MAX_DEPTH = 32                   # LMDB's cursor stack holds no more (CURSOR_STACK)
PAGE_SIZES = (4096, 8192, 16384, 32768, 65536, 512, 1024, 2048)

_HEAD = struct.Struct("<QHHHH")  # pgno, pad, flags, lower, upper
_OVERFLOW = struct.Struct("<QHHI")  # pgno, pad, flags, pages
_DB = struct.Struct("<IHHQQQQQ")  # pad, flags, depth, branch, leaf, overflow pages, entries, root
_META = struct.Struct("<IIQQ48s48sQQ")  # magic, version, address, mapsize, free, main, last_pg, txnid
_NODE = struct.Struct("<HHHH")   # lo, hi, flags, ksize
_PGNO = struct.Struct("<Q")


@dataclass(frozen=True)
class DB:
    """A database's record (``MDB_db``): its tree's root page, depth and counts."""

    flags: int
    depth: int
    branch_pages: int
    leaf_pages: int
    overflow_pages: int
    entries: int
    root: int

    @classmethod
    def unpack(cls, data: bytes) -> "DB":
        _, flags, depth, branch, leaf, overflow, entries, root = _DB.unpack(data)
        return cls(flags, depth, branch, leaf, overflow, entries, root)

    @property
    def empty(self) -> bool:
        return self.root == INVALID


@dataclass(frozen=True)
class Meta:
    psize: int
    free: DB
    main: DB
    last_pg: int
    txnid: int


class _Page:
    """One tree page, checked: its node offsets, and its nodes read on demand (each checked)."""

    __slots__ = ("pgno", "data", "leaf", "ptrs")

    def __init__(self, pgno: int, data: bytes, leaf: bool, ptrs: tuple[int, ...]):
        self.pgno, self.data, self.leaf, self.ptrs = pgno, data, leaf, ptrs


class LMDBFile:
    """A read-only view of one LMDB data file (``data.mdb``) as of its last committed
    transaction when opened (or :meth:`refresh`-ed). Opening reads the meta pages and the main
    database; a short or overwritten file raises Damaged at once. Every later read checks the
    pages it touches; :meth:`check` walks them all. ``name`` prefixes every message (the shard);
    ``advice``, a ``posix_fadvise`` advice for the file, is given before anything is read."""

    def __init__(self, path: str, name: Optional[str] = None, advice: Optional[int] = None):
        self.path = path
        self.name = name or path
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            if advice is not None and hasattr(os, "posix_fadvise"):  # before the first read
                os.posix_fadvise(self.fd, 0, 0, advice)
            self.refresh()
        except BaseException:
            os.close(self.fd)
            raise

    # -- opening -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the meta pages again: what a writer committed since becomes visible."""
        self.size = os.fstat(self.fd).st_size
        self.meta = self._current_meta()
        self.psize = self.meta.psize
        self.pages = self.meta.last_pg + 1
        self._branches: dict[int, tuple[list[bytes], list[int]]] = {}
        self._missing_tail()
        self.dbs: dict[bytes, DB] = {}
        for key, value in self.items(self.meta.main):
            if len(value) != _DB.size:
                raise self._damaged(f"the main database's record of {key!r} is not a database record")
            self.dbs[key] = DB.unpack(value)
        for db in (self.meta.free, self.meta.main, *self.dbs.values()):
            if not db.empty and not 2 <= db.root < self.pages:
                raise self._damaged(f"a database's root page {db.root} lies outside the file's pages")

    def _damaged(self, what: str) -> Damaged:
        return Damaged(self.name, what)

    def _current_meta(self) -> Meta:
        if self.size == 0:
            raise self._damaged("data.mdb is empty (0 bytes): the shard was cut short or never written")
        first = os.pread(self.fd, HEADER + _META.size, 0)
        metas: list[Meta] = []
        problems: list[str] = []
        psize = None
        if len(first) == HEADER + _META.size:
            psize = _DB.unpack(first[HEADER + 24:HEADER + 72])[0]
        sizes = [psize] if psize in PAGE_SIZES else list(PAGE_SIZES)
        for size in sizes:
            metas, problems = [], []
            for n in (0, 1):
                raw = os.pread(self.fd, HEADER + _META.size, n * size)
                meta, problem = self._meta(raw, n, size)
                (metas.append(meta) if meta else problems.append(problem))
            if metas:
                break
        if not metas:
            raise self._damaged(f"not an LMDB file any more ({problems[0]}): overwritten or cut short")
        # LMDB writes both meta pages when it makes the file and then each commit the other one, so a
        # whole file has two valid meta pages of consecutive transactions. One that is not valid, or
        # far from the other, may have held the last commit: reading the other would silently go back
        # a transaction, so it is damage.
        if problems:
            raise self._damaged(f"{problems[0]}: the last committed transaction may be lost")
        if abs(metas[0].txnid - metas[1].txnid) > 1:
            raise self._damaged(f"the meta pages disagree (transactions {metas[0].txnid} and "
                                f"{metas[1].txnid}): one of them was changed")
        return max(metas, key=lambda m: m.txnid)

    @staticmethod
    def _meta(raw: bytes, n: int, psize: int) -> tuple[Optional[Meta], str]:
        if len(raw) < HEADER + _META.size:
            return None, f"meta page {n} is missing"
        pgno, _, flags, _, _ = _HEAD.unpack_from(raw)
        magic, version, _, _, free, main, last_pg, txnid = _META.unpack_from(raw, HEADER)
        if magic != MAGIC or not flags & P_META or pgno != n:
            return None, f"meta page {n} has no LMDB signature"
        if version != DATA_VERSION:
            return None, f"meta page {n} is of LMDB data version {version}, not {DATA_VERSION}"
        free_db = DB.unpack(free)
        if _DB.unpack(free)[0] != psize:
            return None, f"meta page {n} gives another page size"
        return Meta(psize, free_db, DB.unpack(main), last_pg, txnid), ""

    def _missing_tail(self) -> None:
        """The file must hold every page up to the last the meta page records, but those the free
        list holds (LMDB may never have written a page it allocated and freed again)."""
        have = self.size // self.psize
        if have >= self.pages:
            return
        missing = set(range(have, self.pages))
        if not self.meta.free.empty:
            try:
                for _, value in self.items(self.meta.free):
                    missing.difference_update(_free_pages(value))
                    if not missing:
                        return
            except Damaged:  # the free list itself lies past the end: cut short, as said below
                pass
        if missing:
            raise self._damaged(
                f"data.mdb is {self.size:,} bytes, but its last committed transaction uses pages up to "
                f"{self.pages - 1} ({self.pages * self.psize:,} bytes): the file was cut short (an "
                "interrupted copy or a full disk?)")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    # -- pages and nodes -----------------------------------------------------------------------
    def _read(self, pgno: int, n: int = 1) -> bytes:
        if not 0 <= pgno or pgno + n > self.pages:
            raise self._damaged(f"a page number ({pgno}) points past the last page ({self.pages - 1})")
        data = os.pread(self.fd, n * self.psize, pgno * self.psize)
        if len(data) != n * self.psize:
            raise self._damaged(f"the file ends inside page {pgno + len(data) // self.psize} "
                                f"({self.size:,} bytes): it was cut short")
        return data

    def _page(self, pgno: int) -> _Page:
        data = self._read(pgno)
        number, _, flags, lower, upper = _HEAD.unpack_from(data)
        if number != pgno:
            raise self._damaged(f"page {pgno} is not what its header says (page {number}): "
                                "overwritten, zeroed or misplaced")
        kind = flags & (P_BRANCH | P_LEAF | P_OVERFLOW | P_META | P_LEAF2 | P_SUBP)
        if kind not in (P_BRANCH, P_LEAF):
            raise self._damaged(f"page {pgno} should be a branch or leaf page (flags {flags:#x})")
        if not HEADER <= lower <= upper <= self.psize or (lower - HEADER) % 2:
            raise self._damaged(f"page {pgno}'s free space bounds are impossible ({lower}, {upper})")
        n = (lower - HEADER) // 2
        ptrs = struct.unpack_from(f"<{n}H", data, HEADER)
        for p in ptrs:
            if not upper <= p <= self.psize - NODE or p % 2:
                raise self._damaged(f"page {pgno} has a node at an impossible offset ({p})")
        return _Page(pgno, data, kind == P_LEAF, ptrs)

    def _key(self, page: _Page, i: int) -> bytes:
        p = page.ptrs[i]
        ksize = _NODE.unpack_from(page.data, p)[3]
        if p + NODE + ksize > self.psize:
            raise self._damaged(f"page {page.pgno}: node {i}'s key runs past the page")
        return page.data[p + NODE:p + NODE + ksize]

    def _child(self, page: _Page, i: int) -> int:
        lo, hi, top, _ = _NODE.unpack_from(page.data, page.ptrs[i])
        child = lo | hi << 16 | top << 32
        if not 2 <= child < self.pages:
            raise self._damaged(f"page {page.pgno}: node {i} points at page {child}, outside the file")
        return child

    def _value(self, page: _Page, i: int) -> bytes:
        p = page.ptrs[i]
        lo, hi, flags, ksize = _NODE.unpack_from(page.data, p)
        size, start = lo | hi << 16, p + NODE + ksize
        if flags not in (0, F_BIGDATA, F_SUBDATA) or (flags == F_SUBDATA and size != _DB.size):
            raise self._damaged(f"page {page.pgno}: node {i} has flags {flags:#x} no tsn store writes")
        if size > MAX_VALUE:
            raise self._damaged(f"page {page.pgno}: node {i} claims a value of {size:,} bytes")
        if not flags & F_BIGDATA:
            if start + size > self.psize:
                raise self._damaged(f"page {page.pgno}: node {i}'s value runs past the page")
            return page.data[start:start + size]
        if start + 8 > self.psize:
            raise self._damaged(f"page {page.pgno}: node {i}'s overflow page number runs past the page")
        first = _PGNO.unpack_from(page.data, start)[0]
        count = (HEADER - 1 + size) // self.psize + 1
        if not 2 <= first or first + count > self.pages:
            raise self._damaged(f"page {page.pgno}: node {i}'s value ({size:,} bytes on page {first}) "
                                "lies outside the file's pages")
        raw = os.pread(self.fd, HEADER + size, first * self.psize)
        if len(raw) != HEADER + size:
            raise self._damaged(f"the file ends inside the value on page {first}: it was cut short")
        number, _, oflags, pages = _OVERFLOW.unpack_from(raw)
        if number != first or not oflags & P_OVERFLOW or pages < count:
            raise self._damaged(f"page {first} should start {count} overflow page(s) of a "
                                f"{size:,}-byte value: overwritten, zeroed or misplaced")
        return raw[HEADER:]

    def _branch(self, pgno: int, page: Optional[_Page] = None) -> tuple[list[bytes], list[int]]:
        """A branch page's keys (from its second node: the first is empty) and children; kept."""
        got = self._branches.get(pgno)
        if got is None:
            page = page or self._page(pgno)
            if page.leaf:
                raise self._damaged(f"page {pgno} should be a branch page")
            if not page.ptrs:
                raise self._damaged(f"branch page {pgno} has no nodes")
            keys = [self._key(page, i) for i in range(1, len(page.ptrs))]
            got = (keys, [self._child(page, i) for i in range(len(page.ptrs))])
            if len(self._branches) < 65536:
                self._branches[pgno] = got
        return got

    def _down(self, pgno: int) -> Union[tuple[list[bytes], list[int]], _Page]:
        """Page ``pgno``: a branch page's keys and children (kept), or a leaf page."""
        got = self._branches.get(pgno)
        if got is not None:
            return got
        page = self._page(pgno)
        if page.leaf:
            return page
        return self._branch(pgno, page)

    def _leaf_for(self, db: DB, key: bytes) -> _Page:
        """The leaf page where ``key`` is or would be."""
        pgno = db.root
        for _ in range(MAX_DEPTH):
            got = self._down(pgno)
            if isinstance(got, _Page):
                return got
            keys, children = got
            pgno = children[bisect_right(keys, key)]
        raise self._damaged(f"a tree is deeper than {MAX_DEPTH} pages: its pages point in a circle")

    # -- reading -------------------------------------------------------------------------------
    def db(self, name: bytes) -> Optional[DB]:
        """A named database's record, None if the file has none of that name."""
        return self.dbs.get(name)

    def get(self, db: DB, key: bytes) -> Optional[bytes]:
        """The value of ``key`` in ``db``, None if absent."""
        if db.empty:
            return None
        page = self._leaf_for(db, key)
        lo, hi = 0, len(page.ptrs)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._key(page, mid) < key:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(page.ptrs) and self._key(page, lo) == key:
            return self._value(page, lo)
        return None

    def items(self, db: DB, lo: bytes = b"", hi: Optional[bytes] = None,
              values: bool = True) -> Iterator[tuple[bytes, Optional[bytes]]]:
        """``(key, value)`` of the keys ``lo <= key < hi`` (``hi`` None: to the end) in key order;
        with ``values`` False the values are None and never read."""
        if db.empty:
            return
        stack: list[tuple[list[bytes], list[int], int]] = []
        got = self._down(db.root)
        while not isinstance(got, _Page):
            if len(stack) >= MAX_DEPTH:
                raise self._damaged(f"a tree is deeper than {MAX_DEPTH} pages: its pages point in a circle")
            keys, children = got
            i = bisect_right(keys, lo)
            stack.append((keys, children, i))
            got = self._down(children[i])
        first = True
        while True:
            page = got
            start = 0
            if first and lo:
                start, end = 0, len(page.ptrs)
                while start < end:
                    mid = (start + end) // 2
                    if self._key(page, mid) < lo:
                        start = mid + 1
                    else:
                        end = mid
            first = False
            for i in range(start, len(page.ptrs)):
                key = self._key(page, i)
                if hi is not None and key >= hi:
                    return
                yield key, (self._value(page, i) if values else None)
            # the next leaf: up to the nearest branch with a next child, then down its first
            while stack and stack[-1][2] + 1 >= len(stack[-1][1]):
                stack.pop()
            if not stack:
                return
            keys, children, i = stack.pop()
            stack.append((keys, children, i + 1))
            got = self._down(children[i + 1])
            while not isinstance(got, _Page):
                if len(stack) >= MAX_DEPTH:
                    raise self._damaged(f"a tree is deeper than {MAX_DEPTH} pages: its pages point in a circle")
                keys, children = got
                stack.append((keys, children, 0))
                got = self._down(children[0])

    def count(self, db: DB) -> int:
        """The number of entries the database's record gives."""
        return db.entries

    # -- the whole file ------------------------------------------------------------------------
    def check(self, values: bool = False) -> None:
        """Walk every tree of the file (the free list, the main database, every named one): each
        page read and checked once, keys ascending, depths and counts as the records give them,
        no page in two places. ``values``: read every value too (overflow pages and their headers),
        as ``verify`` does; without, the overflow runs are only checked to lie inside the file."""
        used = bytearray(self.pages)  # one byte a page: pages 0 and 1 are the meta pages
        used[0:2] = b"\x01\x01"
        for name, db in (("the free list", self.meta.free), ("the main database", self.meta.main),
                         *((f"database {k.decode('utf-8', 'replace')}", v) for k, v in self.dbs.items())):
            self._check_tree(name, db, used, values or db is self.meta.free)
        # a page the free list holds must be in no tree: a writer would reuse it, over live data
        for _, value in self.items(self.meta.free):
            pages = _free_pages(value)
            if len(pages) * 8 + 8 != len(value):
                raise self._damaged("a record of the free list is not a list of pages")
            for n in pages:
                if not 2 <= n < self.pages:
                    raise self._damaged(f"the free list holds page {n}, outside the file's pages")
                if used[n]:
                    raise self._damaged(f"page {n} is both in use and on the free list")
                used[n] = 1

    def _check_tree(self, name: str, db: DB, used: bytearray, values: bool) -> None:
        if db.empty:
            if db.entries or db.depth:
                raise self._damaged(f"{name} is empty but its record counts {db.entries} entries")
            return
        order = (lambda k: int.from_bytes(k, "little")) if db.flags & INTEGERKEY else (lambda k: k)
        counts = [0, 0, 0, 0]  # branch, leaf, overflow pages, entries
        last: list = [None]

        def mark(first: int, n: int) -> None:
            if any(used[first:first + n]):
                raise self._damaged(f"page {first} is used twice ({name})")
            used[first:first + n] = b"\x01" * n

        def visit(pgno: int, depth: int, low, high) -> None:
            if depth > db.depth or depth > MAX_DEPTH:
                raise self._damaged(f"{name}'s tree is deeper than its record's {db.depth} levels")
            mark(pgno, 1)
            page = self._page(pgno)
            if not page.ptrs:
                raise self._damaged(f"page {pgno} of {name} has no nodes")
            if page.leaf:
                if depth != db.depth:
                    raise self._damaged(f"{name}: leaf page {pgno} at depth {depth}, not {db.depth}")
                counts[1] += 1
                for i in range(len(page.ptrs)):
                    key = order(self._key(page, i))
                    if (last[0] is not None and key <= last[0]) or (low is not None and key < low) \
                            or (high is not None and key >= high):
                        raise self._damaged(f"{name}: the keys of page {pgno} are out of order")
                    last[0] = key
                    counts[3] += 1
                    counts[2] += self._check_value(page, i, values, mark)
                return
            counts[0] += 1
            keys, children = self._branch(pgno, page)
            bounds = [low, *map(order, keys), high]
            for i, child in enumerate(children):
                if bounds[i] is not None and bounds[i + 1] is not None and not bounds[i] < bounds[i + 1]:
                    raise self._damaged(f"{name}: the keys of branch page {pgno} are out of order")
                visit(child, depth + 1, bounds[i], bounds[i + 1])

        visit(db.root, 1, None, None)
        want = [db.branch_pages, db.leaf_pages, db.overflow_pages, db.entries]
        if counts != want:
            raise self._damaged(f"{name} holds {counts[3]} entries on {counts[0]} branch, {counts[1]} "
                                f"leaf and {counts[2]} overflow pages; its record says {want[3]} on "
                                f"{want[0]}, {want[1]} and {want[2]}")

    def _check_value(self, page: _Page, i: int, values: bool, mark) -> int:
        """Check a leaf node's value (read it, with ``values``); the overflow pages it takes."""
        p = page.ptrs[i]
        lo, hi, flags, ksize = _NODE.unpack_from(page.data, p)
        if values or not flags & F_BIGDATA:
            self._value(page, i)  # every check of the node and its value
        if not flags & F_BIGDATA:
            return 0
        size = lo | hi << 16
        if p + NODE + ksize + 8 > self.psize or size > MAX_VALUE:
            self._value(page, i)  # raises, saying why
        first = _PGNO.unpack_from(page.data, p + NODE + ksize)[0]
        count = (HEADER - 1 + size) // self.psize + 1
        if not 2 <= first or first + count > self.pages:
            self._value(page, i)  # raises, saying why
        mark(first, count)
        return count


def _free_pages(value: bytes) -> list[int]:
    """The page numbers of a free-list record (an IDL: a count, then the numbers)."""
    if len(value) < 8 or len(value) % 8:
        return []
    n = _PGNO.unpack_from(value)[0]
    if n * 8 + 8 != len(value):
        return []
    return list(struct.unpack_from(f"<{n}Q", value, 8))
