"""Driver side of a training run: MLflow run, TorchTrainer over Ray Data, registration."""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import tempfile
import threading

import numpy as np
import torch

from edn.config import to_dict
from edn.data.plate import background_plate
from edn.data.reader import split_point, video_poses, video_record
from edn.data.reference import video_reference
from edn.errors import ConfigError, DataError, stopped
from edn.inference import write_model_dir
from edn.models.meta import ModelMeta, PairCounts, TrainingData
from edn.models.perceptual import PerceptualWeightsMissing, perceptual_status
from edn.pose.face import boxes_array, face_box
from edn.pose.normalize import FloorStats, floor_stats_or_reason
from edn.progress import Progress
from edn.registry import load_registered, register
from edn.storage import for_arrow
from edn.tracking import run_for, run_status, tracking_uri
from edn.train.checkpoint import load_state, local_checkpoint
from edn.train.config import STAGES, TrainConfig
from edn.train.data import pair_counts, training_pairs
from edn.train.init_from import base_weights
from edn.train.loop import train_loop_per_worker
from edn.train.resume import flatten, record_start, resumes, run_folder, storage_url
from edn.train.step import LOSS_TERMS

log = logging.getLogger(__name__)


def check_config(cfg: TrainConfig, records: list[tuple[str, dict]]) -> None:
    """`records`: (video id, video_record) of the target, or of every video of a base."""
    if cfg.stage not in STAGES:
        raise ConfigError(f"unknown stage {cfg.stage!r}; choose one of {STAGES}")
    if cfg.num_workers < 0:
        raise ConfigError(f"num_workers {cfg.num_workers}: give 1 or more, or 0 for local mode")
    if cfg.num_workers == 0:
        local_path(cfg.storage_path)  # local mode's storage refused now, before any run starts
    if cfg.is_base and (cfg.target or cfg.init_from):
        raise ConfigError(f"a base model trains on videos={cfg.videos} from random weights: "
                          "give no target or init_from with them")
    (first, record), *_ = records
    for video, other in records:
        if (other["width"], other["height"]) != (record["width"], record["height"]):
            raise ConfigError(f"{cfg.dataset_url}: video {video!r} is {other['width']}x{other['height']}, video "
                              f"{first!r} {record['width']}x{record['height']}: a base trains on one frame size")
    stride = 2 ** (cfg.generator.n_downsample + cfg.generator.n_local_enhancers) * cfg.downscale
    if record["width"] % stride or record["height"] % stride:
        raise ConfigError(
            f"{cfg.dataset_url}: frames of {first!r} are {record['width']}x{record['height']}, not multiples "
            f"of {stride} (2**(generator.n_downsample + n_local_enhancers) * downscale); ingest with --size "
            f"at a multiple of {stride}")


def local_path(storage_path: str) -> str:
    """A local storage path as an absolute path; local mode (num_workers 0) runs in this process
    and keeps its checkpoint on this machine's disk, so any other URL is refused."""
    if "://" in storage_path and not storage_path.startswith("file://"):
        raise ConfigError(f"num_workers 0 (local mode) keeps its checkpoint on this machine: storage_path "
                          f"{storage_path} is not local; give a local folder or num_workers >= 1")
    return os.path.abspath(storage_path.removeprefix("file://"))


def perceptual_check(cfg: TrainConfig, client, run_id: str) -> bool:
    """Whether the VGG19 perceptual loss is on. Said at start and logged to the run; without
    weights the run stops unless the config allows training without it."""
    if not cfg.lambda_vgg:
        return False
    status = perceptual_status(cfg.vgg_weights_url or None)
    client.set_tag(run_id, "edn.perceptual_loss", "on" if status["available"] else "unavailable")
    client.log_dict(run_id, status, "perceptual_status.json")
    if status["available"]:
        log.info("VGG19 perceptual loss on, weights from %s", status["source"])
        return True
    if not cfg.allow_no_vgg:
        raise PerceptualWeightsMissing(f"{status['reason']} Or set allow_no_vgg=true to train without "
                                       "the perceptual loss.")
    log.warning("TRAINING WITHOUT THE VGG19 PERCEPTUAL LOSS (allow_no_vgg=true): %s", status["reason"])
    return False


def training_data(cfg: TrainConfig, video: str, record: dict, poses: tuple[np.ndarray, np.ndarray]
                  ) -> tuple[dict, FloorStats | None, str | None]:
    """What a video gives training, checked before any worker starts: pair counts (frames
    without the dancer's pose are left out; reported by the run and kept in the model) and, for a
    target's body stage, the floor statistics of its training frames (None, with the reason, when
    the feet are never seen: the model then renders sources without normalization; the face stage
    keeps its body model's; a base has none, each video rendered zero-shot brings its own)."""
    holdout_start = split_point(record["frames"], cfg.holdout_fraction)
    index, poses = poses  # the video's (edn.data.reader.video_poses)
    boxes = boxes_array([face_box(p, record["width"], record["height"]) for p in poses])
    counts = pair_counts(index, poses, boxes, holdout_start, need_face=cfg.stage == "face")
    if not counts["pairs"]:
        raise DataError(f"{cfg.dataset_url}: video {video!r} has no training pairs for the {cfg.stage} stage "
                         f"among its {counts['frames']} frames before the held-out tail: {counts}")
    if cfg.stage == "face" or cfg.is_base:
        return counts, None, "a base model: each video rendered zero-shot brings its own" if cfg.is_base else None
    stats, reason = floor_stats_or_reason(poses[index < holdout_start], record["width"], record["height"])
    if stats is None:
        log.warning("%s: no floor statistics (%s): sources will be rendered onto it without normalization",
                    video, reason)
        return counts, None, reason
    return counts, stats.scaled(1 / cfg.downscale), None


def train(cfg: TrainConfig) -> dict:
    """Train one stage of a target's model and register the result: the body stage registers the
    body generator; the face stage, the frozen body generator it started from with the new face
    generator. Returns run id, model version, metrics."""
    import ray.train
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    uri = tracking_uri(cfg.tracking_uri)
    client = MlflowClient(uri)
    records = [(v, video_record(cfg.dataset_url, v)) for v in (cfg.videos or [cfg.target])]
    check_config(cfg, records)
    record = records[0][1]
    size = (record["width"] // cfg.downscale, record["height"] // cfg.downscale)
    body = load_registered(cfg.registry_name, cfg.body_model, uri) if cfg.stage == "face" else None
    # reference channels: a base's and its fine-tuned targets'; the face stage renders with its body
    # model's generator, so its settings are that model's (reference channels, appearance figures)
    uses_reference = body.body.references if body is not None else cfg.is_base or bool(cfg.init_from)
    cfg = dataclasses.replace(cfg, generator=body.meta.generator if body is not None else
                              dataclasses.replace(cfg.generator, reference_channels=uses_reference))
    init, init_from = None, None
    if cfg.init_from:  # the stage's weights and generator settings from the base, checked against this run first
        cfg, init, init_from, _ = base_weights(cfg, uri, size)
    faces = cfg.stage == "face" and cfg.face_generator.reference  # the face GAN sees the reference's face
    if faces and not uses_reference:
        raise ConfigError(f"face_generator.reference: {cfg.registry_name}@{cfg.body_model}'s body renders from no "
                          "appearance reference (a base's and its fine-tuned targets' do), so there is no face to show")
    # the same storage and name resume a run (Ray Train), which must be the same run: checked before it starts
    resumed = resumes(cfg)
    poses = {v: video_poses(cfg.dataset_url, v) for v, _ in records}  # read once, for references and counts
    references = [video_reference(cfg.dataset_url, v, split_point(r["frames"], cfg.holdout_fraction), size, poses[v])
                  for v, r in records] if uses_reference else None
    pairs = training_pairs(cfg.dataset_url, records, cfg.holdout_fraction, need_face=cfg.stage == "face")
    per_video = [training_data(cfg, v, r, poses[v]) for v, r in records]
    counts = {k: sum(c[k] for c, _, _ in per_video) for k in per_video[0][0]}
    _, floor, floor_error = per_video[0]
    log.info("%s: %d training pairs; left out: %d without the dancer's pose, %d without a face box "
             "(%d of %d frames have no pose)", cfg.target or f"{len(records)} videos", counts["pairs"],
             counts["pairs_without_pose"], counts["pairs_without_face_box"], counts["frames_without_pose"],
             counts["frames"])
    run_id = run_for(client, cfg.experiment, cfg.ray_run_name, identity={"edn.storage": run_folder(cfg)},
                     new=not resumed, tags={"edn.target": cfg.target or cfg.registry_name, "edn.stage": cfg.stage})
    if init_from:
        client.set_tag(run_id, "edn.init_from", init_from)
    if references:
        client.log_dict(run_id, {r.video: r.frame_index for r in references}, "references.json")
    for key, value in flatten(to_dict(cfg)).items():
        try:
            client.log_param(run_id, key, value)
        except MlflowException as e:  # a resumed run holds its params: MLflow refuses a change, and says so
            if "already logged" not in e.message:
                raise
            log.warning("run %s keeps its logged %s (%s)", run_id, key, e.message.splitlines()[0])
    client.log_dict(run_id, to_dict(cfg), "config.json")
    client.set_tag(run_id, "edn.dataset_url", cfg.dataset_url)
    client.set_tag(run_id, "edn.dataset_version", ",".join(sorted({r["committed_at"] for _, r in records})))
    client.log_dict(run_id, counts, "training_data.json")
    for key, value in counts.items():
        client.log_metric(run_id, f"data_{key}", value)
    perceptual = perceptual_check(cfg, client, run_id)

    # rank 0's step reports, for the progress display; on the driver's node, which lives as long as
    # the driver does, not on a worker node the run may lose. Local mode's loop runs in this process:
    # a plain queue, not a queue actor (a process of its own, ~1.4 CPU s a run)
    reports = LocalReports() if cfg.num_workers == 0 else Queue(actor_options={
        "num_cpus": 0, "scheduling_strategy": NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(),
                                                                             soft=False)})
    storage_fs, (storage,) = for_arrow([storage_url(cfg)])
    if not resumed:
        record_start(cfg)
    local = None  # local mode: Ray Train stores nothing; the loop keeps its one checkpoint here
    if cfg.num_workers == 0:
        local = os.path.join(local_path(cfg.storage_path), cfg.ray_run_name, "local-checkpoint")
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"train": to_dict(cfg), "tracking_uri": uri, "mlflow_run_id": run_id,
                           "perceptual_available": perceptual, "progress": reports, "local_checkpoint": local,
                           "init": ray.put(init) if init else None,
                           "references": ray.put(np.stack([r.stacked() for r in references])) if references else None,
                           "reference_faces": ray.put(np.stack([r.face for r in references])) if faces else None},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                               resources_per_worker={**cfg.resources_per_worker,
                                                                     "CPU": cfg.cpus_per_worker}),
        run_config=ray.train.RunConfig(
            name=cfg.ray_run_name, storage_path=storage, storage_filesystem=storage_fs,
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
        datasets={"train": pairs},
    )
    what = f"train {cfg.target or cfg.registry_name} {cfg.stage}"
    resume = (f"the same command (run {cfg.ray_run_name!r} in {cfg.storage_path}) resumes from its last "
              "checkpoint")
    with run_status(client, run_id), progress_of(reports, what, cfg.steps):  # MLflow shows FINISHED, FAILED or KILLED
        threads = torch.get_num_threads()  # local mode's loop sets this process's own
        try:
            result = trainer.fit()
        # Ctrl-C (Ray Train's own handler exits once it has aborted the run) or SIGTERM (Stopped)
        except (KeyboardInterrupt, SystemExit) as e:
            raise stopped(e, resume) from e
        finally:
            torch.set_num_threads(threads)
    checkpoint = result.checkpoint
    kept = checkpoint is None and local and local_checkpoint(local)
    if kept:  # a finished run again: in local mode its loop, training nothing, reports nothing
        checkpoint = ray.train.Checkpoint.from_directory(kept)
    if checkpoint is None:
        raise RuntimeError(f"training run {cfg.ray_run_name!r} ended without a checkpoint")
    with checkpoint.as_directory() as d:
        state = load_state(d, "cpu")
    meta, body_state, face_state, background, reference, reference_face = model_parts(
        cfg, records, state, body, run_id, perceptual, PairCounts(**counts), floor, floor_error, references, init_from)
    discriminators = None
    if cfg.is_base:  # what a fine-tuned target starts from
        discriminators = {**((body.discriminators or {}) if body else {}), cfg.stage: state["D"]}
    with tempfile.TemporaryDirectory(prefix="edn-model-") as tmp:
        write_model_dir(tmp, body_state, meta, face_state, background, reference, discriminators,
                        reference_face=reference_face)
        version = register(client, run_id, tmp, cfg.registry_name, cfg.alias)
    log.info("registered %s version %s as @%s", cfg.registry_name, version, cfg.alias)
    return {"run_id": run_id, "model_name": cfg.registry_name, "version": version, "steps": state["step"],
            "training_data": counts, "metrics": result.metrics, "tracking_uri": uri}


def model_parts(cfg: TrainConfig, records, state: dict, body, run_id: str, perceptual: bool, counts: PairCounts,
                floor, floor_error, references, init_from):
    """The registered model's metadata and contents: (meta, body weights, face weights, empty
    scene, reference, reference face). The body stage makes a new model; the face stage adds its
    generator to the frozen body model's (a target's with its reference's face, where it sees one)."""
    if body is not None:
        meta = dataclasses.replace(
            body.meta, face_generator=cfg.face_generator, face_run_id=run_id, face_steps=state["step"],
            face_perceptual_loss=perceptual, body_version=body.version, stage=cfg.stage, face_init_from=init_from,
            training_data=dataclasses.replace(body.meta.training_data, face=counts),
            face_references={r.video: r.frame_index for r in references or []} if cfg.is_base else {})
        face = references[0].face if cfg.face_generator.reference and not cfg.is_base else None
        return meta, body.body.state_dict(), state["G"], body.background, body.reference, face
    (video, record), size = records[0], (records[0][1]["width"] // cfg.downscale,
                                         records[0][1]["height"] // cfg.downscale)
    holdout_start = split_point(record["frames"], cfg.holdout_fraction)
    meta = ModelMeta(target=cfg.target, width=size[0], height=size[1], fps=record["fps"],
                     generator=cfg.generator, temporal=cfg.temporal, floor_stats=floor,
                     floor_stats_error=floor_error, dataset_url=cfg.dataset_url,
                     holdout_start=0 if cfg.is_base else holdout_start, body_run_id=run_id, body_steps=state["step"],
                     perceptual_loss=perceptual, stage=cfg.stage, training_data=TrainingData(body=counts),
                     kind="base" if cfg.is_base else "target", holdout_fraction=cfg.holdout_fraction,
                     references={r.video: r.frame_index for r in references or []}, init_from=init_from)
    if cfg.is_base:
        return meta, state["G"], None, None, None, None
    background = references[0].plate if references else background_plate(cfg.dataset_url, video, holdout_start, size)
    return meta, state["G"], None, background, references[0].stacked() if references else None, None


class LocalReports(queue.Queue):
    """Step reports from a loop in this process (local mode), read as a ray.util.queue.Queue is."""

    def shutdown(self, immediate: bool = False) -> None:
        pass  # nothing to stop: no actor behind it


@contextlib.contextmanager
def progress_of(reports, desc: str, steps: int):
    """Shows training's progress (step/total, images/s, the main losses, ETA) from rank 0's
    reports while the body runs: a thread on the driver reads them from the queue."""
    done = threading.Event()

    def follow() -> None:
        progress = None
        while not done.is_set() or not reports.empty():
            try:
                report = reports.get(timeout=0.5)
            except queue.Empty:  # ray.util.queue.Empty is one too
                continue
            if report.get("start"):  # a (re)started worker group: the ETA counts from here
                if progress is not None:
                    progress.close()
                progress = Progress(desc, steps, "steps", initial=report["step"])
                continue
            if progress is not None:
                progress.set(report["step"], **{"images/s": report["images_per_s"]},
                             **{k: report[k] for k in LOSS_TERMS if k in report})
        if progress is not None:
            progress.close()

    thread = threading.Thread(target=follow, name="edn-train-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=10)
        reports.shutdown()

