"""Ingest, part 1: a video's segments decoded and detected in parallel, each staged as Parquet.

A segment is decoded as a stream (seeking to its first keyframe), every frame is turned upright,
every person in it detected, and frame and people are moved into the stored image's pixels
(scale to cover the training size, centre crop). Rows are written in row groups as they come,
so memory does not grow with the video; the finished file is published in one step.
"""
from __future__ import annotations

import hashlib
import json
import logging

import cv2
import numpy as np
import pyarrow.parquet as pq

from edn.data.schema import STAGING_SCHEMA, encode_image, frames_table
from edn.pose.estimator import PoseEstimator, make_estimator
from edn.pose.layout import N_KEYPOINTS
from edn.storage import join, written_locally
from edn.video import Segment, plan_segments, probe, read_frames

log = logging.getLogger(__name__)


def crop_transform(src_w: int, src_h: int, dst_w: int | None, dst_h: int | None) -> dict:
    """Scale to cover (dst_w, dst_h), then centre-crop: stored = source * scale + offset."""
    if not dst_w or not dst_h:
        return {"scale": 1.0, "offset_x": 0.0, "offset_y": 0.0, "width": src_w, "height": src_h}
    scale = max(dst_w / src_w, dst_h / src_h)
    return {"scale": scale, "offset_x": (dst_w - src_w * scale) / 2, "offset_y": (dst_h - src_h * scale) / 2,
            "width": dst_w, "height": dst_h}


def apply_transform(frame: np.ndarray, people: np.ndarray, t: dict) -> tuple[np.ndarray, np.ndarray]:
    """A frame and its (P, 137, 3) people -> the stored image and the people in its pixels."""
    if t["scale"] == 1.0 and t["offset_x"] == 0 and t["offset_y"] == 0:
        return frame, people
    m = np.array([[t["scale"], 0, t["offset_x"]], [0, t["scale"], t["offset_y"]]], np.float32)
    frame = cv2.warpAffine(frame, m, (t["width"], t["height"]), flags=cv2.INTER_AREA)
    people = people.copy()
    people[:, :, :2] = people[:, :, :2] * t["scale"] + (t["offset_x"], t["offset_y"])
    return frame, people


def staging_url(out_url: str, video_id: str, url: str, settings: dict) -> str:
    """Where a video's segments are staged: keyed by everything that shapes their content, so a
    rerun with other settings never reuses them."""
    key = hashlib.sha1(json.dumps([url, settings], sort_keys=True).encode()).hexdigest()[:12]
    return join(out_url, "_staging", f"{video_id}-{key}")


def segment_file(staging: str, start: int) -> str:
    return join(staging, f"seg-{start:09d}.parquet")


def plan_video(url: str, video_id: str, out_url: str, settings: dict, segment_frames: int) -> dict:
    """Probe and cut one video: {"video": its plan, "segments": rows for the extraction}."""
    info = probe(url)
    t = crop_transform(info.width, info.height, settings["width"], settings["height"])
    segments = plan_segments(url, segment_frames)
    staging = staging_url(out_url, video_id, url, settings)
    video = {"video_id": video_id, "url": url, "staging": staging, "fps": info.fps, "rotation": info.rotation,
             "source_width": info.width, "source_height": info.height, "transform": t,
             "frames": segments[-1].stop, "segments": [[s.start, s.stop] for s in segments]}
    rows = [{"video_id": video_id, "url": url, "staging_file": segment_file(staging, s.start), "start": s.start,
             "stop": s.stop, "start_pts": s.start_pts, "stop_pts": s.stop_pts, "transform": json.dumps(t)}
            for s in segments]
    return {"video": video, "segments": rows}


def extract_segment(row: dict, estimator: PoseEstimator, rows_per_group: int = 64) -> int:
    """Decode and detect one segment into its staging file; returns the frames written."""
    url, t = row["url"], json.loads(row["transform"])
    seg = Segment(int(row["start"]), int(row["stop"]), _int_or_none(row["start_pts"]), _int_or_none(row["stop_pts"]))
    estimator.begin(url)
    frames = 0
    with written_locally(row["staging_file"]) as local:
        with pq.ParquetWriter(local, STAGING_SCHEMA) as writer:
            rows = []
            for index, ts, frame in read_frames(url, seg):
                image, people = apply_transform(frame, estimator.estimate(frame, index), t)
                rows.append({"video_id": row["video_id"], "frame_index": index, "timestamp": ts,
                             "width": image.shape[1], "height": image.shape[0], "image": encode_image(image),
                             "people": people.reshape(len(people), N_KEYPOINTS * 3).tolist()})
                frames += 1
                if len(rows) >= rows_per_group:
                    writer.write_table(frames_table(rows, STAGING_SCHEMA))
                    rows = []
                    log.info("%s: frames %d-%d decoded", row["video_id"], seg.start, index)
            if rows:
                writer.write_table(frames_table(rows, STAGING_SCHEMA))
        if frames != seg.stop - seg.start:
            raise ValueError(f"{url}: truncated: frames {seg.start}-{seg.stop - 1} were expected from the "
                             f"container's index, only {frames} decoded")
    return frames


def _int_or_none(v) -> int | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else int(v)


class ExtractPoses:
    """Ray Data actor: one pose detector (loaded once), many segments (one per batch row).

    A failing segment is returned as a row with its error: one bad video must not stop others."""

    def __init__(self, estimator: str, options: dict, rows_per_group: int):
        self.estimator = make_estimator(estimator, **options)
        self.rows_per_group = rows_per_group

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        out = {"video_id": [], "start": [], "frames": [], "error": []}
        for i in range(len(batch["video_id"])):
            row = {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in batch.items()}
            frames, error = 0, ""
            try:
                frames = extract_segment(row, self.estimator, self.rows_per_group)
            except Exception as e:
                error = describe_error(row["url"], e)
                log.error("ingest failed: %s", error)
            for key, value in (("video_id", row["video_id"]), ("start", int(row["start"])),
                               ("frames", frames), ("error", error)):
                out[key].append(value)
        return out


def describe_error(url: str, e: Exception) -> str:
    """An error message that names the file once, whatever raised it."""
    text = str(e)
    return text if url in text else f"{url}: {type(e).__name__}: {text}"
