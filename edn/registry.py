"""The model registry: one registered model per target person, `edn-<target>`, in MLflow. A
version's artifacts are a model folder (edn.inference): written by training, loaded here.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from edn.errors import ConfigError, EdnError
from edn.inference import TargetModel, load_model_dir, write_model_dir
from edn.models.meta import META_FILE, ModelMeta
from edn.tracking import experiment_id


class ModelNotFoundError(EdnError, LookupError):
    pass


def register(client: MlflowClient, run_id: str, model_dir: str, name: str, alias: str) -> str:
    """Log the folder to the run as `model/`, add it as a new version of `name`, point `alias` at it.
    A folder this run registered before (the same command again on a finished run, which trains
    nothing) is that version again, not a new one."""
    digest = _digest(model_dir)
    for mv in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"):
        if mv.tags.get("edn.digest") == digest:
            client.set_registered_model_alias(name, alias, mv.version)
            return str(mv.version)
    client.log_artifacts(run_id, model_dir, "model")
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Everybody Dance Now generator for one target person")
    source = f"{client.get_run(run_id).info.artifact_uri}/model"
    version = client.create_model_version(name, source, run_id=run_id, tags={"edn.digest": digest}).version
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


@dataclass(frozen=True)
class RegisteredVersion:
    version: str
    meta: ModelMeta
    tags: dict[str, str]
    source: str          # where its model folder is (an artifact URI: a local path for a file store)


def registered_meta(name: str, ref: str, tracking_uri: str) -> RegisteredVersion:
    """A version, its metadata and tags, and where its model folder is, without downloading the weights."""
    mv = resolve_version(name, ref, tracking_uri)
    with tempfile.TemporaryDirectory(prefix="edn-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"{mv.source}/{META_FILE}", dst_path=tmp,
                                                    tracking_uri=tracking_uri)
        return RegisteredVersion(str(mv.version), ModelMeta.read(local), dict(mv.tags), mv.source)


def load_registered(name: str, ref: str, tracking_uri: str, device: str = "cpu",
                    precision: str = "fp32") -> TargetModel:
    """`ref` is an alias ("candidate", "production") or a version number; `device` and
    `precision` as edn.runtime resolves them."""
    mv = resolve_version(name, ref, tracking_uri)
    with tempfile.TemporaryDirectory(prefix="edn-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=tmp, tracking_uri=tracking_uri)
        return load_model_dir(local, str(mv.version), device, precision)


IMPORTS_EXPERIMENT = "edn-imports"


def _digest(folder: str) -> str:
    """sha256 over a model folder's file names and contents: the same model imported twice is one version."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        h.update(name.encode() + b"\0")
        with open(os.path.join(folder, name), "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def import_model_dir(folder: str, name: str, alias: str, tracking_uri: str) -> tuple[str, ModelMeta]:
    """Register a model folder (edn.inference's layout: exported by export_model, or shipped, like
    edn/assets/demo-base) as a version of `name` and point `alias` at it; returns (the version, its
    metadata). A folder imported before (same contents) is not registered again: its version takes
    the alias."""
    if not os.path.isfile(os.path.join(folder, META_FILE)):
        raise ConfigError(f"{folder}: not a model folder (no {META_FILE}; edn export-model writes one)")
    meta = ModelMeta.read(os.path.join(folder, META_FILE))  # a file edn cannot read fails here, naming it
    digest = _digest(folder)
    client = MlflowClient(tracking_uri)
    for mv in client.search_model_versions(f"name = '{name}'"):
        if mv.tags.get("edn.imported_digest") == digest:
            client.set_registered_model_alias(name, alias, mv.version)
            return str(mv.version), meta
    run_id = client.create_run(experiment_id(client, IMPORTS_EXPERIMENT), run_name=f"import {name}",
                               tags={"edn.imported_from": os.path.abspath(folder)}).info.run_id
    version = register(client, run_id, folder, name, alias)
    client.set_model_version_tag(name, version, "edn.imported_from", os.path.abspath(folder))
    client.set_model_version_tag(name, version, "edn.imported_digest", digest)
    client.set_terminated(run_id)
    return version, meta


def export_model(name: str, ref: str, tracking_uri: str, folder: str, half: bool = False) -> dict:
    """Write a registered version's model folder to a local `folder` (import_model_dir reads it);
    `half`: its weights in fp16, half the bytes (what edn/assets/demo-base ships)."""
    model = load_registered(name, ref, tracking_uri)
    write_model_dir(folder, model.body.state_dict(), model.meta, model.face.state_dict() if model.face else None,
                    model.background, model.reference, model.discriminators, half=half,
                    reference_face=model.reference_face)
    sizes = {f: os.path.getsize(os.path.join(folder, f)) for f in sorted(os.listdir(folder))}
    return {"model": f"{name}@{model.version}", "folder": folder, "half": half, "bytes": sum(sizes.values()),
            "files": sizes}
