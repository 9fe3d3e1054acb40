"""``tsn-train visualize``: what a trained stream has learned, one picture per class, written to
a folder (tsn_train/visualize.py draws; this loads the checkpoint, picks the classes and writes
CLASS.png, CLASS.npz, overview.png and summary.json)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional, Sequence

from tsn_core import interrupts
from tsn_core.progress import bar as progress_bar

from .config import DrawSettings


class UnknownClass(ValueError):
    """A class asked for that the checkpoint does not have; the message lists its classes."""


def file_stem(name: str) -> str:
    """A class name as a file name: anything but letters, digits, -, _ and . becomes _."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def draw_classes(checkpoint: Path, class_names: Sequence[str], out: Path, settings: DrawSettings,
                 size: Optional[int] = None, device: str = "auto") -> int:
    """Draw each class of ``class_names`` (all of the checkpoint's when empty) into ``out``,
    printing one line per class; ``size`` None draws at the checkpoint's input size. Returns how
    many classes were drawn. Raises UnknownClass before any drawing."""
    import cv2
    import numpy as np
    from tqdm import tqdm

    from tsn_core.quantize import BOUND

    from . import checkpoint as ckpt_mod
    from . import distributed
    from . import visualize as vis

    ckpt = ckpt_mod.load(checkpoint)  # its errors name the file
    dev = distributed.resolve_device(device)
    classes = ckpt.classes
    unknown = [c for c in class_names if c not in classes]
    if unknown:
        shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
        raise UnknownClass(f"{checkpoint}: no class {', '.join(map(repr, unknown))}; its classes: {shown}")
    wanted = list(dict.fromkeys(class_names)) or classes
    model = ckpt_mod.model_from_checkpoint(ckpt, dev).eval().requires_grad_(False)
    prep, modality = ckpt.preprocessing, ckpt.modality
    bound = float(ckpt.extraction.get("bound", BOUND))
    settings = dataclasses.replace(settings, size=size or prep.input_size)
    out.mkdir(parents=True, exist_ok=True)
    interrupts.safe(f"the class pictures listed above are complete in {out}; run the same command "
                    "again for all of them")
    summary, tiles = {}, []
    for name in progress_bar(iterable=wanted, total=len(wanted), desc="classes", unit="class"):
        c = classes.index(name)
        levels, noise = vis.draw(model, modality, prep.norm, c, settings, dev)
        p, p0 = vis.probabilities(model, np.stack([levels, noise]), modality, prep.norm, dev)[:, c]
        rows = vis.cells(levels, modality, bound)
        stem = file_stem(name)
        with interrupts.deferred():  # a class's two files, or neither
            cv2.imwrite(str(out / f"{stem}.png"), vis.grid(rows, f"{name}: p={p:.3f} (noise {p0:.3f})"))
            np.savez_compressed(out / f"{stem}.npz", levels=levels, noise=noise)
        tiles.append((name, vis.overview_tile(rows)))
        summary[name] = {"file": f"{stem}.png", "probability": float(p), "noise_probability": float(p0)}
        tqdm.write(f"{name}: probability {p:.3f} (noise {p0:.3f}) -> {out / (stem + '.png')}")
    with interrupts.deferred():
        cv2.imwrite(str(out / "overview.png"), vis.overview(tiles))
        (out / "summary.json").write_text(json.dumps(
            {"checkpoint": str(checkpoint), "modality": modality, "bound": bound,
             "settings": dataclasses.asdict(settings), "classes": summary}, indent=1) + "\n")
    return len(wanted)
