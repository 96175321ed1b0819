"""`edn bench ingest`, its parts: looped synthetic videos, the detector alone, timed ingests, the
in-process profile, and ingest runs in a fresh process whose memory is sampled.

Long test videos are one short synthetic clip (edn.synth's dancer 0 of 1, as `synthesize` renders
it) written over and over into one H.264 mp4 by edn.video.VideoWriter, with its ground-truth
keypoints looped the same way beside it (`<video>.keypoints.parquet`, edn.synth.keypoints_table),
so that the `groundtruth` detector can read them.

Memory: each ingest runs in a subprocess (`python -m edn.bench.ingest_parts SPEC`) that starts
its own local Ray cluster (`ray.init(address="local")`), runs `edn.data.ingest.ingest` and shuts
Ray down. A ProcessTreeMonitor samples the RSS of that subprocess (the Ray driver) and of every
process below it: Ray's daemons (raylet, GCS, agents) and the Ray workers (plan and commit tasks,
the detector actors). Reported: the peak of the sampled sum over driver + workers ("ingest", the
processes that do the ingest's work), the peak of the sum over the whole tree (with Ray's
daemons) and the sum of each process's own peak (VmHWM).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq

from edn.pose.estimator import PoseEstimator, people_array

MB = 1 << 20
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
    times, people = [], []
    for i, frame in enumerate(frames):
        t = time.perf_counter()
        people.append(est.estimate(frame, i))
        times.append(time.perf_counter() - t)
    est.close()
    n = len(frames)
    return {"frames": frames, "people": people, "decode_s": decode, "startup_s": startup, "first_s": times[0],
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


def profile_in_process(url: str, workdir: str, cfg, det: dict) -> dict:
    """The ingest's stages for one video in this process, without Ray (seconds)."""
    from edn.data.commit import commit_video
    from edn.data.schema import STAGING_SCHEMA, encode_image, frames_table
    from edn.data.segments import apply_transform, extract_segment, plan_video
    from edn.pose.estimator import make_estimator
    out, s = os.path.join(workdir, "profile"), {}
    t = time.perf_counter()
    plan = plan_video(url, "profile", out, cfg.staging_settings(), cfg.segment_frames)
    s["plan"] = time.perf_counter() - t
    tf = json.loads(plan["segments"][0]["transform"])
    t = time.perf_counter()
    moved = [apply_transform(f, p, tf) for f, p in zip(det["frames"], det["people"])]
    s["resize"] = time.perf_counter() - t
    t = time.perf_counter()
    jpegs = [encode_image(image) for image, _ in moved]
    s["jpeg"] = time.perf_counter() - t
    t = time.perf_counter()
    with pq.ParquetWriter(os.path.join(workdir, "rows.parquet"), STAGING_SCHEMA) as writer:
        for a in range(0, len(moved), cfg.rows_per_group):
            writer.write_table(frames_table([
                {"video_id": "profile", "frame_index": i, "timestamp": i / 30, "width": im.shape[1],
                 "height": im.shape[0], "image": jpegs[i], "people": p.reshape(len(p), -1).tolist()}
                for i, (im, p) in enumerate(moved[a:a + cfg.rows_per_group], a)], STAGING_SCHEMA))
    s["rows_parquet"] = time.perf_counter() - t
    est = make_estimator(cfg.estimator)
    t = time.perf_counter()
    for seg in plan["segments"]:
        extract_segment(seg, est, cfg.rows_per_group)
    s["extract"] = time.perf_counter() - t
    est.close()
    t = time.perf_counter()
    commit_video(out, plan["video"], cfg.estimator, cfg.estimator_options, cfg.track, cfg.cleanup)
    s["commit"] = time.perf_counter() - t
    s["cold_start"] = cold_start_s("from edn.data.segments import ExtractPoses; "
                                   f"ExtractPoses({cfg.estimator!r}, {{}}, 64).estimator.begin({url!r})")
    shutil.rmtree(out, ignore_errors=True)
    return s


def measure_ingest_memory(url: str, out_url: str, ingest_cfg: dict, workdir: str, num_cpus: int, name: str,
                          timeout: float = 900, interval: float = 0.05) -> dict:
    """Ingest `url` in a fresh process with its own local Ray (IngestConfig(**ingest_cfg)); its
    process tree's memory, in MB. `name` names the run's log and result files in `workdir`."""
    from edn.bench import ProcessTreeMonitor
    result_file, log_file = os.path.join(workdir, f"{name}.result.json"), os.path.join(workdir, f"{name}.log")
    spec = {"url": url, "out": out_url, "cfg": ingest_cfg, "num_cpus": num_cpus, "result": result_file}
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    with open(log_file, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "edn.bench.ingest_parts", json.dumps(spec)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        monitor = ProcessTreeMonitor(proc.pid, interval, combine={"ingest": ("driver", "workers")}).start()
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = "timeout"
        figures = monitor.stop()
    if rc != 0 or not os.path.exists(result_file):
        with open(log_file) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"ingest subprocess for {url} failed ({rc}); log {log_file}:\n{tail}")
    with open(result_file) as f:
        child = json.load(f)
    if child["failed"] or not child["done"]:
        raise RuntimeError(f"ingest of {url} failed: {child['failed']}")
    mb = {k: {role: round(v / MB, 1) for role, v in figures[k].items()} for k in ("peak", "hwm_sum")}
    for p in figures["largest"]:
        p["peak_rss"] = round(p["peak_rss"] / MB, 1)
    return {**child, **mb, "samples": figures["samples"], "interval_s": interval,
            "processes": figures["processes"], "largest": figures["largest"]}


def _child(spec_json: str) -> None:
    """The subprocess: a fresh local Ray cluster, one ingest, timings to spec['result']."""
    import logging

    import ray

    from edn.data.ingest import IngestConfig, ingest
    logging.basicConfig(level=logging.WARNING)
    spec = json.loads(spec_json)
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=spec["num_cpus"], include_dashboard=False)
    t1 = time.perf_counter()
    result = ingest([spec["url"]], spec["out"], IngestConfig(**spec["cfg"]))
    t2 = time.perf_counter()
    ray.shutdown()
    with open(spec["result"], "w") as f:
        json.dump({"ray_init_s": round(t1 - t0, 3), "ingest_s": round(t2 - t1, 3), "done": result["done"],
                   "failed": result["failed"]}, f)


if __name__ == "__main__":
    _child(sys.argv[1])
