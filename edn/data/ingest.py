"""Ingest: videos at fsspec URLs -> decoded frames + poses -> the Parquet dataset (schema.py).

Ray Data spreads videos over a pool of pose-detector actors (`map_batches` with a callable
class, so each detector model is loaded once per actor). An actor decodes its video as a
stream, detects poses in frame order (detectors track across frames), and writes the video's
rows itself so that each video is committed atomically and a bad video fails alone.
"""
from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import pyarrow.parquet as pq

from edn.data.schema import FRAMES_SCHEMA, encode_image, frames_table
from edn.pose.estimator import PoseEstimator, make_estimator
from edn.storage import exists, filesystem, join, put_file_atomic, read_bytes, write_bytes_atomic
from edn.video import VideoError, read_frames, probe

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm")


@dataclass
class IngestConfig:
    estimator: str = "mediapipe"
    width: int | None = None   # stored frame size; None keeps the source size
    height: int | None = None
    concurrency: int = 1       # pose-detector actors
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    rows_per_group: int = 64   # Parquet row group: frames buffered before a write


class NoPersonError(Exception):
    pass


def video_id_for(url: str) -> str:
    stem = os.path.splitext(os.path.basename(url.rstrip("/")))[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "video"


def expand_inputs(urls: list[str]) -> list[str]:
    """Files as given (missing ones too: they fail as their own error); folders -> their videos."""
    out = []
    for url in urls:
        fs, path = filesystem(url)
        if fs.isdir(path):
            protocol = url.split("://")[0] + "://" if "://" in url else ""
            out += sorted(protocol + p for p in fs.ls(path, detail=False) if p.lower().endswith(VIDEO_SUFFIXES))
        else:
            out.append(url)
    return out


def crop_transform(src_w: int, src_h: int, dst_w: int | None, dst_h: int | None) -> dict:
    """Scale to cover (dst_w, dst_h), then centre-crop: stored = source * scale + offset."""
    if not dst_w or not dst_h:
        return {"scale": 1.0, "offset_x": 0.0, "offset_y": 0.0, "width": src_w, "height": src_h}
    scale = max(dst_w / src_w, dst_h / src_h)
    return {"scale": scale, "offset_x": (dst_w - src_w * scale) / 2, "offset_y": (dst_h - src_h * scale) / 2,
            "width": dst_w, "height": dst_h}


def apply_transform(frame: np.ndarray, pose: np.ndarray, t: dict) -> tuple[np.ndarray, np.ndarray]:
    if t["scale"] == 1.0 and t["offset_x"] == 0 and t["offset_y"] == 0:
        return frame, pose
    m = np.array([[t["scale"], 0, t["offset_x"]], [0, t["scale"], t["offset_y"]]], np.float32)
    frame = cv2.warpAffine(frame, m, (t["width"], t["height"]), flags=cv2.INTER_AREA)
    pose = pose.copy()
    pose[:, :2] = pose[:, :2] * t["scale"] + (t["offset_x"], t["offset_y"])
    return frame, pose


def ingest_video(url: str, video_id: str, out_url: str, estimator: PoseEstimator, cfg: IngestConfig) -> dict:
    """Decode, detect and publish one video; returns its record (schema.VIDEO_FIELDS)."""
    start = time.time()
    info = probe(url)
    t = crop_transform(info.width, info.height, cfg.width, cfg.height)
    estimator.begin(url)
    frames = detected = 0
    with tempfile.TemporaryDirectory(prefix="edn-ingest-") as tmp:
        local = os.path.join(tmp, "part-0.parquet")
        with pq.ParquetWriter(local, FRAMES_SCHEMA) as writer:
            rows = []
            for index, ts, frame in read_frames(url):
                pose = estimator.estimate(frame, index)
                found = bool(pose[:, 2].max() > 0)
                image, pose = apply_transform(frame, pose, t)
                rows.append({"video_id": video_id, "frame_index": index, "timestamp": ts,
                             "width": image.shape[1], "height": image.shape[0], "image": encode_image(image),
                             "keypoints": pose.reshape(-1).tolist(), "person_detected": found})
                frames += 1
                detected += found
                if len(rows) >= cfg.rows_per_group:
                    writer.write_table(frames_table(rows))
                    rows = []
                    log.info("%s: %d frames", video_id, frames)
            if rows:
                writer.write_table(frames_table(rows))
        if detected == 0:
            raise NoPersonError(f"{url}: no person detected in any of its {frames} frames")
        put_file_atomic(local, join(out_url, "frames", video_id, "part-0.parquet"))
    record = {"video_id": video_id, "source_url": url, "frames": frames, "detected_frames": detected,
              "fps": info.fps, "source_width": info.width, "source_height": info.height,
              "width": t["width"], "height": t["height"],
              "transform": {k: t[k] for k in ("scale", "offset_x", "offset_y")},
              "estimator": estimator.name, "seconds": round(time.time() - start, 3)}
    write_bytes_atomic(join(out_url, "videos", f"{video_id}.json"), json.dumps(record, indent=1).encode())
    return record


class ExtractPoses:
    """Ray Data actor: one pose detector, many videos (one per batch row)."""

    def __init__(self, out_url: str, cfg: dict):
        self.out_url, self.cfg = out_url, IngestConfig(**cfg)
        self.estimator = make_estimator(self.cfg.estimator)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        rows = [self._one(str(url), str(video_id)) for url, video_id in zip(batch["url"], batch["video_id"])]
        return {key: [row[key] for row in rows] for key in ("video_id", "url", "ok", "frames", "error")}

    def _one(self, url: str, video_id: str) -> dict:
        error_url = join(self.out_url, "errors", f"{video_id}.json")
        try:
            frames = ingest_video(url, video_id, self.out_url, self.estimator, self.cfg)["frames"]
        except Exception as e:  # one bad video must not stop the others
            error = str(e) if isinstance(e, (VideoError, NoPersonError)) else f"{url}: {type(e).__name__}: {e}"
            log.error("ingest failed: %s", error)
            write_bytes_atomic(error_url, json.dumps({"video_id": video_id, "url": url, "error": error}).encode())
            return {"video_id": video_id, "url": url, "ok": False, "frames": 0, "error": error}
        if exists(error_url):  # a retry that succeeded clears the old failure
            fs, path = filesystem(error_url)
            fs.rm(path)
        return {"video_id": video_id, "url": url, "ok": True, "frames": frames, "error": ""}


def ingest(urls: list[str], out_url: str, cfg: IngestConfig | None = None) -> dict:
    """Ingest videos into the dataset at `out_url`. Returns {"done", "skipped", "failed"} lists."""
    import ray

    cfg = cfg or IngestConfig()
    urls = expand_inputs(urls)
    ids = [video_id_for(u) for u in urls]
    clashes = {i for i in ids if ids.count(i) > 1}
    if clashes:
        raise ValueError(f"videos share a file name, so their ids clash: {sorted(clashes)}")
    todo = [{"url": u, "video_id": i} for u, i in zip(urls, ids)
            if not exists(join(out_url, "videos", f"{i}.json"))]
    skipped = sorted(set(ids) - {t["video_id"] for t in todo})
    if skipped:
        log.info("already complete, skipped: %s", skipped)
    results: list[dict] = []
    if todo:
        ds = ray.data.from_items(todo, override_num_blocks=len(todo))
        results = ds.map_batches(
            ExtractPoses, fn_constructor_args=(out_url, asdict(cfg)), batch_size=1,
            concurrency=max(1, min(cfg.concurrency, len(todo))),
            num_cpus=cfg.cpus_per_actor, num_gpus=cfg.gpus_per_actor,
        ).take_all()
    return {"done": [r["video_id"] for r in results if r["ok"]], "skipped": skipped,
            "failed": [{"video_id": r["video_id"], "url": r["url"], "error": r["error"]}
                       for r in results if not r["ok"]]}


def video_record(dataset_url: str, video_id: str) -> dict:
    url = join(dataset_url, "videos", f"{video_id}.json")
    if not exists(url):
        raise FileNotFoundError(f"{dataset_url}: video {video_id!r} is not in the dataset (no {url})")
    return json.loads(read_bytes(url))
