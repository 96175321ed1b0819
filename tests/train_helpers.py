"""What the fault-tolerance tests watch in a running training: Ray Train's registered
checkpoint (its step and folder), and which steps MLflow saw twice; and the smallest real
training the pipeline tests run (tiny networks, a few steps, both stages)."""
from __future__ import annotations

import dataclasses
import json
import os

from mlflow import MlflowClient

from edn.models.face import FaceGeneratorConfig, face_discriminator_config
from edn.models.networks import DiscriminatorConfig, GeneratorConfig
from edn.train.config import TrainConfig


def tiny_training(dataset: str, target: str, storage: str, tracking_uri: str, model_name: str) -> TrainConfig:
    """The body stage: 4 steps of tiny networks in Ray Train's local mode (num_workers 0: the loop
    in this process), for the tests that need a trained model, not a worker group; those that test
    the worker group train with workers (test_end_to_end, test_train_resume, test_multinode,
    test_job_submit, test_gcs)."""
    return TrainConfig(dataset_url=dataset, target=target,
                       generator=GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1),
                       discriminator=DiscriminatorConfig(ndf=8, n_layers=2, num_D=1),
                       steps=4, batch_size=2, num_workers=0, checkpoint_every=4, log_every=2, image_every=4,
                       storage_path=storage, tracking_uri=tracking_uri, allow_no_vgg=True, model_name=model_name)


def tiny_face_stage(body: TrainConfig) -> TrainConfig:
    """The face stage after `body`: 2 steps of a tiny face GAN."""
    return dataclasses.replace(body, stage="face", steps=2, checkpoint_every=2,
                               face_generator=FaceGeneratorConfig(ngf=8, n_downsample=2, n_blocks=1),
                               face_discriminator=face_discriminator_config(ndf=8, n_layers=2))


def _latest_registered(run_dir: str) -> dict | None:
    """The latest checkpoint Ray Train's controller has registered (it keeps its checkpoint manager's
    state in the run folder): a checkpoint only counts once registered."""
    try:
        with open(os.path.join(run_dir, "checkpoint_manager_snapshot.json")) as f:
            return json.load(f)["latest_checkpoint_result"]
    except (OSError, ValueError, KeyError):
        return None


def registered_step(run_dir: str) -> int:
    latest = _latest_registered(run_dir)
    return latest["metrics"]["step"] if latest else 0


def latest_checkpoint(run_dir: str) -> str:
    """The folder of the run's latest registered checkpoint."""
    return os.path.join(run_dir, _latest_registered(run_dir)["checkpoint_dir_name"])


def logged_steps(tracking_uri: str, run_id: str, metric: str = "G_gan") -> tuple[list[int], list[int]]:
    """(every step the run logged `metric` at, those logged more than once): a run resumed from
    a checkpoint logs the steps after it twice, and the steps before it once."""
    steps = [m.step for m in MlflowClient(tracking_uri).get_metric_history(run_id, metric)]
    return steps, sorted({s for s in steps if steps.count(s) > 1})


def logged_values(tracking_uri: str, run_id: str, metric: str) -> list[float]:
    """Every value the run logged for `metric`, in the order logged."""
    history = MlflowClient(tracking_uri).get_metric_history(run_id, metric)
    return [m.value for m in sorted(history, key=lambda m: m.timestamp)]
