"""`edn bench render`: frames per second of a whole catalog job against the bare generator, and
1 vs 2 render actors.

Setup (no network, no pretrained weights): --rows synthetic dancers with music at --size,
ingested with their ground-truth keypoints; the first --targets of them registered as models in
an MLflow registry on SQLite under the run's temporary folder: a temporal generator with
deterministic initial weights, never trained (its cost is that of a trained one). Default
generator: GeneratorConfig's defaults, pix2pixHD's global generator (ngf 64, 4 downsamplings, 9
residual blocks), so that, as in production, the generator is the dominant cost. The catalog:
dancer i onto target i mod --targets, side by side (source | pose | output), no face GAN.

1. Job: `render_catalog` on a local Ray cluster, once per --actors count, each into a fresh
   output folder (a rerun skips finished rows): validation, chunking with warm-up, actor start
   and model loads, Parquet read + JPEG decode, pose normalization and drawing, generator,
   lossless staging, the join (H.264 with the source's audio) and the manifest. Job fps = output
   frames / wall time of the call. Warm-up frames are rendered and thrown away: real work of the
   job, counted as its overhead, not as frames.
2. Bare: `model.body(x, prev)` of the registered model in this process, with --threads torch
   threads (what each actor gets: one per CPU given to it, Ray's OMP_NUM_THREADS), batches of
   --batch-chunks streams (the job's batch: chunks side by side), for the job's number of output
   frames; nothing else. Timed half before and half after the jobs so that a change in the
   machine's load hits both sides.
3. The key ratio: job fps with A actors / (A x bare fps): each actor has one core's share of the
   machine (A actors x --threads threads on A x --threads cores), so the job is compared with A
   perfectly parallel bare passes. The largest --actors count is the headline; the join tasks and
   Ray's own processes compete with the actors for the same cores, as in a full node.
4. Where the time goes: one row rendered in this process as the actor and the join task do it
   (render_parts.profile_row), its phases timed.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import tempfile
import time

import torch

from edn.bench import key_ratio, out_file, report, row

TARGET = 0.85


@dataclasses.dataclass
class RenderBench:
    size: tuple = (128, 128)          # WIDTHxHEIGHT of the dancers and the model
    frames: int = 160                 # per source dancer
    rows: int = 2                     # catalog rows, one source dancer each
    targets: int = 1                  # registered models (the first dancers' bodies)
    ngf: int = 64                     # generator: GeneratorConfig's defaults (pix2pixHD's global generator)
    n_downsample: int = 4
    n_blocks: int = 9
    actors: tuple = (1, 2)            # one job per count
    threads: int = 1                  # torch threads = CPUs per actor
    # chunks: the production ratio of warm-up to chunk (CatalogConfig: 30 / 240), on shorter videos
    chunk_frames: int = 40
    warmup_frames: int = 5
    batch_chunks: int = 4             # CatalogConfig's default
    layout: str = "side_by_side"
    profile: bool = True
    seed: int = 0
    smoke: bool = False


SMOKE = dict(size=(64, 64), frames=24, ngf=8, n_downsample=2, n_blocks=1, chunk_frames=12, warmup_frames=2,
             batch_chunks=2, smoke=True)


def _ray(b: RenderBench) -> tuple[float, bool]:
    """A local cluster with a logical CPU more than the largest job's actors need: render_catalog
    keeps its actors (and their CPUs) until it returns, so the join tasks need CPUs of their own;
    on this machine they share its cores with the actors all the same."""
    import ray
    if ray.is_initialized():
        return 0.0, False
    t = time.perf_counter()
    ray.init(address="local", num_cpus=max(b.actors) * b.threads + 1, include_dashboard=False)
    return time.perf_counter() - t, True


def _generator(b: RenderBench):
    from edn.models.networks import GeneratorConfig
    return GeneratorConfig(ngf=b.ngf, n_downsample=b.n_downsample, n_blocks=b.n_blocks)


def run_job(b: RenderBench, studio, out: str, actors: int) -> dict:
    from edn.data.ingest import IngestConfig
    from edn.render.batch import CatalogConfig, render_catalog
    from edn.render.manifest import read_manifest
    cfg = CatalogConfig(tracking_uri=studio.tracking_uri, chunk_frames=b.chunk_frames, warmup_frames=b.warmup_frames,
                        batch_chunks=b.batch_chunks, actors=actors, cpus_per_actor=float(b.threads),
                        ingest=IngestConfig(estimator="groundtruth"))
    t = time.perf_counter()
    result = render_catalog(studio.catalog, out, cfg)
    wall = time.perf_counter() - t
    if result["done"] != len(studio.rows) or result["rendered"] != len(studio.rows):
        raise RuntimeError(f"the benchmark's catalog did not render: {result['failed']}")
    manifest = read_manifest(out)
    frames = sum(r["frames"] for r in manifest)
    return {"wall_s": wall, "frames": frames, "fps": frames / wall, "actors": result["actors"],
            "model_loads": result["model_loads"], "audio": sorted({r["audio"] for r in manifest}),
            "actor_and_join_s": sum(r["seconds_per_frame"] * r["frames"] for r in manifest)}


def run(b: RenderBench, out_json: str) -> dict:
    import ray
    import ray.data

    from edn.registry import load_registered, parse_model_ref
    from edn.render.chunks import plan_chunks
    from edn.bench.render_parts import actor_threads, bare_pass, make_studio, profile_row
    torch.set_num_threads(b.threads)
    quiet = {name: logging.getLogger(name).level for name in ("edn", "ray.data")}
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    rows, figures = [], {"load_avg_at_start": [round(v, 2) for v in os.getloadavg()]}
    init_s, owned = _ray(b)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        with tempfile.TemporaryDirectory(prefix="edn-bench-render-") as workdir:
            t = time.perf_counter()
            studio = make_studio(workdir, b.rows, b.targets, b.frames, b.size, _generator(b), b.layout, b.seed)
            made = time.perf_counter() - t
            model = load_registered(*parse_model_ref(studio.targets[0], ""), studio.tracking_uri)
            chunks = plan_chunks(b.frames, b.chunk_frames, b.warmup_frames)
            frames = b.rows * b.frames
            rendered = b.rows * sum(c.stop - c.render_from for c in chunks)
            threads = actor_threads(float(b.threads))
            params = sum(p.numel() for p in model.body.parameters())
            rows += [row("ray.init", init_s, "s", "started here; in no figure" if owned else "already running"),
                     row("catalog", f"{b.rows} rows x {b.frames} frames {b.size[0]}x{b.size[1]}", "",
                         f"{b.targets} target model(s), {b.layout}; setup (synthesize, ingest, register) {made:.1f} s"),
                     row("generator", f"ngf {b.ngf}, {b.n_downsample} down, {b.n_blocks} blocks", "",
                         f"temporal, {params / 1e6:.2f} M parameters, untrained"),
                     row("chunks per row", len(chunks), "", f"{b.chunk_frames} frames + {b.warmup_frames} warm-up "
                         f"(not the first), {b.batch_chunks} side by side per batch"),
                     row("frames: output / rendered", f"{frames} / {rendered}", "",
                         f"warm-up {100 * (rendered - frames) / frames:.1f}% extra generator work, job overhead"),
                     row("torch threads: here / in an actor", f"{torch.get_num_threads()} / {threads}", "",
                         f"{b.threads} CPU per actor")]
            bare_s = [bare_pass(model.body, b.batch_chunks, frames // 2, b.size, b.seed)]
            jobs = {}
            for actors in b.actors:
                jobs[actors] = run_job(b, studio, os.path.join(workdir, f"out-{actors}"), actors)
            bare_s.append(bare_pass(model.body, b.batch_chunks, frames - frames // 2, b.size, b.seed))
            bare_fps = frames / sum(bare_s)
            figures.update(bare={"seconds": bare_s, "fps": bare_fps, "frames": frames, "streams": b.batch_chunks},
                           jobs=jobs, rendered_frames=rendered, output_frames=frames, actor_threads=threads)
            rows.append(row("bare generator", bare_fps, "fps", f"{1e3 / bare_fps:.0f} ms/frame, batch "
                            f"{b.batch_chunks}, {b.threads} thread(s); halves before/after the jobs: "
                            f"{frames // 2 / bare_s[0]:.2f} / {(frames - frames // 2) / bare_s[1]:.2f} fps"))
            keys = []
            for actors, job in jobs.items():
                ratio = job["fps"] / (actors * bare_fps)
                job["ratio"] = ratio
                label = f"job, {actors} actor{'s' if actors > 1 else ''}"
                rows += [row(f"{label}", job["fps"], "fps", f"wall {job['wall_s']:.1f} s, {job['model_loads']} "
                             f"model load(s), audio {', '.join(job['audio'])}"),
                         # with one actor its render calls run one after another: the wall less their
                         # time (and the joins', which mostly overlap them) is the job's fixed cost
                         row(f"{label}: in render calls (with model loads) + joins", job["actor_and_join_s"], "s",
                             f"the rest of the wall {job['wall_s'] - job['actor_and_join_s'] / actors:.1f} s: actor "
                             "start, validation, scheduling, the last join"),
                         row(f"{label}: job fps / ({actors} x bare fps)", ratio, "",
                             f"generator share of the wall: {rendered / bare_fps / actors / job['wall_s']:.2f}")]
                keys.insert(0, key_ratio(f"catalog job fps / ({actors} x bare generator fps), {actors} actor(s)",
                                         ratio, f">= {TARGET}", ratio >= TARGET,
                                         f"{threads} torch thread(s) per actor and in the bare pass; warm-up "
                                         "frames are job overhead"))
            if len(jobs) > 1:
                lo, hi = min(jobs), max(jobs)
                figures["scaling"] = jobs[hi]["fps"] / jobs[lo]["fps"]
                rows.append(row(f"job fps, {hi} actors / {lo}", figures["scaling"], "x", f"{os.cpu_count()} cores"))
            if b.profile:
                rows += _profile_rows(profile_row(studio, workdir, b.chunk_frames, b.warmup_frames, b.batch_chunks),
                                      figures)
    finally:
        for name, level in quiet.items():
            logging.getLogger(name).setLevel(level)
        if owned:
            ray.shutdown()
    figures["load_avg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return report("render", rows, keys, out_json, config=dataclasses.asdict(b), figures=figures)


def _profile_rows(prof: dict, figures: dict) -> list[dict]:
    figures["profile"] = prof
    total = prof["render_s"] + prof["phases_s"]["join (decode staged, H.264 encode, audio)"]
    out = [row("profile: one row in this process", total, "s", f"{prof['frames']} frames ({prof['rendered_frames']} "
               f"rendered); model load {prof['model_load_s']:.2f} s apart")]
    for phase, s in sorted(prof["phases_s"].items(), key=lambda kv: -kv[1]):
        out.append(row(f"  {phase}", 1e3 * s / prof["frames"], "ms/frame", f"{100 * s / total:.1f}%"))
    return out


def _size(text: str) -> tuple[int, int]:
    from edn.cli import _size as parse
    return parse(text)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = RenderBench()
    p.add_argument("--size", type=_size, default=None, help="frame size WIDTHxHEIGHT (default 128x128)")
    p.add_argument("--frames", type=int, default=None, help=f"frames per source (default {d.frames})")
    p.add_argument("--rows", type=int, default=None, help=f"catalog rows, one source each (default {d.rows})")
    p.add_argument("--targets", type=int, default=None, help=f"registered target models (default {d.targets})")
    p.add_argument("--ngf", type=int, default=None, help=f"generator width (default {d.ngf}, pix2pixHD's)")
    p.add_argument("--n-downsample", type=int, default=None, help=f"generator downsamplings (default {d.n_downsample})")
    p.add_argument("--n-blocks", type=int, default=None, help=f"generator residual blocks (default {d.n_blocks})")
    p.add_argument("--actors", type=lambda s: tuple(int(v) for v in s.split(",")), default=None,
                   help="render actor counts, one job each, comma-separated (default 1,2)")
    p.add_argument("--threads", type=int, default=None, help=f"torch threads = CPUs per actor (default {d.threads})")
    p.add_argument("--chunk-frames", type=int, default=None, help=f"frames per chunk (default {d.chunk_frames})")
    p.add_argument("--warmup-frames", type=int, default=None, help=f"warm-up per chunk (default {d.warmup_frames})")
    p.add_argument("--batch-chunks", type=int, default=None, help=f"chunks side by side (default {d.batch_chunks})")
    p.add_argument("--no-profile", action="store_true", help="skip the in-process profile of one row")
    p.add_argument("--out", default="outputs/bench", help="result folder (render.json in it) or .json file")
    p.add_argument("--smoke", action="store_true", help="a seconds-long version (tiny frames and generator), for tests")


def main(a: argparse.Namespace) -> dict:
    b = RenderBench(**(SMOKE if a.smoke else {}))
    for field in ("size", "frames", "rows", "targets", "ngf", "n_downsample", "n_blocks", "actors", "threads",
                  "chunk_frames", "warmup_frames", "batch_chunks"):
        if getattr(a, field, None) is not None:
            setattr(b, field, getattr(a, field))
    b.actors = tuple(sorted(set(b.actors)))
    b.profile = not a.no_profile
    if b.frames < 2 or b.rows < 1 or not 1 <= b.targets <= b.rows or not b.actors or min(b.actors) < 1 \
            or b.threads < 1 or b.batch_chunks < 1 or b.chunk_frames < 1 or b.warmup_frames < 0:
        raise ValueError("edn bench render needs --frames >= 2, 1 <= --targets <= --rows, actor counts >= 1, "
                         "--threads, --batch-chunks, --chunk-frames >= 1 and --warmup-frames >= 0")
    result = run(b, out_file(a.out, "render"))
    return {"out": out_file(a.out, "render"), "key_ratios": result["key_ratios"]}
