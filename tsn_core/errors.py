"""The errors of reading a store, below both packages: a store that cannot be read as asked
(``StoreError``) and one whose files are damaged (``Damaged``, raised by ``tsn_core.lmdbfile``)."""
from __future__ import annotations

from typing import Optional

DAMAGED_HELP = ("restore the shard from a copy, or re-extract its videos (docs/format.md, "
                "\"A damaged shard\")")


class StoreError(Exception):
    """A store that cannot be opened or written as asked; the message says why."""


class Damaged(StoreError):
    """A shard's files are not whole: cut short, overwritten, or a page or record is wrong. The
    message names the shard (or file) and what is wrong, on one line, and what to do."""

    def __init__(self, where: str, what: Optional[str] = None):
        # one argument: the whole message (as a DataLoader worker's exception is raised again)
        super().__init__(where if what is None else f"{where}: damaged: {what}; {DAMAGED_HELP}")
