"""``tsn-train export``: a checkpoint as one self-contained ONNX or TorchScript file for deployment.

The exported model takes what a loader hands over, uint8 snippets in stored levels, and returns
the video's class scores: the input scaling (``transforms.to_input``, channel order, means and
stds, RGB differences) and the segmental consensus run inside it, so a deployment only crops
frames and calls it. :class:`Deployable` is that model in PyTorch; ``tsn-train stream`` scores
with it too, so the exported files and the live scores come from one definition.

Input ``frames``: uint8 ``(N, K, L, S, S, C)``: N videos (any N), K snippets (the checkpoint's
segments), L images per snippet (1 rgb, 6 rgbdiff, 5 flow), S the crop side, C = 3 (BGR, as
OpenCV decodes) or 2 (flow x, y levels). Output ``scores``: float32 ``(N, classes)`` before
softmax. Both formats carry the same metadata (:func:`metadata`): ONNX in its ``metadata_props``
under ``tsn``, TorchScript as the extra file ``tsn.json``.
"""
from __future__ import annotations

import importlib.util
import json
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from tsn_core import modalities

from . import checkpoint
from .checkpoint import Checkpoint, Preprocessing
from .models import TSN
from .transforms import to_input

FORMATS = ("onnx", "torchscript")
METADATA_KEY = "tsn"           # ONNX metadata_props key
METADATA_FILE = "tsn.json"     # TorchScript extra file
INPUT, OUTPUT = "frames", "scores"
EXPORT_HINT = "pip install 'tsn[export]'  (onnx, onnxscript and onnxruntime)"


class Deployable(nn.Module):
    """A TSN stream from raw snippets to video scores: ``to_input`` + the TSN (its consensus)."""

    def __init__(self, model: TSN, prep: Preprocessing):
        super().__init__()
        self.model = model.eval()
        self.modality, self.norm = prep.modality, prep.norm

    def forward(self, frames: Tensor) -> Tensor:
        return self.model(to_input(frames, self.modality, self.norm))


def input_shape(ckpt: Checkpoint) -> tuple[int, ...]:
    """``(K, L, S, S, C)`` of one video's input (without the batch dimension)."""
    spec = modalities.get(ckpt.preprocessing.modality)
    size = ckpt.preprocessing.input_size
    return (ckpt.config.segments, spec.snippet_length, size, size, spec.image_channels)


def metadata(ckpt: Checkpoint) -> dict:
    """What a deployment needs to know besides the weights: classes, input layout, how frames were
    extracted and cropped for training."""
    spec = modalities.get(ckpt.modality)
    return {
        "format": "tsn-export", "version": 1,
        "modality": ckpt.modality, "arch": ckpt.arch, "classes": list(ckpt.classes),
        "input": {"name": INPUT, "dtype": "uint8", "shape": ["N", *input_shape(ckpt)],
                  "layout": "N videos, K snippets, L images, height, width, channels",
                  "channels": "flow x, y levels (128 = no motion)" if spec.is_flow
                  else "B, G, R as OpenCV decodes"},
        "output": {"name": OUTPUT, "shape": ["N", len(ckpt.classes)],
                   "meaning": "class scores before softmax (the consensus of the K snippets)"},
        "preprocessing": ckpt.preprocessing.to_dict(),
        "extraction": ckpt.extraction,
    }


def deployable(ckpt: Checkpoint) -> Deployable:
    """The checkpoint's stream as a :class:`Deployable` on the CPU, in eval mode."""
    return Deployable(checkpoint.model_from_checkpoint(ckpt), ckpt.preprocessing).eval()


def _example(ckpt: Checkpoint) -> Tensor:
    # batch 2: an example of batch 1 would let the exporters fold the batch size into the graph
    return torch.randint(0, 256, (2, *input_shape(ckpt)), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(0))


def export_onnx(ckpt: Checkpoint, out: Path) -> None:
    """Write the stream as ONNX (torch.export-based exporter) with a dynamic batch dimension."""
    if importlib.util.find_spec("onnxscript") is None:  # say so before the exporter fails inside
        raise RuntimeError(f"ONNX export needs onnx and onnxscript: {EXPORT_HINT}")
    model = deployable(ckpt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (_example(ckpt),), dynamo=True, verbose=False,
                                    input_names=[INPUT], output_names=[OUTPUT],
                                    dynamic_shapes=({0: torch.export.Dim("N")},))
    program.model.metadata_props[METADATA_KEY] = json.dumps(metadata(ckpt))
    program.save(str(out))


def export_torchscript(ckpt: Checkpoint, out: Path) -> None:
    """Write the stream as TorchScript (traced) with a dynamic batch dimension."""
    model = deployable(ckpt)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream but still what C++ loads
        traced = torch.jit.trace(model, (_example(ckpt),))
        torch.jit.save(traced, str(out), _extra_files={METADATA_FILE: json.dumps(metadata(ckpt))})


def export(ckpt_path: Path, fmt: str, out: Path) -> dict:
    """Export the checkpoint at ``ckpt_path`` as ``fmt`` to ``out``; returns its metadata."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    ckpt = checkpoint.load(ckpt_path)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")  # never a half-written model at ``out``
    try:
        (export_onnx if fmt == "onnx" else export_torchscript)(ckpt, tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return metadata(ckpt)


def read_metadata(path: Path) -> dict:
    """The metadata an exported file carries (either format)."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return json.loads(props[METADATA_KEY])
    extra = {METADATA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra[METADATA_FILE])
