"""The model registry: one registered model per target person, `edn-<target>`.

A version's artifacts are a folder that needs no training code's state to use:
    generator.pt   the generator's state_dict (tensors only; loaded with weights_only=True)
    edn_model.json what rendering needs: generator config, frame size, the target's floor
                   statistics (pose normalization), the dataset and run it came from
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass

import mlflow
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from edn.models.networks import GeneratorConfig, GlobalGenerator
from edn.pose.draw import draw_pose
from edn.pose.normalize import FloorStats

FORMAT_VERSION = 1


class ModelNotFoundError(LookupError):
    pass


def write_model_dir(path: str, generator_state: dict, meta: dict) -> None:
    os.makedirs(path, exist_ok=True)
    torch.save(generator_state, os.path.join(path, "generator.pt"))
    with open(os.path.join(path, "edn_model.json"), "w") as f:
        json.dump({"format_version": FORMAT_VERSION, **meta}, f, indent=1)


def register(client: MlflowClient, run_id: str, model_dir: str, name: str, alias: str) -> str:
    """Log the folder to the run as `model/`, add it as a new version of `name`, point `alias` at it."""
    client.log_artifacts(run_id, model_dir, "model")
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Everybody Dance Now generator for one target person")
    source = f"{client.get_run(run_id).info.artifact_uri}/model"
    version = client.create_model_version(name, source, run_id=run_id).version
    client.set_registered_model_alias(name, alias, version)
    return str(version)


@dataclass
class TargetModel:
    generator: GlobalGenerator
    meta: dict
    version: str

    @property
    def size(self) -> tuple[int, int]:
        return self.meta["width"], self.meta["height"]

    @property
    def floor(self) -> FloorStats:
        return FloorStats.from_dict(self.meta["floor_stats"])

    def figures(self, poses: np.ndarray) -> np.ndarray:
        w, h = self.size
        return np.stack([draw_pose(p, w, h) for p in poses])

    @torch.no_grad()
    def render(self, figures: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """(N, H, W, 3) uint8 pose figures -> (N, H, W, 3) uint8 frames."""
        device = next(self.generator.parameters()).device
        out = []
        for i in range(0, len(figures), batch_size):
            x = torch.from_numpy(figures[i:i + batch_size]).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
            y = self.generator(x).clamp(-1, 1)
            out.append(((y + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, *figures.shape[1:]), np.uint8)


def load_model_dir(path: str, version: str = "local", device: str = "cpu") -> TargetModel:
    with open(os.path.join(path, "edn_model.json")) as f:
        meta = json.load(f)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: model format {meta.get('format_version')} is not {FORMAT_VERSION}")
    generator = GlobalGenerator(GeneratorConfig(**meta["generator"]))
    generator.load_state_dict(torch.load(os.path.join(path, "generator.pt"), map_location=device, weights_only=True))
    return TargetModel(generator.to(device).eval(), meta, version)


def load_registered(name: str, ref: str, tracking_uri: str, device: str = "cpu") -> TargetModel:
    """`ref` is an alias ("candidate", "production") or a version number."""
    client = MlflowClient(tracking_uri)
    try:
        mv = client.get_model_version(name, ref) if ref.isdigit() else client.get_model_version_by_alias(name, ref)
    except MlflowException as e:
        raise ModelNotFoundError(
            f"no model {name!r} {'version' if ref.isdigit() else 'alias'} {ref!r} in the registry at "
            f"{tracking_uri} ({e.message})") from None
    with tempfile.TemporaryDirectory(prefix="edn-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=tmp, tracking_uri=tracking_uri)
        return load_model_dir(local, str(mv.version), device)
