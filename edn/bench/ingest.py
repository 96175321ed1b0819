"""`edn bench ingest`: what it measures is edn.bench.settings.IngestBench's docstring."""
from __future__ import annotations

import math
import os
import shutil

import pyarrow.parquet as pq

from edn.bench import harness
from edn.bench.harness import key_ratio, row
from edn.bench.ingest_memory import measure_ingest_memory
from edn.bench.ingest_parts import (
    cold_start_s,
    detector_only,
    fps_of,
    profile_in_process,
    render_clip,
    timed_ingest,
    write_looped,
)
from edn.bench.settings import IngestBench


def run(b: IngestBench, out: str) -> dict:
    return harness.run("ingest", b, out, measure, ray_cpus=os.cpu_count() or 1)


def measure(b: IngestBench, workdir: str, rows: list, figures: dict) -> list[dict]:
    return throughput(b, workdir, rows, figures) + memory(b, workdir, rows, figures)


def _config(b: IngestBench, actors: int):
    from edn.data.ingest import IngestConfig
    cfg = IngestConfig(estimator=b.estimator, width=b.stored_size[0], height=b.stored_size[1], concurrency=actors)
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
    figures["detector"] = {**det, "all_runs_steady_fps": [r["steady_fps"] for r in runs]}
    rows += [row("video", f"{n} frames {src}", "", f"dancer 0 of synthesize(seed={b.seed}); stored "
                 f"{b.stored_size[0]}x{b.stored_size[1]}; detector {b.estimator}; best of {b.repeats} runs"),
             row("decode only (PyAV, into memory)", fps_of(n, det["decode_s"]), "fps", f"{src} RGB frames"),
             row("detector only: start-up", det["startup_s"], "s", "make_estimator + begin (graph creation)"),
             row("detector only: cold start", det["cold_start_s"], "s", "the same in a fresh process: + imports"),
             row("detector only: first frame", det["first_s"], "s", "full detection, no tracking yet"),
             row("detector only: steady", det["steady_fps"], "fps", f"frames 2..N at {src}, in memory"),
             row("detector only: end to end", det["e2e_fps"], "fps", "cold start + all N frames (decode excluded)")]
    ratios = {}
    for c in b.concurrency:
        timed = [timed_ingest(url, workdir, _config(b, c), b.estimator, f"{c}-{r}") for r in range(b.repeats)]
        best, fastest = max(timed, key=lambda t: t["steady_fps"]), min(timed, key=lambda t: t["wall_s"])
        e2e, steady = fps_of(n, fastest["wall_s"]), best["steady_fps"]
        label, seg = f"ingest, {c} actor{'s' if c > 1 else ''}", _config(b, c).segment_frames
        rows += [row(f"{label}: wall", fastest["wall_s"], "s", f"= lead {fastest['lead_s']:.2f} + frames "
                     f"{fastest['span_s']:.2f} + tail {fastest['tail_s']:.2f}; segments of {seg} frames; "
                     f"actors that detected: {sorted({t['actors'] for t in timed})}"),
                 row(f"{label}: end to end", e2e, "fps", f"N / wall; / detector only's: {e2e / det['e2e_fps']:.3f}"),
                 row(f"{label}: steady", steady, "fps", "(N-1) / (first -> last frame detected, in the actors); "
                     f"/ detector only's: {steady / det['steady_fps']:.3f}")]
        if best["other_in_span_s"] is not None:
            rows += [row(f"{label}: steady loop, detect", best["detect_in_span_s"], "s", "in the actor, frames 2..N"),
                     row(f"{label}: steady loop, the rest", best["other_in_span_s"], "s",
                         "decode, resize, JPEG, rows, Parquet, between detections")]
        ratios[c] = (steady / det["steady_fps"], e2e / det["e2e_fps"])
        figures[f"ingest_{c}"] = {"runs": timed, "segment_frames": seg, "e2e_fps": e2e, "steady_fps": steady,
                                  "ratio_steady": ratios[c][0], "ratio_e2e": ratios[c][1]}
    rows += _profile_rows(profile_in_process(url, workdir, _config(b, b.concurrency[0])), figures)
    c = b.concurrency[0]
    return [key_ratio(f"ingest fps / detector-only fps ({c} actor, steady)", ratios[c][0], ">= 0.8",
                      ratios[c][0] >= 0.8, "steady on both sides; end-to-end ratios in the table")]


def _profile_rows(prof: dict, figures: dict) -> list[dict]:
    figures["profile_s"] = prof
    notes = {"plan": "probe + keyframe index", "detector start": "make_estimator",
             "decode": "PyAV (threads: overlaps detect)", "detect": "begin + estimate, N frames",
             "resize": "warpAffine", "JPEG encode": "", "rows + Parquet write": ".tolist(), from_pylist, write",
             "extract_segment, whole": "decode+detect+resize+JPEG+Parquet",
             "commit_video": "track, clean, rewrite parts"}
    out = [row("profile (this process, no Ray, cProfile): whole", prof["whole"], "s")]
    return out + [row(f"  {phase}", prof[phase], "s", note) for phase, note in notes.items()]


def memory(b: IngestBench, workdir: str, rows: list, figures: dict) -> list[dict]:
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
