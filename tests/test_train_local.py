"""Ray Train's local mode (num_workers 0): the training loop in the caller's process, no worker
group. What it keeps and where: one checkpoint in a local storage_path, which the same run name
resumes from, with the settings it started with (others refused); a rerun of the finished run
registers no new version; the caller's torch threads left as they were; the progress display fed
without a queue actor; a storage that is not local refused."""
import dataclasses
import logging
import os

import pytest
import torch
from mlflow import MlflowClient

from edn.data.ingest import IngestConfig, ingest
from edn.errors import ConfigError
from edn.registry import load_registered
from edn.synth import synthesize
from edn.train.checkpoint import load_state
from edn.train.run import train
from tests.train_helpers import tiny_training


def test_local_mode_trains_here_keeps_a_checkpoint_and_resumes(ray_cluster, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="edn.progress")  # the console's progress lines (not a terminal here)
    videos = synthesize(str(tmp_path / "videos"), dancers=1, frames=32, size=(64, 64), seed=3)
    dataset = str(tmp_path / "dataset")
    ingest([v for v in videos if v.endswith(".mp4")], dataset, IngestConfig(estimator="groundtruth"))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = dataclasses.replace(tiny_training(dataset, "dancer_00", str(tmp_path / "ray"), uri, "edn-local"),
                              num_workers=0)
    threads = torch.get_num_threads()
    monkeypatch.setattr("ray.util.queue.Queue", None)  # a queue actor would be a process of its own
    first = train(cfg)
    assert first["steps"] == 4 and torch.get_num_threads() == threads
    kept = tmp_path / "ray" / "edn-local-body" / "local-checkpoint"
    assert load_state(str(kept), "cpu")["step"] == 4
    # the loop's step reports reach the display through an in-process queue: no queue actor started
    shown = [r.getMessage() for r in caplog.records if r.name == "edn.progress"]
    assert any(line.startswith("train dancer_00 body: ") and "4/4 steps (100%)" in line for line in shown), shown

    # the same run name resumes: steps 1-4 are not trained again, and the model is the checkpoint's
    again = train(dataclasses.replace(cfg, steps=6))
    assert again["steps"] == 6 and again["run_id"] == first["run_id"]
    logged = [m.step for m in MlflowClient(uri).get_metric_history(first["run_id"], "G_gan")]
    assert logged == [2, 4, 6]
    state = load_state(str(kept), "cpu")
    body = load_registered("edn-local", str(again["version"]), uri).body.state_dict()
    assert state["step"] == 6 and all(torch.equal(body[k], v) for k, v in state["G"].items())
    assert not os.path.exists(f"{kept}.new") and not os.path.exists(f"{kept}.old")
    # the same command on the finished run trains nothing and registers nothing new: the same version
    client = MlflowClient(uri)
    versions = len(client.search_model_versions("name = 'edn-local'"))
    rerun = train(dataclasses.replace(cfg, steps=6))
    assert (rerun["steps"], rerun["version"]) == (6, again["version"])
    assert len(client.search_model_versions("name = 'edn-local'")) == versions
    assert str(client.get_model_version_by_alias("edn-local", cfg.alias).version) == again["version"]
    assert [m.step for m in client.get_metric_history(first["run_id"], "G_gan")] == [2, 4, 6]

    # the same name and storage with other training data or recipe is another run: refused before it
    # trains, naming what differs, and nothing of the first run changed; a name of its own trains afresh,
    # and so does the same name in another storage, each in an MLflow run of its own
    def runs() -> int:
        client = MlflowClient(uri)
        return len(client.search_runs([client.get_experiment_by_name(cfg.experiment).experiment_id]))
    before = runs()
    with pytest.raises(ConfigError, match=r"run 'edn-local-body' in .* started with lambda_l1=0\.0, seed=0; this "
                                          r"command gives lambda_l1=5\.0, seed=3\..*--set run_name=NAME"):
        train(dataclasses.replace(cfg, steps=8, seed=3, lambda_l1=5.0))
    assert load_state(str(kept), "cpu")["step"] == 6
    assert runs() == before
    other = train(dataclasses.replace(cfg, seed=3, run_name="edn-local-seed3"))
    assert other["steps"] == 4 and other["run_id"] != first["run_id"]
    moved = train(dataclasses.replace(cfg, storage_path=str(tmp_path / "ray-b")))
    assert moved["steps"] == 4 and moved["run_id"] not in (first["run_id"], other["run_id"])

    with pytest.raises(ConfigError, match="local mode"):
        train(dataclasses.replace(cfg, storage_path="gs://edn-test/ray"))
