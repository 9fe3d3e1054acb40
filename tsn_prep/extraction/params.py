"""What an extraction stores: the content parameters (``ExtractParams``), recorded with every
entry, and how recorded parameters differ from the ones asked for. How a run uses the machine is
its ``RunPlan`` (``plan``); what one video's work gives back is ``results``."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

from tsn_core import modalities
from tsn_core.quantize import BOUND

from .. import __version__
from .backends import algorithm_parameters
from .tvl1_params import TVL1Params
from .warp import WarpParams


@dataclass(frozen=True)
class ExtractParams:
    """Everything that decides the bytes we store, recorded in each video's metadata
    (``parameters``); how a run is carried out (devices, processes, batches) is its ``RunPlan``."""

    modalities: tuple[str, ...] = ("rgb",)
    size: Optional[tuple[int, int]] = (340, 256)
    short_side: Optional[int] = None
    max_frames: Optional[int] = None
    bound: float = BOUND
    jpeg_quality: int = 95
    tvl1: TVL1Params = TVL1Params()
    warp: WarpParams = WarpParams()
    algorithm: str = "tvl1"        # see tsn_prep.extraction.backends.ALGORITHMS

    @property
    def frame_modalities(self) -> tuple[str, ...]:
        """The requested modalities stored as frames (encoded where the video is decoded)."""
        return tuple(m for m in self.modalities if not modalities.get(m).is_flow)

    @property
    def flow_modalities(self) -> tuple[str, ...]:
        """The requested modalities computed from frame pairs by a flow solver."""
        return tuple(m for m in self.modalities if modalities.get(m).is_flow)

    def parameters(self, modality: str, flow_backend: str = "opencv") -> dict:
        """What an entry of ``modality`` records; ``flow_backend``: the TV-L1 implementation
        that ran (``backends.resolve_backend``), recorded for flow but not compared on a re-run."""
        p = {"size": list(self.size) if self.size else None, "short_side": self.short_side,
             "max_frames": self.max_frames, "jpeg_quality": self.jpeg_quality,
             "tsn_prep_version": __version__}
        if modalities.get(modality).is_flow:
            p.update(bound=self.bound, algorithm=self.algorithm)
            if self.algorithm == "tvl1":
                p.update(tvl1=self.tvl1.as_dict(), flow_backend=flow_backend)
            else:
                p.update({self.algorithm: algorithm_parameters(self.algorithm), "flow_backend": "opencv"})
        if modalities.get(modality).camera_compensated:
            p["warp"] = self.warp.as_dict()
        return p

    @classmethod
    def from_parameters(cls, parameters: dict, modality: str) -> "ExtractParams":
        """The settings that wrote an entry with these recorded ``parameters`` (the inverse of
        ``parameters``), to extract ``modality``'s source the same way; what an older entry did
        not record takes today's default."""
        default = cls()
        return cls(
            modalities=(modalities.get(modality).source,),
            size=tuple(parameters["size"]) if parameters.get("size") else None,
            short_side=parameters.get("short_side"), bound=parameters.get("bound", default.bound),
            jpeg_quality=parameters.get("jpeg_quality", default.jpeg_quality),
            algorithm=parameters.get("algorithm", default.algorithm),
            tvl1=TVL1Params.from_dict(parameters.get("tvl1") or {}),
            warp=WarpParams(**(parameters.get("warp") or {})))


# Recorded in each entry's parameters, but not what a re-run must match: the version that wrote it
# and which TV-L1 implementation ran (they agree to within 0.01 px; docs/flow-algorithms.md).
NOT_COMPARED = ("tsn_prep_version", "flow_backend")


def parameter_differences(stored: dict, wanted: dict, prefix: str = "") -> list[str]:
    """How an entry's recorded parameters differ from the ones asked for now, one
    ``name: stored X, asked Y`` per difference. Only names both record are compared: an entry
    written before a parameter existed is not a conflict."""
    out = []
    for name in sorted(set(stored) & set(wanted)):
        if name in NOT_COMPARED:
            continue
        a, b = stored[name], wanted[name]
        if isinstance(a, dict) and isinstance(b, dict):
            out += parameter_differences(a, b, f"{prefix}{name}.")
        elif a != b:
            out.append(f"{prefix}{name}: stored {json.dumps(a)}, asked {json.dumps(b)}")
    return out
