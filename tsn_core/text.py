"""Names as people read them: every message that names a file or a video id passes it through
``shown``, so a name of any bytes is one printable line."""
from __future__ import annotations

import os

# C0 controls and DEL, as escapes; everything else printable stays as it is
_ESCAPES = {i: f"\\x{i:02x}" for i in [*range(0x20), 0x7f]}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def shown(name: "str | os.PathLike") -> str:
    """``name`` on one printable line: bytes that are not UTF-8 (a Latin-1 file name, which Python
    holds as surrogate escapes) as ``\\xNN``, control characters (a newline...) escaped."""
    text = os.fspath(name)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    return utf8(text).decode("utf-8", "backslashreplace").translate(_ESCAPES)


def utf8(name: str) -> bytes:
    """The bytes of a name as the file system has them (surrogate escapes back to their bytes; any
    other lone surrogate, which no file name holds, as its escape)."""
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return name.encode("utf-8", "backslashreplace")


def is_utf8(name: str) -> bool:
    """Whether ``name`` is text a store key can hold (no surrogate escapes of non-UTF-8 bytes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
