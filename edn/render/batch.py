"""Rendering a catalog of transfers on Ray (`edn render-catalog`).

1. results so far: unreadable rows are failed, rows an earlier run finished are kept as they were;
2. validate: every row's model (the alias resolved to a version now, so a row renders one
   version throughout), output location and source, before any rendering; a bad row is
   recorded with its reason and the others go on. Poses of video files are extracted with the
   ingest code into a cache keyed by content (edn.render.sources);
3. plan: each source cut into chunks (edn.render.chunks); chunks staged by an interrupted run
   are reused;
4. render: the chunks go to a pool of render actors (edn.render.scheduler), started before
   step 2 so that their start-up and first model load overlap it; a render actor that dies (a
   node lost) is restarted by Ray and its batch run again;
5. join: once a row's chunks are staged, a task writes its mp4 with the source's sound.
Every row's result is recorded as it finishes (edn.render.results, edn.render.manifest), so a
rerun skips the rows done and tries the failed ones again; the manifest and its gallery page
(edn.render.gallery) are rewritten as rows finish.
"""
from __future__ import annotations

import logging
import math
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from edn.data.ingest import IngestConfig
from edn.errors import ConfigError
from edn.eval.precision import cleared_precisions
from edn.inference import zero_shot_note
from edn.models.meta import ModelMeta
from edn.progress import Progress
from edn.registry import ModelNotFoundError, parse_model_ref, registered_meta
from edn.render.catalog import CatalogRow, probe_writable, read_catalog, row_model
from edn.render.chunks import Chunk, SourceChunk, chunk_counts, normalization, split
from edn.render.manifest import poster_url
from edn.render.output import join_chunks
from edn.render.results import CatalogResults
from edn.render.scheduler import RenderScheduler
from edn.render.sources import Source, describe, prepare_sources
from edn.render.worker import ChunkTask, ResolvedModel
from edn.runtime import DEVICES, PRECISIONS
from edn.storage import filesystem, join

log = logging.getLogger(__name__)


@dataclass
class CatalogConfig:
    tracking_uri: str = ""           # MLflow; '' = $MLFLOW_TRACKING_URI, else outputs/mlflow
    work_url: str = ""               # row states, staged chunks, source cache; '' = <out>/_work
    source_cache_url: str = ""       # poses of source video files by content; '' = <work>/sources
    default_alias: str = "production"  # for a target named without @alias
    chunk_frames: int = 240          # frames per chunk at most (shorter only to fill the actors: plan_rows)
    warmup_frames: int = 30          # frames rendered and thrown away before a chunk (temporal models)
    batch_chunks: int = 4            # chunks rendered side by side in one batch
    actors: int = 2
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0      # fractions share a GPU between actors
    device: str = "auto"             # the actors': auto = cuda with gpus_per_actor > 0, else cpu (edn.runtime)
    precision: str = "auto"          # auto | fp32 | bf16, resolved in each actor on its own hardware;
                                     # auto keeps to the precisions a model's evaluation cleared
    resources_per_actor: dict = field(default_factory=dict)  # custom Ray resources, e.g. a node pool's label
    models_per_actor: int = 2        # target models an actor keeps loaded
    worker_restarts: int = 3         # a dead render actor is restarted and its batch retried this often
    join_cpus: float = 0.5
    crf: int = 18
    publish_every_s: float = 2.0     # manifest.parquet and index.html rewritten at most this often as rows finish
    ingest: IngestConfig = field(default_factory=IngestConfig)  # how source videos' poses are extracted


def _resolve_models(rows: list[CatalogRow], tracking_uri: str) -> tuple[dict, dict[str, ResolvedModel]]:
    """-> per row target, ("name@version", its meta) or why it cannot be loaded; and per
    "name@version", what the actors need to load it."""
    models, resolved = {}, {}
    for ref in {r.target for r in rows}:
        try:
            name, alias = parse_model_ref(ref, "")
            registered = registered_meta(name, alias, tracking_uri)
            model = ResolvedModel(name, registered.version, registered.source,
                                  tuple(cleared_precisions(registered.tags)))
            models[ref], resolved[model.ref] = (model.ref, registered.meta), model
        except ModelNotFoundError as e:
            models[ref] = str(e)
    return models, resolved


def uses_face(row: CatalogRow, meta: ModelMeta) -> bool:
    """Whether the row's frames go through the face GAN: the row's face_gan, else whether the model has one."""
    return meta.face_generator is not None if row.face_gan is None else row.face_gan


def _check_models(rows: list[CatalogRow], models: dict,
                  results: CatalogResults) -> list[tuple[CatalogRow, str, ModelMeta]]:
    """-> (row, model "name@version", model meta) for the rows whose model and output are good;
    the other rows are failed with the reason."""
    outputs = {r.output: probe_writable(r.output) for r in rows}
    good, shown = [], {}  # shown: per (target, zero-shot performer), row_model's answer, read once
    for row in rows:
        model = models[row.target]
        if not isinstance(model, str):
            if (row.target, row.zero_shot) not in shown:
                shown[row.target, row.zero_shot] = row_model(row, *model)
            model = shown[row.target, row.zero_shot]
        if isinstance(model, str):
            results.fail(row, "model", model)
        elif row.face_gan and not model[1].face_generator:
            results.fail(row, "model", f"face_gan is true but {row.target} has no face generator (train --stage face)")
        elif outputs[row.output]:
            results.fail(row, "output", outputs[row.output])
        else:
            good.append((row, *model))
    return good


def _check_sources(good: list[tuple[CatalogRow, str, ModelMeta]], cfg: CatalogConfig, cache_url: str,
                   results: CatalogResults) -> list[tuple[CatalogRow, str, ModelMeta, Source]]:
    """-> (row, model, meta, source) for the rows whose source can be rendered (video files'
    poses extracted now unless cached: edn.render.sources); the other rows are failed."""
    in_datasets = {}
    for row, *_ in good:
        if row.dataset and (row.dataset, row.source) not in in_datasets:
            try:
                in_datasets[row.dataset, row.source] = describe(row.dataset, row.source)
            except (ValueError, FileNotFoundError) as e:
                in_datasets[row.dataset, row.source] = str(e)
    files = prepare_sources([r.source for r, *_ in good if not r.dataset], cache_url, cfg.ingest) \
        if any(not r.dataset for r, *_ in good) else {}
    ready = []
    for row, model, meta in good:
        source = in_datasets[row.dataset, row.source] if row.dataset else files[row.source]
        if isinstance(source, str):
            results.fail(row, "source", source)
        else:
            ready.append((row, model, meta, source))
    return ready


def first_loads(good: list[tuple[CatalogRow, str, ModelMeta]]) -> list[tuple]:
    """The render queues' keys (edn.render.scheduler.QueueKey), the one with the most rows first:
    what the actors load ahead, before the sources' lengths are known."""
    rows = Counter((model, row.zero_shot, uses_face(row, meta)) for row, model, meta in good)
    return [key for key, _ in rows.most_common()]


@dataclass
class RowPlan:
    """One row's render: its chunks, and what their renders have added up to so far."""
    row: CatalogRow
    model: str                  # "name@version"
    source: Source
    normalization: str          # edn.render.chunks.normalization, for the manifest
    staging: str                # the folder of its staged chunks
    tasks: list[ChunkTask]      # every chunk, in order
    left: int                   # chunks still to render (those staged by an interrupted run are done)
    zero_shot: str | None       # a zero-shot row's note (edn.inference.zero_shot_note)
    seconds: float = 0.0        # render time of the chunks rendered in this run
    error: str = ""             # the first failed chunk's error
    runtime: dict = field(default_factory=dict)  # edn.runtime.Runtime.record() of the actor that rendered it

    def add(self, result: dict) -> bool:
        """One chunk's render result (RenderWorker.render); whether the row's chunks are all rendered."""
        self.left -= 1
        self.seconds += result["seconds"]
        self.error = self.error or result["error"]
        self.runtime = self.runtime or result.get("runtime", {})
        return not self.left


def staged_name(chunk: Chunk, crf: int) -> str:
    """A staged chunk's file name: its bounds and its encoding, so that a rerun with other chunk
    or quality settings never takes an interrupted run's chunk for one of its own."""
    return f"chunk-{chunk.start:09d}-{chunk.stop:09d}-crf{crf}.mp4"


def staged_chunks(staging: str, crf: int) -> list[Chunk]:
    """The chunks an interrupted run staged for a row at this `crf`, read from their file names
    (staged_name)."""
    fs, path = filesystem(staging)
    names = [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)] if fs.exists(path) else []
    bounds = [re.fullmatch(rf"chunk-(\d{{9}})-(\d{{9}})-crf{crf}\.mp4", n) for n in names]
    return [Chunk(int(m[1]), int(m[2]), 0) for m in bounds if m]


def row_chunks(frames: int, count: int, warmup: int, staged: list[Chunk]) -> list[Chunk]:
    """A row's chunks: `count` of them, or as many as an interrupted run cut it into, when the
    chunks it staged fit such a cut (so they are kept, whatever this run's actors and rows)."""
    if staged:
        bounds, length = {(c.start, c.stop) for c in staged}, staged[0].stop - staged[0].start
        for earlier_count in range(max(1, frames // (length + 1)), frames // max(1, length - 1) + 1):
            earlier = split(frames, earlier_count, warmup)  # an even cut: its chunks are length +- 1 long
            if bounds <= {(c.start, c.stop) for c in earlier}:
                return earlier
    return split(frames, count, warmup)


def plan_rows(ready: list[tuple[CatalogRow, str, ModelMeta, Source]], cfg: CatalogConfig,
              work: str) -> tuple[dict[str, RowPlan], list[ChunkTask]]:
    """-> (each row's plan by row_id, the chunks still to render in row order). Chunks of a
    temporal model start `warmup_frames` early; sources are cut into chunks of at most
    `chunk_frames`, shorter only as far as it takes to fill every actor's batches (chunk_counts)
    with the chunks of one render queue (a model and face setting: edn.render.scheduler)."""
    faces = [uses_face(row, meta) for row, _, meta, _ in ready]
    warmups = [cfg.warmup_frames if meta.temporal else 0 for _, _, meta, _ in ready]
    queues = defaultdict(list)  # the rows' numbers in `ready`, by the queue their chunks wait in
    for i, (_, model, _, _) in enumerate(ready):
        queues[model, faces[i]].append(i)
    total = sum(source.frames for *_, source in ready)
    counts = {}
    for members in queues.values():  # one model: one warm-up
        frames = [ready[i][3].frames for i in members]
        streams = cfg.batch_chunks * max(1, math.ceil(cfg.actors * sum(frames) / max(1, total)))
        counts.update(zip(members, chunk_counts(frames, cfg.chunk_frames, streams, warmups[members[0]])))
    plans, todo = {}, []
    for i, (row, model, meta, source) in enumerate(ready):
        staging = join(work, "chunks", row.row_id)
        staged = staged_chunks(staging, cfg.crf)
        tasks = [ChunkTask(row.row_id, model, faces[i], SourceChunk(source.dataset_url, source.video_id,
                                                                    source.floor, c),
                           row.layout, row.resolution, source.fps, join(staging, staged_name(c, cfg.crf)), cfg.crf,
                           row.zero_shot)
                 for c in row_chunks(source.frames, counts[i], warmups[i], staged)]
        kept = {(c.start, c.stop) for c in staged}
        unstaged = [t for t in tasks if (t.source.chunk.start, t.source.chunk.stop) not in kept]
        plans[row.row_id] = RowPlan(row, model, source, normalization(bool(source.floor), meta.floor_stats is not None),
                                    staging, tasks, len(unstaged), zero_shot_note(meta, parse_model_ref(model, "")[1]))
        todo += unstaged
    return plans, todo


class RowJoins:
    """The join tasks of rows whose chunks are all rendered; a row with a failed chunk is failed
    instead. Their outcome goes to the results."""

    def __init__(self, cfg: CatalogConfig, results: CatalogResults):
        import ray

        self.task = ray.remote(num_cpus=cfg.join_cpus, max_retries=2)(join_chunks)
        self.results = results
        self.running: dict = {}  # ObjectRef -> RowPlan
        self.last_started, self.seconds = None, 0.0  # for the job's timeline

    def start(self, plan: RowPlan) -> None:
        if plan.error:
            self.results.fail(plan.row, "render", plan.error, model_version=plan.model)
            return
        ref = self.task.remote([(t.staged_url, t.source.chunk.start) for t in plan.tasks], plan.source.dataset_url,
                               plan.source.video_id, plan.row.output, plan.staging,
                               poster_url(self.results.work, plan.row.row_id))
        self.running[ref] = plan
        self.last_started = time.time()

    def collect(self, ref) -> None:
        import ray

        plan = self.running.pop(ref)
        try:
            joined = ray.get(ref)
        except ray.exceptions.RayError as e:
            cause = getattr(e, "cause", None) or e
            self.results.fail(plan.row, "join", f"{type(cause).__name__}: {cause}", model_version=plan.model)
            return
        frames = joined["frames"]
        self.seconds += joined["seconds"]
        self.results.done(plan.row, model_version=plan.model, frames=frames,
                          frames_without_pose=plan.source.frames_without_pose, normalization=plan.normalization,
                          seconds_per_frame=(plan.seconds + joined["seconds"]) / max(1, frames),
                          audio=joined["audio"], zero_shot=plan.zero_shot, **plan.runtime)


def job_timeline(started: float, validated: float, actors: list[dict], joins: RowJoins) -> dict:
    """Where a job's wall went, in seconds from its start (wall clocks: the actors' are their
    nodes'): validation and planning done; the last actor ready; the first render call begun and
    the last ended; the last join started; the end (the last join collected); the actors' summed
    model loads and render calls (loads inside them included), and the joins' summed seconds."""
    def at(key: str, pick) -> float | None:
        times = [a[key] for a in actors if a.get(key) is not None]
        return round(pick(times) - started, 3) if times else None
    return {"validated_s": round(validated - started, 3), "actors_ready_s": at("ready_at", max),
            "first_render_s": at("first_render_at", min), "renders_done_s": at("last_render_end", max),
            "total_s": round(time.time() - started, 3),
            "model_load_s": round(sum(a.get("load_s", 0.0) for a in actors), 3),
            "render_calls_s": round(sum(a.get("render_s", 0.0) for a in actors), 3),
            "last_join_started_s": round(joins.last_started - started, 3) if joins.last_started else None,
            "joins_s": round(joins.seconds, 3)}


def actor_device(cfg: CatalogConfig) -> str:
    """The device the render actors ask for: auto is cuda when each actor gets a GPU share.
    Checked here, not first in the actors, so that a bad setting fails the job at once."""
    if cfg.device not in DEVICES or cfg.precision not in PRECISIONS:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)} and precision one of "
                          f"{', '.join(PRECISIONS)}, not {cfg.device!r} and {cfg.precision!r}")
    if cfg.device == "auto":
        return "cuda" if cfg.gpus_per_actor > 0 else "cpu"
    if cfg.device == "cuda" and cfg.gpus_per_actor <= 0:
        raise ConfigError("device cuda needs gpus_per_actor > 0: an actor without a GPU share sees no GPU")
    return cfg.device


def render_catalog(catalog_url: str, out_url: str, cfg: CatalogConfig | None = None) -> dict:
    import ray

    from edn.tracking import tracking_uri as default_tracking_uri
    started = time.time()
    cfg = cfg or CatalogConfig()
    device = actor_device(cfg)
    tracking_uri = default_tracking_uri(cfg.tracking_uri)
    work = cfg.work_url or join(out_url, "_work")
    rows, invalid = read_catalog(catalog_url, out_url, cfg.default_alias)
    results = CatalogResults(work, out_url, catalog_url, cfg.publish_every_s)
    results.unreadable(invalid)
    todo = results.still_to_do(rows)
    results.publish(force=True)
    log.info("catalog %s: %d rows, %d already done, %d unreadable", catalog_url, len(rows) + len(invalid),
             len(rows) - len(todo), len(invalid))
    # the actors start now, so that their start-up (importing torch) and their first model's load
    # overlap the validation; after it where video files' poses are extracted, which takes CPUs.
    # Each row is a chunk at least: as many actors as rows at most
    scheduler = RenderScheduler(tracking_uri, cfg.batch_chunks, cfg.models_per_actor, {
        "num_cpus": cfg.cpus_per_actor, "num_gpus": cfg.gpus_per_actor, "resources": cfg.resources_per_actor or None,
        "max_restarts": cfg.worker_restarts, "max_task_retries": cfg.worker_restarts}, device, cfg.precision)
    if todo and all(r.dataset for r in todo):
        scheduler.start(min(cfg.actors, len(todo)))
    models, resolved = _resolve_models(todo, tracking_uri)
    good = _check_models(todo, models, results)
    scheduler.preload(first_loads(good), resolved)
    ready = _check_sources(good, cfg, cfg.source_cache_url or join(work, "sources"), results)
    plans, chunks = plan_rows(ready, cfg, work)
    if chunks and not scheduler.actors:
        scheduler.start(min(cfg.actors, len(chunks)))
    scheduler.add(chunks, resolved)
    validated = time.time()
    joins = RowJoins(cfg, results)
    for plan in plans.values():
        if not plan.left:  # every chunk staged by an interrupted run
            joins.start(plan)
    staged = sum(t.frames for p in plans.values() for t in p.tasks) - sum(t.frames for t in chunks)
    with Progress(f"catalog {catalog_url}", sum(p.source.frames for p in plans.values()), "frames",
                  initial=staged) as progress:
        while scheduler.busy or joins.running:
            scheduler.dispatch()
            ready, _ = ray.wait([*scheduler.running, *joins.running], num_returns=1, timeout=results.publish_due_in())
            results.publish()  # finished rows shown within publish_every_s, even while the next ones take long
            if not ready:
                continue
            ref = ready[0]
            rendered = 0
            if ref in joins.running:
                joins.collect(ref)
            else:
                for task, result in scheduler.collect(ref):
                    rendered += task.frames
                    plan = plans[task.row_id]
                    if plan.add(result):
                        joins.start(plan)
            progress.update(rendered, rows=results.counts())
    return results.summary(scheduler, chunks, job_timeline(started, validated, scheduler.stats, joins))
