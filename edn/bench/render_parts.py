"""Parts of `edn bench render`: the studio it renders (synthetic dancers, an untrained registered
model), the bare generator pass it is compared with, and the render actor's profile."""
from __future__ import annotations

import dataclasses
import math
import os
import time

import pandas as pd
import torch

from edn.models.meta import ModelMeta
from edn.models.networks import GeneratorConfig
from edn.pose.normalize import FloorStats


@dataclasses.dataclass(frozen=True)
class Studio:
    dataset: str
    tracking_uri: str
    catalog: str
    targets: list[str]   # registered model refs, name@alias
    rows: list[tuple[str, str]]  # (source video id, target ref)


def model_meta(dataset: str, target: str, record: dict, generator: GeneratorConfig, run_id: str) -> ModelMeta:
    """A body-stage model's metadata for a generator that was never trained: the ingest's floor
    statistics of the whole video (no holdout), no steps, no perceptual loss."""
    floor = FloorStats.from_dict(record["floor_stats"]) if record["floor_stats"] else None
    return ModelMeta(target=target, width=record["width"], height=record["height"], fps=record["fps"],
                     generator=generator, temporal=True, floor_stats=floor, dataset_url=dataset,
                     holdout_start=record["frames"], body_run_id=run_id, body_steps=0, perceptual_loss=False,
                     stage="body")


def make_studio(workdir: str, rows: int, targets: int, frames: int, size: tuple[int, int],
                generator: GeneratorConfig, layout: str, seed: int) -> Studio:
    """`rows` synthetic dancers with music, ingested with their ground-truth keypoints; the first
    `targets` of them registered as models (the same deterministic initial generator, each with
    its own floor statistics) in an MLflow registry on SQLite under `workdir`; a catalog with
    dancer i rendered onto target i mod `targets`."""
    from mlflow import MlflowClient

    from edn.data.ingest import IngestConfig, ingest
    from edn.data.reader import video_record
    from edn.inference import write_model_dir
    from edn.models.body import BodyGenerator
    from edn.registry import register
    from edn.synth import synthesize
    from edn.tracking import experiment_id
    videos = synthesize(os.path.join(workdir, "videos"), rows, frames, size, seed, audio=True)
    dataset = os.path.join(workdir, "dataset")
    done = ingest(sorted(v for v in videos if v.endswith(".mp4")), dataset, IngestConfig(estimator="groundtruth"))
    if len(done["done"]) != rows:
        raise RuntimeError(f"ingest of the benchmark's dancers failed: {done['failed']}")
    uri = f"sqlite:///{os.path.join(workdir, 'mlflow', 'mlflow.db')}"
    os.makedirs(os.path.join(workdir, "mlflow"), exist_ok=True)
    client = MlflowClient(uri)
    run_id = client.create_run(experiment_id(client, "edn-bench-render")).info.run_id
    torch.manual_seed(seed)
    state = BodyGenerator(generator, temporal=True).state_dict()
    refs = []
    for t in range(targets):
        target = f"dancer_{t:02d}"
        model_dir = os.path.join(workdir, "models", target)
        write_model_dir(model_dir, state, model_meta(dataset, target, video_record(dataset, target), generator, run_id))
        register(client, run_id, model_dir, f"edn-bench-{target}", "production")
        refs.append(f"edn-bench-{target}@production")
    pairs = [(f"dancer_{i:02d}", refs[i % targets]) for i in range(rows)]
    catalog = os.path.join(workdir, "catalog.csv")
    pd.DataFrame([(s, dataset, t, f"{s}_on_{t.split('@')[0]}.mp4", layout) for s, t in pairs],
                 columns=["source", "dataset", "target", "output", "layout"]).to_csv(catalog, index=False)
    return Studio(dataset, uri, catalog, refs, pairs)


def bare_pass(body: torch.nn.Module, streams: int, frames: int, size: tuple[int, int], seed: int) -> float:
    """Seconds of `body(x, prev)` for `frames` output frames, `streams` frames per forward (the
    job's batch: its chunks side by side), each output fed back as the next previous frame as
    Renderer.step does. The inputs are random figures: a convolution's cost does not depend on
    the values. Nothing else: no decode, drawing, encode or Ray."""
    w, h = size
    x = torch.rand(streams, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    prev = torch.zeros_like(x)
    started = time.perf_counter()
    with torch.no_grad():
        for _ in range(math.ceil(frames / streams)):
            prev = body(x, prev)
    return time.perf_counter() - started


def actor_threads(cpus: float) -> int:
    """torch's thread count in a Ray worker given `cpus` CPUs (Ray sets OMP_NUM_THREADS from it)."""
    import ray
    return ray.get(ray.remote(num_cpus=cpus)(lambda: __import__("torch").get_num_threads()).remote())


def profile_row(studio: Studio, workdir: str, chunk_frames: int, warmup: int, batch_chunks: int) -> dict:
    """One catalog row rendered in this process as a render actor and the join task do it: a
    RenderWorker renders batches of the row's chunks under cProfile, which times its phases
    (model load, Parquet read + JPEG decode, pose normalization, figure drawing, generator);
    compose and staging encode, in the actor's writer thread beside them, as the actor times
    them; then join_chunks, timed as a whole."""
    from edn.bench.harness import profile_calls
    from edn.data.reader import video_floor_stats, video_frames, video_record
    from edn.inference import load_model_dir
    from edn.models.body import BodyGenerator
    from edn.pose.draw import draw_pose
    from edn.pose.normalize import transfer_poses
    from edn.registry import parse_model_ref, registered_meta
    from edn.render.batch import staged_name
    from edn.render.chunks import SourceChunk, chunk_counts, split
    from edn.render.output import join_chunks
    from edn.render.worker import ChunkTask, RenderWorker, ResolvedModel
    source, ref = studio.rows[0]
    name, alias = parse_model_ref(ref, "")
    registered = registered_meta(name, alias, studio.tracking_uri)
    model = ResolvedModel(name, registered.version, registered.source, ())
    record = video_record(studio.dataset, source)
    floor = video_floor_stats(studio.dataset, source).to_dict()
    staging = os.path.join(workdir, "profile", "chunks")
    tasks = [ChunkTask("profile", model.ref, False, SourceChunk(studio.dataset, source, floor, c), "side_by_side", None,
                       record["fps"], os.path.join(staging, staged_name(c, 18)), 18)
             for c in split(record["frames"], chunk_counts([record["frames"]], chunk_frames, batch_chunks, warmup)[0],
                            warmup)]  # cut as a job of this row alone on one actor would cut it
    actor = RenderWorker(studio.tracking_uri)

    def render_row() -> list[dict]:
        return [r for i in range(0, len(tasks), batch_chunks) for r in actor.render(tasks[i:i + batch_chunks], model)]

    results, render_s, phases = profile_calls(render_row, {
        "model load": load_model_dir, "Parquet read + JPEG decode": video_frames,
        "pose normalization": transfer_poses, "figure drawing": draw_pose, "generator": BodyGenerator.forward})
    errors = [r["error"] for r in results if r["error"]]
    if errors:
        raise RuntimeError(f"the profiled row did not render: {errors[0]}")
    load_s = phases.pop("model load")
    render_s -= load_s
    phases["the rest of the actor's loop"] = render_s - sum(phases.values())
    t = time.perf_counter()
    joined = join_chunks([(task.staged_url, task.source.chunk.start) for task in tasks], studio.dataset, source,
                         os.path.join(workdir, "profile", "out.mp4"), staging,
                         os.path.join(workdir, "profile", "poster.jpg"))
    phases["join (frames copied, audio)"] = time.perf_counter() - t
    rendered = sum(c.source.chunk.stop - c.source.chunk.render_from for c in tasks)
    return {"frames": joined["frames"], "rendered_frames": rendered, "model_load_s": load_s,
            "render_s": render_s, "phases_s": phases,
            "beside_s": {"compose + staging encode (H.264), writer thread": actor.stats()["write_s"]}}
