"""tsn-prep: videos -> RGB frames, TV-L1 flow and warped flow, as JPEGs in LMDB shards."""
import os

# FFmpeg inside OpenCV prints its own complaints ("moov atom not found") to stderr; our one-line
# errors replace them. Set before any submodule imports cv2 and opens a capture.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

__version__ = "0.1.0"
