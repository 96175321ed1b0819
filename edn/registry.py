"""The model registry: one registered model per target person, `edn-<target>`, in MLflow. A
version's artifacts are a model folder (edn.inference): written by training, loaded here.
"""
from __future__ import annotations

import tempfile

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from edn.errors import EdnError
from edn.inference import TargetModel, load_model_dir
from edn.models.meta import META_FILE, ModelMeta


class ModelNotFoundError(EdnError, LookupError):
    pass


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


def parse_model_ref(text: str, default_name: str) -> tuple[str, str]:
    """"edn-alice@production" -> ("edn-alice", "production"); "3" -> (default_name, "3")."""
    name, sep, ref = text.rpartition("@")
    return (name, ref) if sep else (default_name, text)


def resolve_version(name: str, ref: str, tracking_uri: str):
    """The registry's version for `ref`, an alias ("candidate", "production") or a version number."""
    client = MlflowClient(tracking_uri)
    try:
        return client.get_model_version(name, ref) if ref.isdigit() else client.get_model_version_by_alias(name, ref)
    except MlflowException as e:
        raise ModelNotFoundError(
            f"no model {name!r} {'version' if ref.isdigit() else 'alias'} {ref!r} in the registry at "
            f"{tracking_uri} ({e.message})") from None


def registered_meta(name: str, ref: str, tracking_uri: str) -> tuple[str, ModelMeta, dict[str, str]]:
    """(version, its metadata, the version's tags) without downloading the weights."""
    mv = resolve_version(name, ref, tracking_uri)
    with tempfile.TemporaryDirectory(prefix="edn-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"{mv.source}/{META_FILE}", dst_path=tmp,
                                                    tracking_uri=tracking_uri)
        return str(mv.version), ModelMeta.read(local), dict(mv.tags)


def load_registered(name: str, ref: str, tracking_uri: str, device: str = "cpu",
                    precision: str = "fp32") -> TargetModel:
    """`ref` is an alias ("candidate", "production") or a version number; `device` and
    `precision` as edn.runtime resolves them."""
    mv = resolve_version(name, ref, tracking_uri)
    with tempfile.TemporaryDirectory(prefix="edn-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=tmp, tracking_uri=tracking_uri)
        return load_model_dir(local, str(mv.version), device, precision)
