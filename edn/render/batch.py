"""Rendering a catalog of transfers on Ray (`edn render-catalog`).

1. results so far: unreadable rows are failed, rows an earlier run finished are kept as they were;
2. validate: every row's model (the alias resolved to a version now, so a row renders one
   version throughout), output location and source, before any rendering; a bad row is
   recorded with its reason and the others go on. Poses of video files are extracted with the
   ingest code into a cache keyed by content (edn.render.sources);
3. plan: each source cut into chunks (edn.render.chunks); chunks staged by an interrupted run
   are reused;
4. render: the chunks go to a pool of render actors (edn.render.scheduler); a render actor that
   dies (a node lost) is restarted by Ray and its batch run again;
5. join: once a row's chunks are staged, a task writes its mp4 with the source's sound.
Every row's result is recorded as it finishes (edn.render.manifest), so a rerun skips the rows
done and tries the failed ones again; the manifest and its gallery page (edn.render.gallery) are
rewritten as rows finish.
"""
from __future__ import annotations

import logging
import math
import re
import time
from collections import defaultdict
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
from edn.render.gallery import gallery_html
from edn.render.manifest import finished, load_state, poster_url, write_manifest
from edn.render.scheduler import RenderScheduler
from edn.render.sources import Source, describe, prepare_sources
from edn.render.worker import ChunkTask, join_chunks
from edn.runtime import DEVICES, PRECISIONS
from edn.storage import exists, filesystem, join, read_bytes, write_bytes_atomic

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


def _entry(row: CatalogRow, **fields) -> dict:
    """The row's manifest entry: who it is, then what became of it in this run."""
    return {"row": row.number, "row_id": row.row_id, "source": row.source, "target": row.target,
            "output": row.output, "ran": True, **fields}


class CatalogResults:
    """What became of each row: manifest entries by row number. A row that finishes, done or
    failed, is recorded at once (edn.render.manifest.finished); then the manifest and the gallery
    beside it (edn.render.gallery) are rewritten, the rows not finished yet shown as pending, so a
    driver killed mid-job leaves the state so far (rewrites at most every `publish_every_s`)."""

    def __init__(self, work_url: str, out_url: str, catalog_url: str, publish_every_s: float):
        self.work, self.out, self.catalog, self.publish_every_s = work_url, out_url, catalog_url, publish_every_s
        self.entries: dict[int, dict] = {}
        self.pending: dict[int, dict] = {}   # rows not finished yet
        self.posters: dict[str, bytes] = {}  # row_id -> the gallery's poster JPEG
        self.published, self.unpublished = float("-inf"), False

    def unreadable(self, invalid: list[dict]) -> None:
        """Rows the catalog reader refused ({row, reason, **raw}): failed at stage catalog."""
        for bad in invalid:
            self.entries[bad["row"]] = {
                "row": bad["row"], "row_id": "", "source": bad.get("source", ""), "target": bad.get("target", ""),
                "output": bad.get("output", ""), "status": "failed", "stage": "catalog", "ran": True,
                "error": bad["reason"]}

    def still_to_do(self, rows: list[CatalogRow]) -> list[CatalogRow]:
        """The rows to render now, pending until they finish; those an earlier run finished (and
        whose output is still there) are kept as it recorded them."""
        todo = []
        for row in rows:
            state = load_state(self.work, row.row_id)
            if state and state["status"] == "done" and exists(row.output):
                self.entries[row.number] = {**state, "row": row.number, "ran": False}
                self._load_poster(row.row_id)
            else:
                todo.append(row)
                self.pending[row.number] = _entry(row, status="pending", stage="", error="", ran=False)
        return todo

    def _load_poster(self, row_id: str) -> None:
        if exists(url := poster_url(self.work, row_id)):
            self.posters[row_id] = read_bytes(url)

    def _finish(self, row: CatalogRow, entry: dict) -> None:
        self.pending.pop(row.number, None)
        self.entries[row.number] = finished(self.work, entry)
        self.unpublished = True
        self.publish()

    def fail(self, row: CatalogRow, stage: str, error: str, **extra) -> None:
        log.error("row %d (%s -> %s): %s", row.number, row.source, row.target, error)
        self._finish(row, _entry(row, status="failed", stage=stage, error=error, **extra))

    def done(self, row: CatalogRow, **fields) -> None:
        self._load_poster(row.row_id)
        self._finish(row, _entry(row, status="done", stage="", error="", **fields))
        log.info("row %d done: %s (%d frames)", row.number, row.output, fields["frames"])

    def counts(self) -> str:
        """Rows done, failed and in all, for the progress line."""
        done = sum(e["status"] == "done" for e in self.entries.values())
        return f"{done} done, {len(self.entries) - done} failed, of {len(self.entries) + len(self.pending)}"

    def publish_due_in(self) -> float | None:
        """Seconds until finished rows not yet shown are due to be published; None: none waits."""
        return max(0.0, self.published + self.publish_every_s - time.monotonic()) if self.unpublished else None

    def publish(self, force: bool = False) -> str:
        """Rewrites manifest.parquet and index.html (each atomically) with every row so far, when
        forced or a finished row waits and the last rewrite is `publish_every_s` old."""
        url = join(self.out, "manifest.parquet")
        if not force and (not self.unpublished or self.publish_due_in() > 0):
            return url
        entries = sorted([*self.entries.values(), *self.pending.values()], key=lambda e: e["row"])
        page = gallery_html(entries, self.posters, self.out, self.catalog, complete=not self.pending)
        # the page first: killed in between, the page is one row ahead of the manifest, never behind
        write_bytes_atomic(join(self.out, "index.html"), page.encode())
        write_manifest(self.out, entries)
        self.published, self.unpublished = time.monotonic(), False
        return url

    def summary(self, scheduler: RenderScheduler, chunks: list[ChunkTask]) -> dict:
        """The last manifest and gallery; -> the run's counts, its failed rows, the actors' model
        loads and page faults, and the chunks this run rendered with their warm-up frames (rendered, not kept)."""
        manifest = self.publish(force=True)
        entries = sorted(self.entries.values(), key=lambda e: e["row"])
        done = [e for e in entries if e["status"] == "done"]
        return {"manifest": manifest, "gallery": join(self.out, "index.html"), "rows": len(entries),
                "done": len(done), "rendered": sum(1 for e in done if e["ran"]),
                "skipped": sum(1 for e in done if not e["ran"]),
                "failed": [{k: e[k] for k in ("row", "source", "target", "stage", "error")}
                           for e in entries if e["status"] == "failed"],
                "model_loads": sum(s["loads"] for s in scheduler.stats), "actors": len(scheduler.actors),
                "actor_page_faults": sum(s["page_faults"] for s in scheduler.stats),
                "chunks": len(chunks), "warmup_frames": sum(t.source.chunk.start - t.source.chunk.render_from
                                                            for t in chunks)}


def _validate(rows: list[CatalogRow], cfg: CatalogConfig, tracking_uri: str, cache_url: str,
              results: CatalogResults) -> tuple[list[tuple[CatalogRow, str, ModelMeta, Source]], dict[str, list[str]]]:
    """-> (row, model "name@version", model meta, source) for the rows that can be rendered, and
    the precisions each model's evaluation cleared (edn.eval.precision); the other rows are
    failed with the reason."""
    models, cleared = {}, {}
    for ref in {r.target for r in rows}:
        try:
            name, alias = parse_model_ref(ref, "")
            version, meta, tags = registered_meta(name, alias, tracking_uri)
            models[ref] = (f"{name}@{version}", meta)
            cleared[f"{name}@{version}"] = cleared_precisions(tags)
        except ModelNotFoundError as e:
            models[ref] = str(e)
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
    return ready, cleared


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


def staged_name(chunk: Chunk) -> str:
    """A staged chunk's file name: its bounds, so that a rerun with other chunk settings never
    takes an interrupted run's chunk for one of its own."""
    return f"chunk-{chunk.start:09d}-{chunk.stop:09d}.mp4"


def staged_chunks(staging: str) -> list[Chunk]:
    """The chunks an interrupted run staged for a row, read from their file names (staged_name)."""
    fs, path = filesystem(staging)
    names = [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)] if fs.exists(path) else []
    bounds = [re.fullmatch(r"chunk-(\d{9})-(\d{9})\.mp4", n) for n in names]
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
    faces = [meta.face_generator is not None if row.face_gan is None else row.face_gan for row, _, meta, _ in ready]
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
        staged = staged_chunks(staging)
        tasks = [ChunkTask(row.row_id, model, faces[i], SourceChunk(source.dataset_url, source.video_id,
                                                                    source.floor, c),
                           row.layout, row.resolution, source.fps, join(staging, staged_name(c)), row.zero_shot)
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
        self.crf, self.results = cfg.crf, results
        self.running: dict = {}  # ObjectRef -> RowPlan

    def start(self, plan: RowPlan) -> None:
        if plan.error:
            self.results.fail(plan.row, "render", plan.error, model_version=plan.model)
            return
        ref = self.task.remote([t.staged_url for t in plan.tasks], plan.source.dataset_url, plan.source.video_id,
                               plan.row.output, self.crf, plan.staging, poster_url(self.results.work, plan.row.row_id))
        self.running[ref] = plan

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
        self.results.done(plan.row, model_version=plan.model, frames=frames,
                          frames_without_pose=plan.source.frames_without_pose, normalization=plan.normalization,
                          seconds_per_frame=(plan.seconds + joined["seconds"]) / max(1, frames),
                          audio=joined["audio"], zero_shot=plan.zero_shot, **plan.runtime)


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
    ready, cleared = _validate(todo, cfg, tracking_uri, cfg.source_cache_url or join(work, "sources"), results)
    plans, chunks = plan_rows(ready, cfg, work)

    scheduler = RenderScheduler(chunks, tracking_uri, cfg.actors, cfg.batch_chunks, cfg.models_per_actor, {
        "num_cpus": cfg.cpus_per_actor, "num_gpus": cfg.gpus_per_actor, "resources": cfg.resources_per_actor or None,
        "max_restarts": cfg.worker_restarts, "max_task_retries": cfg.worker_restarts}, device, cfg.precision, cleared)
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
    return results.summary(scheduler, chunks)
