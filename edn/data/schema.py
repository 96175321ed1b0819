"""The frame/pose dataset: its Parquet schema and layout, in one place.

    DATASET/frames/<id>/part-0.parquet           one row per frame, FRAMES_SCHEMA, in frame order
    DATASET/videos/<id>.json                       per-video record (VIDEO_FIELDS), written last:
                                                   its presence means the video is complete
    DATASET/errors/<id>.json                       a video that could not be ingested, and why

Each video's frames are written to a temporary object and published in one step, then its
record; a rerun skips videos whose record exists and retries those in errors/.
"""
from __future__ import annotations

import cv2
import numpy as np
import pyarrow as pa

from edn.pose.layout import N_KEYPOINTS

FRAMES_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("frame_index", pa.int32(), nullable=False),       # 0-based, in decode order
    pa.field("timestamp", pa.float64(), nullable=False),       # seconds, from the container
    pa.field("width", pa.int32(), nullable=False),             # of the stored image
    pa.field("height", pa.int32(), nullable=False),
    pa.field("image", pa.binary(), nullable=False),            # JPEG, RGB
    # (137, 3) pose flattened: x, y in the stored image's pixels, confidence; layout.py's order
    pa.field("keypoints", pa.list_(pa.float32(), N_KEYPOINTS * 3), nullable=False),
    pa.field("person_detected", pa.bool_(), nullable=False),
])

# videos/<id>.json: video_id, source_url, frames, detected_frames, fps, source_width,
# source_height, width, height, transform {scale, offset_x, offset_y} (stored = source*scale+offset),
# estimator, seconds.
VIDEO_FIELDS = ("video_id", "source_url", "frames", "detected_frames", "fps", "source_width",
                "source_height", "width", "height", "transform", "estimator", "seconds")

JPEG_QUALITY = 95


def encode_image(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


def decode_image(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("not a decodable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def keypoints_array(column) -> np.ndarray:
    """A keypoints column (lists, a 2-D array, or an object array of rows, as Arrow and Ray Data
    give them) -> (N, 137, 3) float32."""
    arr = np.asarray(column)
    if arr.dtype == object:
        arr = np.stack([np.asarray(row, np.float32) for row in arr]) if len(arr) else arr
    return arr.astype(np.float32).reshape(-1, N_KEYPOINTS, 3)


def frames_table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=FRAMES_SCHEMA)
