"""The store: a directory of LMDB shards holding JPEG frames and flow, keyed by video id; its
format and its reader, below both packages (``tsn_prep.writer`` writes it, everything reads it
through :class:`Store`).

See docs/format.md for the byte-level layout. In short, OUT holds ``shard-IIIII-of-NNNNN/`` LMDB
environments with seven named databases: ``images`` (``<id>|<channel>|<index:06d>`` -> JPEG),
``meta`` (``<id>|<modality>`` -> JSON), ``failures`` (``<id>|<modality>`` -> JSON), ``info``,
``checksums`` (``<id>|<channel>`` -> the CRC-32 of every image of that channel, 4 bytes each), and
the compact index ``entries`` and ``params``. A video's images for a modality, their checksums and
its meta entry are written in one transaction, so a reader (or a resumed job) sees all of a video
or none of it.

One module per job: ``keys`` (key forms), ``shards`` (shard choice, names, databases, layout
record), ``checksums``, ``index_record`` (the compact index's record), ``records`` (meta and
:class:`Failure` records), ``handles`` (per-process read handles), ``table`` (the compact index in
memory: :class:`Entry`, ``Index``) and ``reader`` (:class:`Store`).
"""
from .checksums import ChecksumError
from .reader import CHECK_ENV, Store
from .records import FOLDER_FAILURE, Failure
from .table import Entry

__all__ = ["CHECK_ENV", "ChecksumError", "Entry", "FOLDER_FAILURE", "Failure", "Store"]
