"""Which files are videos: the file name extensions taken for videos when a folder is listed
(``tsn_prep.video``), and when a store's root turns out to hold videos instead (``tsn_core.store``)."""
from __future__ import annotations

VIDEO_EXTENSIONS = frozenset(
    ".mp4 .avi .mkv .webm .mov .m4v .mpg .mpeg .flv .wmv .3gp .ogv .ts .mts .m2ts".split()
)
