"""``tsn-train predict`` and ``stream``'s common start, and predict's loop: the streams a command
scores with (checkpoints, fusion weights, device, mixed precision: one record), and raw video
files classified one after another, one line each on stdout."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from tsn_core import interrupts
from tsn_core.progress import Rates, bar as progress_bar

if TYPE_CHECKING:
    import torch

    from .predict import Stream


@dataclass(frozen=True)
class Streams:
    """The streams to score with: one checkpoint each, fused with ``weights`` (None: 1 each), on
    ``device`` (auto, cpu, cuda or cuda:N) under ``amp`` (``tsn-train test --amp``)."""

    checkpoints: tuple[Path, ...]
    weights: Optional[list[float]] = None
    device: str = "auto"
    amp: str = "auto"

    def load(self) -> tuple[list[Stream], torch.device]:
        """The streams' models on the resolved device, and that device."""
        from . import distributed
        from .predict import load_streams

        dev = distributed.resolve_device(self.device)
        return load_streams(list(self.checkpoints), self.weights, dev, self.amp), dev


def predict_files(videos: Sequence[Path], streams: list[Stream], segments: int, crops: int, top: int,
                  decoders: Sequence[str], as_json: bool = False) -> int:
    """Classify each video file: one line on stdout with its ``top`` classes (``as_json``: one
    JSON object), or an error line on stderr. Returns how many failed."""
    from .predict import predict_video
    from .scores import ranked

    classes = streams[0].checkpoint.classes
    failed = 0
    interrupts.safe("the videos printed above are done; run the command again with the others")
    bar = progress_bar(total=len(videos), unit="video", desc="predict")
    inside = Rates(bar, "frames", "pairs")  # decoding and flow of a long video move the bar
    for path in videos:
        try:
            probs = predict_video(path, streams, segments, crops, decoders=decoders, progress=inside.add)
        except ValueError as exc:
            bar.write(f"error: {exc}", file=sys.stderr)
            failed += 1
            bar.update(1)
            continue
        finally:
            bar.set_postfix_str(inside.text(), refresh=False)
        top_classes = ranked(probs, classes, top)
        if as_json:
            line = json.dumps({"video": str(path), "top": [{"class": c, "probability": p}
                                                            for c, p in top_classes]})
        else:
            line = f"{path}: " + ", ".join(f"{c} {p:.3f}" for c, p in top_classes)
        bar.write(line, file=sys.stdout)
        sys.stdout.flush()
        bar.update(1)
    bar.close()
    return failed
