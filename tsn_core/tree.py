"""Walking an input folder without skipping anything silently: what extraction (VIDEOS) and
import-frames (DIR) search."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Tree:
    """What a walk found: the names of the files (anything but folders, broken links included) in
    each folder reached, the folders that could not be listed, with why, and the symlinks that
    lead back to a folder above them (followed once, not again)."""

    files: dict[Path, list[str]] = field(default_factory=dict)
    unlisted: list[tuple[Path, str]] = field(default_factory=list)
    loops: list[Path] = field(default_factory=list)


def walk(root: Path) -> Tree:
    """Every folder under ``root`` (``root`` included), in sorted order, following symlinked
    folders (datasets are often linked into a project) but not into a folder of their own
    ancestry, which would loop. The same folder reached by two links is walked twice: two links
    name two inputs."""
    root = Path(root)
    tree = Tree()

    def visit(folder: Path, ancestors: frozenset) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            tree.unlisted.append((folder, exc.strerror or str(exc)))
            return
        tree.files[folder] = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows symlinks; a broken link is no folder
            except OSError:
                is_dir = False
            if not is_dir:
                tree.files[folder].append(entry.name)
                continue
            path = Path(entry.path)
            try:
                st = entry.stat()
            except OSError as exc:
                tree.unlisted.append((path, exc.strerror or str(exc)))
                continue
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                tree.loops.append(path)
            else:
                visit(path, ancestors | {key})

    st = root.stat()
    visit(root, frozenset({(st.st_dev, st.st_ino)}))
    return tree
