"""`edn bench ingest`, its parts: looped synthetic videos, the detector alone, timed ingests and
the in-process profile.

Long test videos are one short synthetic clip (edn.synth's dancer 0 of 1, as `synthesize` renders
it) written over and over into one H.264 mp4 by edn.video.VideoWriter, with its ground-truth
keypoints looped the same way beside it (`<video>.keypoints.parquet`, edn.synth.keypoints_table),
so that the `groundtruth` detector can read them.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq

from edn.pose.estimator import PoseEstimator, people_array


def render_clip(frames: int, size: tuple[int, int], seed: int, fps: float) -> tuple[list[np.ndarray], np.ndarray]:
    """The frames and (N, 137, 3) keypoints that `synthesize(out, 1, frames, size, seed, fps)` writes."""
    from edn.synth import make_dancer
    dancer = make_dancer(seed, 0, 1, size, fps)
    images, poses = zip(*dancer.frames(frames))
    return list(images), np.stack(poses)


def write_looped(url: str, images: list[np.ndarray], poses: np.ndarray, total: int, fps: float) -> str:
    """An mp4 of `total` frames (the clip looped) and its looped keypoints beside it; returns url."""
    from edn.pose.groundtruth import keypoints_url
    from edn.storage import write_bytes_atomic
    from edn.synth import keypoints_table
    from edn.video import VideoWriter
    with VideoWriter(url, fps) as writer:
        for i in range(total):
            writer.write(images[i % len(images)])
    h, w = images[0].shape[:2]
    buf = io.BytesIO()
    pq.write_table(keypoints_table(poses[np.arange(total) % len(poses)], w, h), buf)
    write_bytes_atomic(keypoints_url(url), buf.getvalue())
    return url


def fps_of(frames: int, seconds: float) -> float:
    return frames / seconds if seconds > 0 else float("nan")


def cold_start_s(statement: str) -> float:
    """Seconds `statement` takes in a fresh Python process (imports included); nan if it fails."""
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    return float(run.stdout.strip().splitlines()[-1]) if run.returncode == 0 else float("nan")


class ClipPoses(PoseEstimator):
    """A detector with constant memory for looped videos: frame i's pose is row i % len of the
    clip's keypoints file `clip` (edn.synth layout), so that memory figures are the ingest's own
    (the groundtruth detector loads the whole video's keypoints at every segment)."""

    def __init__(self, clip: str):
        table = pq.read_table(clip)
        flat = np.asarray(table["keypoints"].combine_chunks().flatten(), np.float32)
        self.poses = flat.reshape(table.num_rows, -1, 3)

    def estimate(self, frame_rgb: np.ndarray, frame_index: int) -> np.ndarray:
        return people_array([self.poses[frame_index % len(self.poses)]])


def detector_only(url: str, name: str) -> dict:
    from edn.pose.estimator import make_estimator
    from edn.video import read_frames
    t = time.perf_counter()
    frames = [f for _, _, f in read_frames(url)]
    decode = time.perf_counter() - t
    t = time.perf_counter()
    est = make_estimator(name)
    est.begin(url)
    startup = time.perf_counter() - t
    times = []
    for i, frame in enumerate(frames):
        t = time.perf_counter()
        est.estimate(frame, i)
        times.append(time.perf_counter() - t)
    est.close()
    n = len(frames)
    return {"decode_s": decode, "startup_s": startup, "first_s": times[0],
            "detect_s": sum(times), "steady_fps": fps_of(n - 1, sum(times[1:])) if n > 1 else fps_of(n, times[0]),
            "e2e_fps": fps_of(n, startup + sum(times))}


class TimedEstimator(PoseEstimator):
    """Detector `inner`, appending "pid frame_index start end" (time.time()) to the file `log` for
    every frame: inside an ingest's actors this times the ingest's own loop, frame after frame."""

    def __init__(self, inner: str, log: str, inner_options: dict | None = None):
        from edn.pose.estimator import make_estimator
        self.inner = make_estimator(inner, **(inner_options or {}))
        self.name = self.inner.name
        self._log = open(log, "a", buffering=1)

    def begin(self, video_url: str) -> None:
        self.inner.begin(video_url)

    def estimate(self, frame_rgb: np.ndarray, frame_index: int) -> np.ndarray:
        start = time.time()
        people = self.inner.estimate(frame_rgb, frame_index)
        self._log.write(f"{os.getpid()} {frame_index} {start:.6f} {time.time():.6f}\n")
        return people

    def close(self) -> None:
        self.inner.close()
        self._log.close()


def timed_ingest(url: str, workdir: str, cfg, estimator: str, run: str) -> dict:
    """One ingest of `url` through TimedEstimator(estimator): wall time, and its parts: `lead`
    (ingest() called -> first frame detected: plan, scheduling, actor start, imports, graph),
    `span` (first -> last frame detected: the frame loop) and `tail` (last frame -> return:
    last Parquet write, commit, results). steady_fps = (frames - 1) / span."""
    from edn.data.ingest import ingest
    log = os.path.join(workdir, f"frames-{run}.log")
    cfg.estimator = "edn.bench.ingest_parts:TimedEstimator"
    cfg.estimator_options = {"inner": estimator, "log": log}
    out = tempfile.mkdtemp(prefix="dataset-", dir=workdir)
    t0 = time.time()
    result = ingest([url], out, cfg)
    t1 = time.time()
    if result["failed"] or not result["done"]:
        raise RuntimeError(f"ingest of {url} failed: {result['failed']}")
    shutil.rmtree(out, ignore_errors=True)
    with open(log) as f:
        lines = [line.split() for line in f if line.strip()]
    times = sorted((float(v[3]), float(v[2])) for v in lines)  # (end, start) of each frame's detection
    span, actors = times[-1][0] - times[0][0], len({v[0] for v in lines})
    detect = sum(end - start for end, start in times[1:])  # frames 2..N, summed over the actors
    return {"wall_s": t1 - t0, "lead_s": times[0][0] - t0, "span_s": span, "tail_s": t1 - times[-1][0],
            "frames": len(lines), "actors": actors, "detect_in_span_s": detect,
            "other_in_span_s": span - detect if actors == 1 else None,
            "steady_fps": fps_of(len(lines) - 1, span) if len(lines) > 1 else float("nan")}


def profile_in_process(url: str, workdir: str, cfg) -> dict:
    """One ingest of `url` in this process, without Ray, under cProfile (seconds): the video
    planned, each segment extracted, the video committed, and each stage inside them."""
    from edn.bench.harness import profile_calls
    from edn.data.commit import commit_video
    from edn.data.schema import encode_image, frames_table
    from edn.data.segments import apply_transform, extract_segment, plan_video
    from edn.pose.estimator import make_estimator
    from edn.video import read_frames
    out = os.path.join(workdir, "profile")
    started = time.perf_counter()
    detector = make_estimator(cfg.estimator, **cfg.estimator_options)
    detector_start = time.perf_counter() - started

    def ingest_here() -> None:
        plan = plan_video(url, "profile", out, cfg.staging_settings(), cfg.segment_frames)
        for segment in plan["segments"]:
            extract_segment(segment, detector, cfg.rows_per_group)
        commit_video(out, plan["video"], cfg.estimator, cfg.estimator_options, cfg.track, cfg.cleanup)

    _, whole, s = profile_calls(ingest_here, {
        "plan": plan_video, "decode": read_frames, "begin": type(detector).begin,
        "estimate": type(detector).estimate, "resize": apply_transform, "JPEG encode": encode_image,
        "rows": frames_table, "Parquet write": pq.ParquetWriter.write_table, "extract_segment, whole": extract_segment,
        "commit_video": commit_video})
    detector.close()
    shutil.rmtree(out, ignore_errors=True)
    s["detector start"] = detector_start
    s["detect"] = s.pop("begin") + s.pop("estimate")
    s["rows + Parquet write"] = s.pop("rows") + s.pop("Parquet write")
    return {"whole": whole, **s}
