"""Resuming a training run. A training worker killed mid-run: Ray Train's FailureConfig restarts the
worker group, which resumes from the last checkpoint (weights, optimizers, step, per-rank RNG) and
ends with the very weights of the same run uninterrupted. And the checkpoint itself: restored, it
continues bit for bit, each rank's random streams included."""
import dataclasses
import os
import random
import signal
import threading
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from mlflow import MlflowClient

from edn.data.ingest import IngestConfig, ingest
from edn.eval.run import loss_curves
from edn.models.networks import DiscriminatorConfig, GeneratorConfig
from edn.registry import registered_meta
from edn.synth import keypoints_table, make_dancer
from edn.train.checkpoint import load_state, restore, write
from edn.train.config import TrainConfig
from edn.train.loop import build, make_step
from edn.train.run import train
from edn.video import VideoWriter
from tests.train_helpers import latest_checkpoint, logged_steps, registered_step

pytestmark = pytest.mark.slow  # trains or runs jobs: started first (tests/conftest.py)


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _ours(pid: int) -> bool:
    """Whether the process descends from this one (the test's local Ray cluster's raylet is a
    child of it): another Ray cluster's training on the same machine is not the test's to kill."""
    while pid > 1:
        if pid == os.getpid():
            return True
        pid = _parent(pid)
    return False


def _train_worker_pids() -> list[int]:
    """Ray names its worker processes after the actor: ray::RayTrainWorker..."""
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if b"RayTrainWorker" in f.read() and int(entry) != os.getpid() and _ours(int(entry)):
                    pids.append(int(entry))
        except (OSError, ValueError):
            continue
    return pids


def _last_logged_step(uri: str) -> int:
    client = MlflowClient(uri)
    try:
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    except Exception:  # the run's database is not created yet
        return 0
    return max((m.step for r in runs for m in client.get_metric_history(r.info.run_id, "G_gan")), default=0)


def _kill_a_worker_after_a_checkpoint(run_dir: str, uri: str, killed: list, stop: threading.Event) -> None:
    while not stop.is_set():
        # once a checkpoint is registered and a later step logged (losses are logged a step late):
        # then the steps the restart repeats are sure to show in the log twice. The log is read
        # first: a checkpoint registered while MLflow answers (seconds on a loaded machine) would
        # otherwise be the one resumed from, with nothing logged after it to repeat
        logged = _last_logged_step(uri)
        step = registered_step(run_dir)
        if step > 0 and logged > step:
            for pid in _train_worker_pids():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.2)


def _still_video(folder, frames: int, size: int = 64) -> str:
    """One frame of a synthetic dancer held for `frames` frames (crf 0, lossless: each decodes the same), with
    its ground-truth poses. Every training pair, hence every batch, is then the same whatever order
    Ray Data delivers them in (it shuffles without a seed, and splits between workers as they ask),
    so a training run's weights are a function of its steps alone: a resumed run can be compared
    with an uninterrupted one bit for bit."""
    shot = next(make_dancer(3, 0, 1, (size, size)).shots(1))
    url = str(folder / "still.mp4")
    with VideoWriter(url, 30.0, crf=0) as writer:
        for _ in range(frames):
            writer.write(shot.rgb)
    pq.write_table(keypoints_table(np.repeat(shot.keypoints[None], frames, 0), size, size),
                   str(folder / "still.keypoints.parquet"))
    return url


def test_a_killed_worker_resumes_and_ends_as_the_run_uninterrupted(ray_cluster, tmp_path):
    dataset = str(tmp_path / "dataset")
    assert ingest([_still_video(tmp_path, 48)], dataset, IngestConfig(estimator="groundtruth"))["done"]
    cfg = TrainConfig(dataset_url=dataset, target="still", allow_no_vgg=True,
                      generator=GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1),
                      discriminator=DiscriminatorConfig(ndf=8, n_layers=2, num_D=1),
                      steps=24, batch_size=2, num_workers=2, checkpoint_every=4, log_every=1, image_every=100,
                      max_failures=2, storage_path=str(tmp_path / "ray"))
    resumed = dataclasses.replace(cfg, run_name="killed", tracking_uri=f"sqlite:///{tmp_path}/killed.db")
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=_kill_a_worker_after_a_checkpoint,
                              args=(str(tmp_path / "ray" / resumed.ray_run_name), resumed.tracking_uri, killed, stop),
                              daemon=True)
    killer.start()
    try:
        result = train(resumed)
    finally:
        stop.set()
    assert killed, "no training worker was found to kill"
    assert result["steps"] == 24 and result["metrics"]["step"] == 24
    assert result["metrics"]["rank_weight_spread"] == 0.0
    steps, repeated = logged_steps(resumed.tracking_uri, result["run_id"])
    print(f"killed worker {killed[0]}; steps run again after the restart: {repeated}; final step {max(steps)}")
    # steps after the checkpoint it resumed from were run twice; the first steps only once
    assert repeated and min(repeated) > 4 and steps.count(1) == 1, steps
    assert max(steps) == 24

    uninterrupted = dataclasses.replace(cfg, run_name="uninterrupted",
                                        tracking_uri=f"sqlite:///{tmp_path}/uninterrupted.db")
    train(uninterrupted)
    ends = [load_state(latest_checkpoint(str(tmp_path / "ray" / c.ray_run_name)), "cpu")
            for c in (resumed, uninterrupted)]
    assert ends[0]["step"] == ends[1]["step"] == 24
    for part in ("G", "D", "opt_G", "opt_D"):  # networks and optimizers' moments, bit for bit
        assert _same(ends[0][part], ends[1][part]), part
    # the report draws the attempt that made the model: each step once, as the uninterrupted run's
    curves = [loss_curves(MlflowClient(c.tracking_uri), registered_meta(c.registry_name, "1", c.tracking_uri).meta,
                          ("body",))["body losses"]["G_gan"] for c in (resumed, uninterrupted)]
    assert curves[0] == curves[1] and curves[0][0] == list(range(1, 25)), curves


def _tiny_step():
    cfg = TrainConfig(generator=GeneratorConfig(ngf=4, n_downsample=1, n_blocks=1),
                      discriminator=DiscriminatorConfig(ndf=4, n_layers=1, num_D=1), lambda_l1=10.0)
    G, D, opt_G, opt_D = build(cfg, torch.device("cpu"))
    return (G, D, opt_G, opt_D), make_step(cfg, G, D, opt_G, opt_D, torch.device("cpu"))


def _train(step, steps: int) -> None:
    """Steps on batches drawn from torch's RNG: the weights depend on its stream as well."""
    for _ in range(steps):
        x = torch.rand(4, 2, 3, 16, 16) * 2 - 1
        step({"pose_prev": x[0], "pose": x[1], "image_prev": x[2], "image": x[3], "face_box": None})


def _seed_rank(rank: int) -> None:
    torch.manual_seed(1 + rank), np.random.seed(1 + rank), random.seed(1 + rank)


def _draws() -> tuple:
    """The next numbers of every random stream a worker has."""
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_a_restored_checkpoint_continues_bit_for_bit(tmp_path):
    """Two ranks' checkpoint written, then 3 more steps: restored into fresh networks and optimizers
    from scrambled RNGs, rank 0 makes the same 3 steps to the bit; each rank draws its own next numbers."""
    nets, step = _tiny_step()
    _seed_rank(1)
    _draws()  # rank 1 is somewhere in its own streams
    write(str(tmp_path), 1, 3, 0, "body", *nets)
    rank1_next = _draws()
    _seed_rank(0)
    _train(step, 3)
    write(str(tmp_path), 0, 3, 0, "body", *nets)
    _train(step, 3)
    uninterrupted = [n.state_dict() for n in nets], _draws()

    for rank in (0, 1):
        fresh, fresh_step = _tiny_step()
        _seed_rank(7)  # another stream, which the restore must replace
        assert restore(str(tmp_path), rank, torch.device("cpu"), *fresh, run="test") == (3, 0)
        if rank == 1:
            assert _draws() == rank1_next
            continue
        _train(fresh_step, 3)
        resumed = [n.state_dict() for n in fresh], _draws()
        for part, a, b in zip(("G", "D", "opt_G", "opt_D"), resumed[0], uninterrupted[0]):
            assert _same(a, b), part
        assert resumed[1] == uninterrupted[1]
    assert rank1_next != uninterrupted[1]  # the ranks' streams differ, so each needs its own file


def _same(a, b) -> bool:
    """Equal to the bit: tensors, and dicts and lists of them (state dicts, optimizer states)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b
