"""Rendering a catalog of transfers on Ray (`edn render-catalog`).

1. validate: every row's columns, model (the alias resolved to a version now, so a row renders
   one version throughout), output location and source, before any rendering; a bad row is
   recorded with its reason and the others go on;
2. sources: poses of video files extracted with the ingest code into a cache keyed by content;
3. render: each source cut into chunks (edn.render.chunks); batches of one model's chunks go to
   a pool of render actors keyed by target: a batch goes to an idle actor that already holds its
   model when there is one, so each model is loaded once per actor and reused across rows;
4. join: once a row's chunks are staged, a task writes its mp4 with the source's sound.
Rows done by an earlier run are skipped; failed rows are retried; staged chunks of an
interrupted run are reused. A render actor that dies (a node lost) is restarted by Ray and its
batch run again.
"""
from __future__ import annotations

import logging
from collections import defaultdict, deque
from dataclasses import dataclass, field

from edn.data.ingest import IngestConfig
from edn.models.meta import ModelMeta
from edn.registry import ModelNotFoundError, parse_model_ref, registered_meta
from edn.render.catalog import CatalogRow, probe_writable, read_catalog
from edn.render.chunks import SourceChunk, normalization, plan_chunks
from edn.render.manifest import finished, load_state, write_manifest
from edn.render.sources import Source, describe, prepare_sources
from edn.render.worker import ChunkTask, RenderWorker, join_chunks
from edn.storage import exists, join

log = logging.getLogger(__name__)


@dataclass
class CatalogConfig:
    tracking_uri: str = ""           # MLflow; '' = $MLFLOW_TRACKING_URI, else outputs/mlflow
    work_url: str = ""               # row states, staged chunks, source cache; '' = <out>/_work
    source_cache_url: str = ""       # poses of source video files by content; '' = <work>/sources
    default_alias: str = "production"  # for a target named without @alias
    chunk_frames: int = 240          # frames per chunk
    warmup_frames: int = 30          # frames rendered and thrown away before a chunk (temporal models)
    batch_chunks: int = 4            # chunks rendered side by side in one batch
    actors: int = 2
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0      # fractions share a GPU between actors
    resources_per_actor: dict = field(default_factory=dict)  # custom Ray resources, e.g. a node pool's label
    models_per_actor: int = 2        # target models an actor keeps loaded
    worker_restarts: int = 3         # a dead render actor is restarted and its batch retried this often
    join_cpus: float = 0.5
    crf: int = 18
    ingest: IngestConfig = field(default_factory=IngestConfig)  # how source videos' poses are extracted


def _entry(row: CatalogRow, **fields) -> dict:
    """The row's manifest entry: who it is, then what became of it in this run."""
    return {"row": row.number, "row_id": row.row_id, "source": row.source, "target": row.target,
            "output": row.output, "ran": True, **fields}


def _failed(row: CatalogRow, stage: str, error: str, **extra) -> dict:
    return _entry(row, status="failed", stage=stage, error=error, **extra)


def _validate(rows: list[CatalogRow], cfg: CatalogConfig, tracking_uri: str, cache_url: str,
              fail) -> list[tuple[CatalogRow, str, ModelMeta, Source]]:
    """-> (row, model "name@version", model meta, source) for the rows that can be rendered."""
    models = {}
    for ref in {r.target for r in rows}:
        try:
            name, alias = parse_model_ref(ref, "")
            version, meta = registered_meta(name, alias, tracking_uri)
            models[ref] = (f"{name}@{version}", meta)
        except ModelNotFoundError as e:
            models[ref] = str(e)
    outputs = {r.output: probe_writable(r.output) for r in rows}
    good = []
    for row in rows:
        model = models[row.target]
        if isinstance(model, str):
            fail(row, "model", model)
        elif row.face_gan and not model[1].face_generator:
            fail(row, "model", f"face_gan is true but {row.target} has no face generator (train --stage face)")
        elif outputs[row.output]:
            fail(row, "output", outputs[row.output])
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
            fail(row, "source", source)
        else:
            ready.append((row, model, meta, source))
    return ready


def _pick(idle: list[int], holds: dict[int, deque], pending: dict[tuple, deque]) -> tuple[int, tuple] | None:
    """An idle actor and a model key to give it: an actor already holding a model with work
    waiting, else the model with the most waiting work, to the first idle actor."""
    for actor in idle:
        for key in reversed(holds[actor]):
            if pending.get(key):
                return actor, key
    waiting = [k for k, q in pending.items() if q]
    if not waiting:
        return None
    return idle[0], max(waiting, key=lambda k: len(pending[k]))


def render_catalog(catalog_url: str, out_url: str, cfg: CatalogConfig | None = None) -> dict:
    import ray

    from edn.tracking import tracking_uri as default_tracking_uri
    cfg = cfg or CatalogConfig()
    tracking_uri = default_tracking_uri(cfg.tracking_uri)
    work = cfg.work_url or join(out_url, "_work")
    rows, invalid = read_catalog(catalog_url, out_url, cfg.default_alias)
    entries = {b["row"]: {"row": b["row"], "row_id": "", "source": b.get("source", ""), "target": b.get("target", ""),
                          "output": b.get("output", ""), "status": "failed", "stage": "catalog", "ran": True,
                          "error": b["reason"]} for b in invalid}
    todo = []
    for row in rows:
        state = load_state(work, row.row_id)
        if state and state["status"] == "done" and exists(row.output):
            entries[row.number] = {**state, "row": row.number, "ran": False}
        else:
            todo.append(row)
    log.info("catalog %s: %d rows, %d already done, %d unreadable", catalog_url, len(rows) + len(invalid),
             len(rows) - len(todo), len(invalid))

    def fail(row, stage, error, **extra):
        log.error("row %d (%s -> %s): %s", row.number, row.source, row.target, error)
        entries[row.number] = finished(work, _failed(row, stage, error, **extra))

    ready = _validate(todo, cfg, tracking_uri, cfg.source_cache_url or join(work, "sources"), fail)
    pending: dict[tuple, deque] = defaultdict(deque)
    plan = {}
    for row, model, meta, source in ready:
        warmup = cfg.warmup_frames if meta.temporal else 0
        use_face = meta.face_generator is not None if row.face_gan is None else row.face_gan
        staging = join(work, "chunks", row.row_id)
        tasks = [ChunkTask(row.row_id, model, use_face, SourceChunk(source.dataset_url, source.video_id, source.floor, c),
                           row.layout, row.resolution, source.fps, join(staging, f"chunk-{c.start:09d}.mp4"))
                 for c in plan_chunks(source.frames, cfg.chunk_frames, warmup)]
        plan[row.row_id] = {"row": row, "model": model, "source": source, "staging": staging, "tasks": tasks,
                            "normalization": normalization(bool(source.floor), meta.floor_stats is not None),
                            "left": 0, "seconds": 0.0, "error": ""}
        for task in tasks:
            if exists(task.staged_url):  # staged by an interrupted run
                continue
            plan[row.row_id]["left"] += 1
            pending[model, use_face].append(task)

    join_task = ray.remote(num_cpus=cfg.join_cpus, max_retries=2)(join_chunks)
    joins = {}

    def row_rendered(row_id):
        p = plan[row_id]
        if p["error"]:
            fail(p["row"], "render", p["error"], model_version=p["model"])
            return
        joins[join_task.remote([t.staged_url for t in p["tasks"]], p["source"].dataset_url, p["source"].video_id,
                               p["row"].output, cfg.crf, p["staging"])] = row_id

    for row_id, p in plan.items():
        if not p["left"]:
            row_rendered(row_id)

    Worker = ray.remote(RenderWorker).options(num_cpus=cfg.cpus_per_actor, num_gpus=cfg.gpus_per_actor,
                                              resources=cfg.resources_per_actor or None,
                                              max_restarts=cfg.worker_restarts, max_task_retries=cfg.worker_restarts)
    n_actors = max(0, min(cfg.actors, sum(len(q) for q in pending.values())))
    actors = [Worker.remote(tracking_uri, cfg.models_per_actor) for _ in range(n_actors)]
    holds = {a: deque(maxlen=cfg.models_per_actor) for a in range(n_actors)}
    idle, running, stats = list(range(n_actors)), {}, []
    while running or joins or any(pending.values()):
        while idle and (choice := _pick(idle, holds, pending)):
            actor, key = choice
            batch = [pending[key].popleft() for _ in range(min(cfg.batch_chunks, len(pending[key])))]
            idle.remove(actor)
            if key in holds[actor]:
                holds[actor].remove(key)
            holds[actor].append(key)
            running[actors[actor].render.remote(batch)] = (actor, batch)
        done, _ = ray.wait([*running, *joins], num_returns=1)
        ref = done[0]
        if ref in joins:
            _joined(ref, joins.pop(ref), plan, entries, work, fail)
            continue
        actor, batch = running.pop(ref)
        idle.append(actor)
        try:
            results = ray.get(ref)
        except ray.exceptions.RayActorError as e:  # died more often than it may restart
            results = [{"frames": 0, "seconds": 0.0, "error": f"render worker died: {e}"} for _ in batch]
            actors[actor] = Worker.remote(tracking_uri, cfg.models_per_actor)
            holds[actor].clear()
        for task, result in zip(batch, results):
            p = plan[task.row_id]
            p["left"] -= 1
            p["seconds"] += result["seconds"]
            p["error"] = p["error"] or result["error"]
            if not p["left"]:
                row_rendered(task.row_id)
        if not any(pending.values()):  # free the idle actors' CPUs/GPUs for the joins
            for a in idle:
                stats.append(ray.get(actors[a].stats.remote()))
                ray.kill(actors[a])
            idle = []
    manifest = write_manifest(out_url, list(entries.values()))
    done = [e for e in entries.values() if e["status"] == "done"]
    return {"manifest": manifest, "rows": len(entries), "done": len(done),
            "rendered": sum(1 for e in done if e["ran"]), "skipped": sum(1 for e in done if not e["ran"]),
            "failed": [{k: e[k] for k in ("row", "source", "target", "stage", "error")}
                       for e in sorted(entries.values(), key=lambda e: e["row"]) if e["status"] == "failed"],
            "model_loads": sum(s["loads"] for s in stats), "actors": len(actors)}


def _joined(ref, row_id: str, plan: dict, entries: dict, work: str, fail) -> None:
    import ray
    p = plan[row_id]
    row = p["row"]
    try:
        result = ray.get(ref)
    except ray.exceptions.RayError as e:
        cause = getattr(e, "cause", None) or e
        fail(row, "join", f"{type(cause).__name__}: {cause}", model_version=p["model"])
        return
    frames = result["frames"]
    entries[row.number] = finished(work, _entry(
        row, model_version=p["model"], status="done", stage="", frames=frames,
        frames_without_pose=p["source"].frames_without_pose, normalization=p["normalization"],
        seconds_per_frame=(p["seconds"] + result["seconds"]) / max(1, frames), audio=result["audio"], error=""))
    log.info("row %d done: %s (%d frames)", row.number, row.output, frames)
