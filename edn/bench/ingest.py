"""`edn bench ingest`: ingest throughput against the detector alone, and streaming memory.

1. Throughput, on one synthetic dancer video (N frames at --size; stored at --stored-size):
   - detector only: the N frames decoded into memory first, then `make_estimator(name)`, `begin`
     and `estimate` on each source-size frame (what ingest's detector sees), in this process;
   - ingest: `edn.data.ingest.ingest` of that video on the running Ray cluster (this process's,
     else a local one with num_cpus = the machine's CPUs), with 1 and 2 detector actors;
   - "end to end": N / wall time, with every start-up inside: the detector's graph creation on
     one side; on the other Ray's plan and commit tasks, actor start (worker, imports, detector)
     and result collection. Only ray.init is left out of both (reported on its own row);
   - "steady": detector: frames 2..N / their estimate time (no start-up, no first-frame full
     detection); ingest: frames 2..N / the time from the first to the last frame detected inside
     the ingest's actors (the detector is wrapped in ingest_parts.TimedEstimator, which logs each
     frame's time), i.e. the actor's whole loop: decode, detect, resize, JPEG, rows, Parquet.
     The key ratio uses the steady figures; the end-to-end ratios are in the table too.
   - the ingest's wall = lead (call -> first frame detected: plan task, Ray Data start, actor
     start, imports, graph) + frames (the steady loop) + tail (last frame -> return: last Parquet
     write, commit task, results). Best of --repeats runs.
   - profile: the same ingest stages in this process without Ray (plan, decode, detect, resize,
     JPEG, rows + Parquet, the whole extract_segment, commit) and a fresh process's imports and
     detector start.
2. Memory: peak RSS of an ingest of a short and a long video (--short-minutes, --long-minutes,
   --memory-size; one synthetic clip looped), with the `groundtruth` detector and with `clip`
   (ingest_parts.ClipPoses: the clip's poses looped, so the detector's memory is constant; the
   groundtruth detector loads the whole video's keypoints); see ingest_parts.py for what is measured.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import shutil
import tempfile
import time

import pyarrow.parquet as pq

from edn.bench import key_ratio, out_file, report, row
from edn.bench.ingest_parts import (cold_start_s, detector_only, fps_of, measure_ingest_memory, profile_in_process,
                                    render_clip, timed_ingest, write_looped)


@dataclasses.dataclass
class IngestBench:
    frames: int = 300
    size: tuple = (256, 256)          # synthetic source video
    stored: tuple = (128, 128)        # ingest's stored frame size
    estimator: str = "mediapipe"
    concurrency: tuple = (1, 2)       # detector actors, one ingest timing each
    repeats: int = 3
    short_minutes: float = 1.0
    long_minutes: float = 10.0
    memory_size: tuple = (128, 128)   # source and stored size of the memory videos
    memory_estimators: tuple = ("groundtruth", "clip")  # clip: ingest_parts.ClipPoses
    clip_frames: int = 300            # the clip looped into the memory videos
    fps: float = 30.0
    seed: int = 1
    smoke: bool = False


SMOKE = dict(frames=30, size=(128, 128), stored=(64, 64), concurrency=(1,), repeats=1, short_minutes=2 / 60,
             long_minutes=6 / 60, memory_size=(64, 64), clip_frames=30, memory_estimators=("groundtruth",),
             smoke=True)


def _ray(num_cpus: int) -> tuple[float, bool]:
    import ray
    if ray.is_initialized():
        return 0.0, False
    t = time.perf_counter()
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        # "local": a cluster of its own even where a `ray start` head runs on this machine
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
    return time.perf_counter() - t, True


def _config(b: IngestBench, actors: int):
    from edn.data.ingest import IngestConfig
    cfg = IngestConfig(estimator=b.estimator, width=b.stored[0], height=b.stored[1], concurrency=actors)
    if actors > 1:  # segments for every actor (2 each: Ray Data queues 2 per actor on the first one ready)
        cfg.segment_frames = max(1, math.ceil(b.frames / (2 * actors)))
    return cfg


def throughput(b: IngestBench, workdir: str, rows: list, figures: dict) -> list[dict]:
    images, poses = render_clip(b.frames, b.size, b.seed, b.fps)
    n, src = b.frames, f"{b.size[0]}x{b.size[1]}"
    url = write_looped(os.path.join(workdir, "dancer.mp4"), images, poses, n, b.fps)
    runs = [detector_only(url, b.estimator) for _ in range(b.repeats)]
    det = max(runs, key=lambda r: r["steady_fps"])
    det["cold_start_s"] = cold_start_s("from edn.pose.estimator import make_estimator; "
                                       f"make_estimator({b.estimator!r}).begin({url!r})")
    det["e2e_fps"] = fps_of(n, det["cold_start_s"] + det["detect_s"])
    rows += [row("video", f"{n} frames {src}", "", f"dancer 0 of synthesize(seed={b.seed}); stored "
                 f"{b.stored[0]}x{b.stored[1]}; detector {b.estimator}; best of {b.repeats} runs"),
             row("decode only (PyAV, into memory)", fps_of(n, det["decode_s"]), "fps", f"{src} RGB frames"),
             row("detector only: start-up", det["startup_s"], "s", "make_estimator + begin (graph creation)"),
             row("detector only: cold start", det["cold_start_s"], "s", "the same in a fresh process: + imports"),
             row("detector only: first frame", det["first_s"], "s", "full detection, no tracking yet"),
             row("detector only: steady", det["steady_fps"], "fps", f"frames 2..N at {src}, in memory"),
             row("detector only: end to end", det["e2e_fps"], "fps", "cold start + all N frames (decode excluded)")]
    figures["detector"] = {k: v for k, v in det.items() if k not in ("frames", "people")}
    figures["detector"]["all_runs_steady_fps"] = [r["steady_fps"] for r in runs]
    ratios = []
    for c in b.concurrency:
        timed = [timed_ingest(url, workdir, _config(b, c), b.estimator, f"{c}-{r}") for r in range(b.repeats)]
        best, fastest = max(timed, key=lambda t: t["steady_fps"]), min(timed, key=lambda t: t["wall_s"])
        e2e, steady = fps_of(n, fastest["wall_s"]), best["steady_fps"]
        label = f"ingest, {c} actor{'s' if c > 1 else ''}"
        seg = _config(b, c).segment_frames
        rows += [row(f"{label}: wall", fastest["wall_s"], "s", f"= lead {fastest['lead_s']:.2f} + frames "
                     f"{fastest['span_s']:.2f} + tail {fastest['tail_s']:.2f}; segments of {seg} frames; "
                     f"actors that detected: {sorted({t['actors'] for t in timed})}"),
                 row(f"{label}: end to end", e2e, "fps", "N / wall"),
                 row(f"{label}: steady", steady, "fps", "(N-1) / (first -> last frame detected, in the actors)")]
        if best["other_in_span_s"] is not None:
            rows += [row(f"{label}: steady loop, detect", best["detect_in_span_s"], "s", "in the actor, frames 2..N"),
                     row(f"{label}: steady loop, the rest", best["other_in_span_s"], "s",
                         "decode, resize, JPEG, rows, Parquet, between detections")]
        figures[f"ingest_{c}"] = {"runs": timed, "segment_frames": seg, "e2e_fps": e2e,
                                  "steady_fps": steady, "ratio_steady": steady / det["steady_fps"],
                                  "ratio_e2e": e2e / det["e2e_fps"]}
        ratios.append((c, steady / det["steady_fps"], e2e / det["e2e_fps"]))
        if c == b.concurrency[0]:
            prof = profile_in_process(url, workdir, _config(b, c), det)
            figures["profile_s"] = prof
            rows += [row("profile (this process, no Ray): plan", prof["plan"], "s", "probe + keyframe index"),
                     row("  decode", det["decode_s"], "s", "PyAV threads: overlaps detect in extract_segment"),
                     row("  detect", det["startup_s"] + det["detect_s"], "s", "graph creation + N frames"),
                     row("  resize (warpAffine)", prof["resize"], "s"),
                     row("  JPEG encode", prof["jpeg"], "s"),
                     row("  rows + Parquet write", prof["rows_parquet"], "s", ".tolist(), from_pylist, write"),
                     row("  extract_segment, whole", prof["extract"], "s", "decode+detect+resize+JPEG+Parquet"),
                     row("  commit_video", prof["commit"], "s", "track, clean, rewrite parts"),
                     row("  fresh process: imports + detector start", prof["cold_start"], "s",
                         "part of the actor's start (in lead)")]
    for c, steady_ratio, e2e_ratio in ratios:
        rows += [row(f"ratio ingest/detector, {c} actor{'s' if c > 1 else ''}: end to end", e2e_ratio, ""),
                 row(f"ratio ingest/detector, {c} actor{'s' if c > 1 else ''}: steady", steady_ratio, "")]
    c, steady_ratio, _ = ratios[0]
    return [key_ratio(f"ingest fps / detector-only fps ({c} actor, steady)", steady_ratio, ">= 0.8",
                      steady_ratio >= 0.8, "steady on both sides; end-to-end ratios in the table")]


def memory(b: IngestBench, workdir: str, rows: list, figures: dict) -> dict:
    from edn.synth import keypoints_table
    images, poses = render_clip(b.clip_frames, b.memory_size, b.seed, b.fps)
    clip = os.path.join(workdir, "clip.keypoints.parquet")
    pq.write_table(keypoints_table(poses, *b.memory_size), clip)
    size, videos = f"{b.memory_size[0]}x{b.memory_size[1]}", {}
    for label, minutes in (("short", b.short_minutes), ("long", b.long_minutes)):
        total = max(1, round(minutes * 60 * b.fps))
        figures[f"memory_{label}_video"] = {"frames": total, "minutes": minutes}
        videos[label] = write_looped(os.path.join(workdir, f"memory_{label}.mp4"), images, poses, total, b.fps)
        rows.append(row(f"memory, {label} video", f"{total} frames {size}", "",
                        f"{minutes:.3g} min: the {b.clip_frames}-frame clip looped"))
    keys = []
    for det in b.memory_estimators:
        cfg = {"estimator": det, "width": b.memory_size[0], "height": b.memory_size[1]}
        if det == "clip":  # constant-memory detector: the clip's poses, looped
            cfg.update(estimator="edn.bench.ingest_parts:ClipPoses", estimator_options={"clip": clip})
        peaks = {}
        for label, url in videos.items():
            out = os.path.join(workdir, f"dataset-{det}-{label}")
            m = measure_ingest_memory(url, out, cfg, workdir, os.cpu_count() or 1, f"{det}-{label}")
            shutil.rmtree(out, ignore_errors=True)
            figures[f"memory_{det}_{label}"] = m
            peaks[label] = m["peak"]["ingest"]
            rows += [row(f"memory, {det}, {label}: ingest wall", m["ingest_s"], "s",
                         f"fresh local Ray (init {m['ray_init_s']:.1f} s, not in the wall)"),
                     row(f"memory, {det}, {label}: peak RSS driver+workers", m["peak"]["ingest"], "MB",
                         f"peak of the sum, sampled every {m['interval_s']} s; whole tree {m['peak']['total']:.0f}"),
                     row(f"memory, {det}, {label}: sum of per-process peaks", m["hwm_sum"]["ingest"], "MB",
                         "driver+workers, VmHWM")]
        ratio = peaks["long"] / peaks["short"]
        rows.append(row(f"memory ratio long/short, {det} detector", ratio, "", "peak RSS driver+workers"))
        keys.append(key_ratio(f"peak memory long / short video ({det} detector, driver+workers)", ratio,
                              "within 1 +- 0.2", abs(ratio - 1) <= 0.2, "peak of the sampled RSS sum"))
    return keys


def run(b: IngestBench, out_json: str) -> dict:
    import ray
    quiet = {name: logging.getLogger(name).level for name in ("edn", "ray.data")}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    rows, figures = [], {"load_avg_at_start": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg")
                         else None}
    try:
        with tempfile.TemporaryDirectory(prefix="edn-bench-ingest-") as workdir:
            init_s, owned = _ray(os.cpu_count() or 1)
            figures["ray_resources"] = ray.cluster_resources()
            rows.append(row("ray.init", init_s, "s", "started here; in no figure" if owned else "already running"))
            keys = throughput(b, workdir, rows, figures)
            if owned:
                ray.shutdown()  # the memory runs start their own clusters
            keys += memory(b, workdir, rows, figures)
    finally:
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
    return report("ingest", rows, keys, out_json, config=dataclasses.asdict(b), figures=figures)


def _size(text: str) -> tuple[int, int]:
    from edn.cli import _size as parse
    return parse(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = IngestBench()
    p.add_argument("--frames", type=int, default=None, help=f"frames of the throughput video (default {d.frames})")
    p.add_argument("--size", type=_size, default=None, help="throughput video's size WIDTHxHEIGHT (default 256x256)")
    p.add_argument("--stored-size", type=_size, default=None, help="ingest's stored size (default 128x128)")
    p.add_argument("--estimator", default=None, help=f"detector for the throughput part (default {d.estimator})")
    p.add_argument("--concurrency", type=lambda s: tuple(int(v) for v in s.split(",")), default=None,
                   help="detector actors to time, comma-separated (default 1,2)")
    p.add_argument("--repeats", type=int, default=None, help=f"runs of each timing, best kept (default {d.repeats})")
    p.add_argument("--short-minutes", type=float, default=None, help=f"short memory video (default {d.short_minutes})")
    p.add_argument("--long-minutes", type=float, default=None, help=f"long memory video (default {d.long_minutes})")
    p.add_argument("--memory-size", type=_size, default=None, help="memory videos' size (default 128x128)")
    p.add_argument("--out", default="outputs/bench", help="result folder (ingest.json in it) or .json file")
    p.add_argument("--smoke", action="store_true", help="a seconds-long version (tiny videos), for tests")


def main(a: argparse.Namespace) -> dict:
    b = IngestBench(**(SMOKE if a.smoke else {}))
    for field, arg in (("frames", "frames"), ("size", "size"), ("stored", "stored_size"), ("estimator", "estimator"),
                       ("concurrency", "concurrency"), ("repeats", "repeats"), ("short_minutes", "short_minutes"),
                       ("long_minutes", "long_minutes"), ("memory_size", "memory_size")):
        if getattr(a, arg, None) is not None:
            setattr(b, field, getattr(a, arg))
    if b.frames < 2 or not b.concurrency or min(b.concurrency) < 1 or b.repeats < 1:
        raise ValueError("edn bench ingest needs --frames >= 2, --repeats >= 1 and actor counts >= 1")
    result = run(b, out_file(a.out, "ingest"))
    return {"out": out_file(a.out, "ingest"), "key_ratios": result["key_ratios"]}
