"""`edn bench render`: what it measures is edn.bench.settings.RenderBench's docstring."""
from __future__ import annotations

import os
import time

import torch

from edn.bench import harness
from edn.bench.harness import key_ratio, row
from edn.bench.settings import RenderBench

TARGET = 0.9  # issue 16: the catalog job at least 0.9 of its bare generator pass


def run(b: RenderBench, out: str) -> dict:
    # a logical CPU more than the largest job's actors take: render_catalog keeps its actors (and
    # their CPUs) until it returns, so the join tasks need CPUs of their own
    return harness.run("render", b, out, measure, ray_cpus=max(b.actors) * b.threads + 1)


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
            "model_loads": result["model_loads"], "chunks": result["chunks"],
            "actor_faults_per_frame": result["actor_page_faults"] / (frames + result["warmup_frames"]),
            "rendered_frames": frames + result["warmup_frames"], "audio": sorted({r["audio"] for r in manifest}),
            "actor_and_join_s": sum(r["seconds_per_frame"] * r["frames"] for r in manifest),
            "timeline": result["timeline"]}


def measure(b: RenderBench, workdir: str, rows: list, figures: dict) -> list[dict]:
    from edn.bench.render_parts import actor_threads, bare_pass, make_studio, profile_row
    from edn.models.networks import GeneratorConfig
    from edn.registry import load_registered, parse_model_ref
    from edn.runtime import autocast, keep_freed_memory, page_faults, resolve
    torch.set_num_threads(b.threads)
    auto = resolve("cpu", "auto")  # what the job's CPU actors render in: the same machine's CPUs
    precisions = ["fp32"] + (["bf16"] if auto.precision == "bf16" else [])
    t = time.perf_counter()
    generator = GeneratorConfig(ngf=b.ngf, n_downsample=b.n_downsample, n_blocks=b.n_blocks)
    studio = make_studio(workdir, b.rows, b.targets, b.frames, b.size, generator, b.layout, b.seed)
    made = time.perf_counter() - t
    model = load_registered(*parse_model_ref(studio.targets[0], ""), studio.tracking_uri)
    frames = b.rows * b.frames
    threads = actor_threads(float(b.threads))
    params = sum(p.numel() for p in model.body.parameters())
    rows += [row("catalog", f"{b.rows} rows x {b.frames} frames {b.size[0]}x{b.size[1]}", "",
                 f"{b.targets} target model(s), {b.layout}; setup (synthesize, ingest, register) {made:.1f} s"),
             row("generator", f"ngf {b.ngf}, {b.n_downsample} down, {b.n_blocks} blocks", "",
                 f"temporal, {params / 1e6:.2f} M parameters, untrained"),
             row("chunks", f"<= {b.chunk_frames} frames", "", f"{b.warmup_frames} warm-up frames before each (not a "
                 f"source's first), {b.batch_chunks} side by side per batch; the jobs cut them shorter only to fill "
                 "their actors' batches"),
             row("torch threads: here / in an actor", f"{torch.get_num_threads()} / {threads}", "",
                 f"{b.threads} CPU per actor"),
             row("precision (auto)", auto.precision, "", auto.precision_reason + (
                 "" if auto.precision == "bf16" else "; the bare generator in fp32 only"))]

    busy = []  # this process's CPU seconds per wall second in each bare pass: 1.0 = one core, as an actor has
    faults = []  # page faults per frame in each bare pass

    def bare(precision: str, n: int) -> float:
        cpu, faulted = time.process_time(), page_faults()
        with autocast("cpu", precision):
            seconds = bare_pass(model.body, b.batch_chunks, n, b.size, b.seed)
        busy.append((time.process_time() - cpu) / seconds)
        faults.append((page_faults() - faulted) / n)
        return seconds

    # the generator as glibc sets itself, then as every CPU renderer runs it (memory kept), one after
    # the other: the setting cannot be undone in a process
    n = max(b.batch_chunks, frames // 4)
    with autocast("cpu", auto.precision):  # a first pass's one-time costs in neither side
        bare_pass(model.body, b.batch_chunks, b.batch_chunks, b.size, b.seed)
    returned_fps = n / bare(auto.precision, n)
    kept = keep_freed_memory()
    kept_fps = n / bare(auto.precision, n)
    figures["memory_kept"] = {"glibc": kept, "fps_returned": returned_fps, "fps_kept": kept_fps,
                              "faults_per_frame": faults[:2]}
    rows.append(row("bare generator fps: freed memory kept / returned", kept_fps / returned_fps, "x",
                    f"{n} frames each way, {auto.precision}; page faults a frame {faults[0]:.0f} -> {faults[1]:.0f}"
                    if kept else "not glibc: the renderers keep the C library's own setting"))

    bare_s = {p: [bare(p, frames // 2)] for p in precisions}
    jobs = {actors: run_job(b, studio, os.path.join(workdir, f"out-{actors}"), actors) for actors in b.actors}
    for p in precisions:
        bare_s[p].append(bare(p, frames - frames // 2))
    fps = {p: frames / sum(s) for p, s in bare_s.items()}
    bare_fps = fps[auto.precision]  # the jobs' actors render in the auto precision
    figures.update(bare={p: {"seconds": bare_s[p], "fps": fps[p]} for p in precisions},
                   bare_frames=frames, bare_streams=b.batch_chunks, runtime=auto.record(),
                   jobs=jobs, output_frames=frames, actor_threads=threads, bare_cpu_per_wall=busy,
                   bare_faults_per_frame=faults)
    for p in precisions:
        rows.append(row(f"bare generator, {p}", fps[p], "fps", f"{1e3 / fps[p]:.0f} ms/frame, batch "
                        f"{b.batch_chunks}, {b.threads} thread(s); halves before/after the jobs: "
                        f"{frames // 2 / bare_s[p][0]:.2f} / {(frames - frames // 2) / bare_s[p][1]:.2f} fps; "
                        f"CPU / wall {max(busy):.2f} at most; memory kept"))
    if "bf16" in fps:
        figures["bf16_over_fp32"] = fps["bf16"] / fps["fp32"]
        rows.append(row("bare generator fps: bf16 / fp32", figures["bf16_over_fp32"], "x",
                        "bf16 under torch.autocast, as the actors render with precision auto"))
    keys = {}
    for actors, job in jobs.items():
        job["ratio"] = ratio = job["fps"] / (actors * bare_fps)
        label = f"job, {actors} actor{'s' if actors > 1 else ''}"
        rendered = job["rendered_frames"]
        rows += [row(f"{label}", job["fps"], "fps", f"wall {job['wall_s']:.1f} s, {job['model_loads']} "
                     f"model load(s), audio {', '.join(job['audio'])}, {auto.precision}"),
                 row(f"{label}: chunks; frames output / rendered", f"{job['chunks']}; {frames} / {rendered}", "",
                     f"warm-up {100 * (rendered - frames) / frames:.1f}% extra generator work, job overhead; "
                     f"the actors' page faults a frame rendered {job['actor_faults_per_frame']:.0f} (start-up too)"),
                 # with one actor its render calls run one after another: the wall less their
                 # time (and the joins', which mostly overlap them) is the job's fixed cost
                 row(f"{label}: in render calls (with model loads) + joins", job["actor_and_join_s"], "s",
                     f"the rest of the wall {job['wall_s'] - job['actor_and_join_s'] / actors:.1f} s: actor "
                     "start, validation, scheduling, the last join"),
                 row(f"{label}: timeline", job["wall_s"], "s", _timeline(job["timeline"])),
                 row(f"{label}: job fps / ({actors} x bare {auto.precision} fps)", ratio, "",
                     f"generator share of the wall: {rendered / bare_fps / actors / job['wall_s']:.2f}")]
        keys[actors] = key_ratio(f"catalog job fps / ({actors} x bare generator fps, {auto.precision}), "
                                 f"{actors} actor(s)",
                                 ratio, f">= {TARGET}", ratio >= TARGET, f"{threads} torch thread(s) per actor and "
                                 "in the bare pass; warm-up frames are job overhead")
    if len(jobs) > 1:
        lo, hi = min(jobs), max(jobs)
        figures["scaling"] = jobs[hi]["fps"] / jobs[lo]["fps"]
        rows.append(row(f"job fps, {hi} actors / {lo}", figures["scaling"], "x", f"{os.cpu_count()} cores"))
    if b.profile:
        rows += _profile_rows(profile_row(studio, workdir, b.chunk_frames, b.warmup_frames, b.batch_chunks), figures)
    figures["headline_actors"] = top = headline_actors(list(jobs), b.threads, os.cpu_count() or 1)
    return [keys[top], *(keys[a] for a in sorted(keys, reverse=True) if a != top)]


def headline_actors(counts: list[int], threads: int, cores: int) -> int:
    """The job held against "actors x bare" as the headline: the most actors whose threads leave a
    core for the job's driver and Ray's daemons, which otherwise take their CPU from the actors
    (a cluster runs those on its head node); the fewest where none does."""
    fits = [a for a in counts if a * threads < cores]
    return max(fits) if fits else min(counts)


def _timeline(t: dict) -> str:
    """The job's timeline (edn.render.batch.job_timeline) in a line: when each part ended."""
    return (f"validated and planned {t['validated_s']:.1f} s, actors ready {t['actors_ready_s']:.1f} s (model loads "
            f"{t['model_load_s']:.1f} s in all), first render call {t['first_render_s']:.1f} s, renders done "
            f"{t['renders_done_s']:.1f} s, last join started {t['last_join_started_s'] or 0:.1f} s, joins done "
            f"{t['total_s']:.1f} s ({t['joins_s']:.1f} s of joins in all)")


def _profile_rows(prof: dict, figures: dict) -> list[dict]:
    figures["profile"] = prof
    total = prof["render_s"] + prof["phases_s"]["join (frames copied, audio)"]
    out = [row("profile: one row in this process", total, "s", f"{prof['frames']} frames ({prof['rendered_frames']} "
               f"rendered); model load {prof['model_load_s']:.2f} s apart")]
    for phase, s in sorted(prof["phases_s"].items(), key=lambda kv: -kv[1]):
        out.append(row(f"  {phase}", 1e3 * s / prof["frames"], "ms/frame", f"{100 * s / total:.1f}%"))
    for phase, s in prof["beside_s"].items():
        out.append(row(f"  {phase}", 1e3 * s / prof["frames"], "ms/frame", "beside the generator: in no total"))
    return out
