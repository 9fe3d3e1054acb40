"""TV-L1 parameters: one frozen record shared by every flow backend and recorded in each video's
metadata (``as_dict``), so a later reader (``tsn-train predict``) rebuilds it with ``from_dict``.
A field with a ``help`` in its metadata is a ``tsn-prep extract-flow`` option (``min``: its lowest
value, ``option``: its name where that is not the field's)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class TVL1Params:
    """OpenCV ``DualTVL1OpticalFlow`` parameters; defaults are OpenCV's, which the reference tools use."""

    tau: float = field(default=0.25, metadata={"help": "TV-L1 time step."})
    lambda_: float = field(default=0.15, metadata={"help": "TV-L1 data-term weight (smaller: smoother flow).",
                                                   "option": "lambda"})
    theta: float = field(default=0.3, metadata={"help": "TV-L1 coupling weight."})
    scales: int = field(default=5, metadata={"help": "Pyramid levels.", "min": 1})
    warps: int = field(default=5, metadata={"help": "Warps per level.", "min": 1})
    epsilon: float = field(default=0.01, metadata={"help": "Stopping threshold."})
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    gamma: float = 0.0
    median_filtering: int = 5

    def as_dict(self) -> dict:
        """The metadata form: ``lambda`` spelt as OpenCV and the papers spell it."""
        d = asdict(self)
        d["lambda"] = d.pop("lambda_")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TVL1Params":
        """Inverse of ``as_dict``; missing keys take the defaults, unknown keys are an error."""
        d = dict(d)
        if "lambda" in d:
            d["lambda_"] = d.pop("lambda")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TV-L1 parameters: {', '.join(unknown)}")
        return cls(**d)
