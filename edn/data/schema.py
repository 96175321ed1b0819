"""The frame/pose dataset: its Parquet schema and layout, in one place.

    DATASET/frames/<id>/part-<segment>.parquet   one row per frame, FRAMES_SCHEMA, in frame order;
                                                 one part per decoded segment of the video
    DATASET/videos/<id>.json                     per-video record (VIDEO_FIELDS), written last:
                                                 its presence means the video is complete
    DATASET/errors/<id>.json                     a video that could not be ingested, and why
    DATASET/_staging/<id>-<key>/seg-<start>.parquet   a segment's decoded frames and every person
                                                 detected (STAGING_SCHEMA), kept until the video is
                                                 committed so a rerun redoes only missing segments

Each part and the record are published atomically; readers go by the record's list of parts,
so a video whose commit was cut off is invisible until a rerun completes it.
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
    pa.field("person_detected", pa.bool_(), nullable=False),   # the dancer was detected in this frame
    pa.field("people_detected", pa.int16(), nullable=False),   # everybody the detector found
    # per keypoint: edn.pose.cleanup.FLAGS (0 not detected, 1 detected, 2 interpolated, 3 dropped)
    pa.field("keypoint_flags", pa.list_(pa.uint8(), N_KEYPOINTS), nullable=False),
    # face crop box x0, y0, x1, y1 in the stored image (edn.pose.face); null without a nose. A
    # variable-size list: a null fixed-size list is written by pyarrow but cannot be read back
    # (by pyarrow, pandas or Ray Data) once a frame has no face box; layout 1 stored it so.
    pa.field("face_box", pa.list_(pa.int32()), nullable=True),
])

# The frame dataset's layout, recorded in every video's record ("layout"; absent = 1). Readers
# refuse older layouts with the command that rewrites them (edn.data.upgrade).
LAYOUT = 2

STAGING_SCHEMA = pa.schema([
    *(FRAMES_SCHEMA.field(name) for name in ("video_id", "frame_index", "timestamp", "width", "height", "image")),
    # every person detected, each a flattened (137, 3) pose in the stored image's pixels
    pa.field("people", pa.list_(pa.list_(pa.float32(), N_KEYPOINTS * 3)), nullable=False),
])

# videos/<id>.json: video_id, source_url, frames, detected_frames (the dancer's), fps (average),
# source_width, source_height (as displayed), rotation, width, height (stored), transform
# {scale, offset_x, offset_y} (stored = displayed source * scale + offset), estimator and its
# options, parts (file names under frames/<id>/, in order), segments, keypoints (tracking and
# cleanup settings and counts), face_box_size, floor_stats (edn.pose.normalize.FloorStats, or
# null with floor_stats_error when the ankles are never seen), seconds, committed_at (UTC; the
# version of the video's entry, recorded by training runs), layout (LAYOUT), frames_without_pose
# (frames where the dancer's pose is missing even after gap filling: edn.pose.layout.has_pose).
VIDEO_FIELDS = ("video_id", "layout", "source_url", "frames", "detected_frames", "frames_without_pose", "fps",
                "source_width", "source_height",
                "rotation", "width", "height", "transform", "estimator", "estimator_options", "parts",
                "segments", "keypoints", "face_box_size", "floor_stats", "floor_stats_error", "seconds",
                "committed_at")

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


def frames_table(rows: list[dict], schema: pa.Schema = FRAMES_SCHEMA) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)
