"""The stored images' codec: every image in a store is a JPEG (frames three-channel BGR, flow one
channel per component) or, for imported folders, a PNG; written and read only through here."""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """A uint8 BGR or one-channel image as JPEG bytes at ``quality`` (OpenCV's libjpeg)."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def decode_image(data: bytes, flags: int = cv2.IMREAD_UNCHANGED) -> Optional[np.ndarray]:
    """Stored JPEG/PNG bytes -> image (OpenCV ``flags``), None when they do not decode (an empty
    file included: OpenCV raises on an empty buffer rather than return None)."""
    if not len(data):
        return None
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        return None
