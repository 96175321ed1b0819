"""Driver side of a training run: MLflow run, TorchTrainer over Ray Data, registration."""
from __future__ import annotations

import logging
import os
import tempfile


from edn.config import to_dict
from edn.data.reader import video_poses
from edn.pose.normalize import floor_stats
from edn.registry import register, write_model_dir
from edn.tracking import run_for, tracking_uri
from edn.train.config import TrainConfig
from edn.train.data import split_point, training_pairs
from edn.train.loop import load_state, train_loop_per_worker

log = logging.getLogger(__name__)


def check_config(cfg: TrainConfig, record: dict) -> None:
    stride = 2 ** cfg.generator.n_downsample
    if record["width"] % stride or record["height"] % stride:
        raise ValueError(
            f"{cfg.dataset_url}: frames of {cfg.target!r} are {record['width']}x{record['height']}, not multiples "
            f"of {stride} (2**generator.n_downsample); ingest with --size at a multiple of {stride}")
    if cfg.generator.in_channels != 3 or cfg.discriminator.in_channels != 6:
        raise ValueError("the body stage takes a 3-channel pose figure and judges (pose, frame): "
                         "generator.in_channels=3, discriminator.in_channels=6")


def train(cfg: TrainConfig) -> dict:
    """Train the body GAN of one target and register it. Returns run id, model version, metrics."""
    import ray.train
    from mlflow import MlflowClient
    from ray.train.torch import TorchTrainer

    uri = tracking_uri(cfg.tracking_uri)
    client = MlflowClient(uri)
    pairs, record = training_pairs(cfg.dataset_url, cfg.target, cfg.holdout_fraction)
    check_config(cfg, record)
    run_id = run_for(client, cfg.experiment, cfg.ray_run_name, tags={"edn.target": cfg.target, "edn.stage": "body"})
    for key, value in _flatten(to_dict(cfg)).items():
        try:
            client.log_param(run_id, key, value)
        except Exception:  # a resumed run already holds its params; MLflow refuses changes
            pass
    client.log_dict(run_id, to_dict(cfg), "config.json")
    client.set_tag(run_id, "edn.dataset_url", cfg.dataset_url)

    storage = cfg.storage_path if "://" in cfg.storage_path else os.path.abspath(cfg.storage_path)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"train": to_dict(cfg), "tracking_uri": uri, "mlflow_run_id": run_id},
        scaling_config=ray.train.ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                               resources_per_worker={"CPU": cfg.cpus_per_worker}),
        run_config=ray.train.RunConfig(
            name=cfg.ray_run_name, storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
        datasets={"train": pairs},
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training run {cfg.ray_run_name!r} ended without a checkpoint")
    with result.checkpoint.as_directory() as d:
        state = load_state(d, "cpu")
    holdout_start = split_point(record["frames"], cfg.holdout_fraction)
    index, poses = video_poses(cfg.dataset_url, cfg.target)
    stats = floor_stats(poses[index < holdout_start], record["width"], record["height"])
    meta = {"target": cfg.target, "width": record["width"], "height": record["height"], "fps": record["fps"],
            "generator": to_dict(cfg)["generator"], "floor_stats": stats.to_dict(), "stage": "body",
            "dataset_url": cfg.dataset_url, "holdout_start": holdout_start,
            "steps": state["step"], "mlflow_run_id": run_id}
    with tempfile.TemporaryDirectory(prefix="edn-model-") as tmp:
        write_model_dir(tmp, state["G"], meta)
        version = register(client, run_id, tmp, cfg.registry_name, cfg.alias)
    log.info("registered %s version %s as @%s", cfg.registry_name, version, cfg.alias)
    return {"run_id": run_id, "model_name": cfg.registry_name, "version": version, "steps": state["step"],
            "metrics": result.metrics, "tracking_uri": uri}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out
