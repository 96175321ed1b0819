"""A training worker killed mid-run: Ray Train's FailureConfig restarts the worker group, which
resumes from the last checkpoint (weights, optimizers, step, per-rank RNG) and finishes the run."""
import os
import signal
import threading
import time

from mlflow import MlflowClient

from edn.data.ingest import IngestConfig, ingest
from edn.models.networks import DiscriminatorConfig, GeneratorConfig
from edn.train.config import TrainConfig
from edn.train.run import train
from tests.train_helpers import logged_steps, registered_step


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
        # then the steps the restart repeats are sure to show in the log twice
        step = registered_step(run_dir)
        if step > 0 and _last_logged_step(uri) > step:
            for pid in _train_worker_pids():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
        time.sleep(0.2)


def test_a_killed_worker_resumes_from_the_last_checkpoint(ray_cluster, dancers, tmp_path):
    dataset = str(tmp_path / "dataset")
    assert ingest(dancers[:1], dataset, IngestConfig(estimator="groundtruth", width=64, height=64))["done"]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = TrainConfig(dataset_url=dataset, target="dancer_00", allow_no_vgg=True,
                      generator=GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1),
                      discriminator=DiscriminatorConfig(ndf=8, n_layers=2, num_D=1),
                      steps=24, batch_size=2, num_workers=2, checkpoint_every=4, log_every=1, image_every=100,
                      max_failures=2, storage_path=str(tmp_path / "ray"), tracking_uri=uri)
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=_kill_a_worker_after_a_checkpoint,
                              args=(str(tmp_path / "ray" / cfg.ray_run_name), uri, killed, stop), daemon=True)
    killer.start()
    try:
        result = train(cfg)
    finally:
        stop.set()
    assert killed, "no training worker was found to kill"
    assert result["steps"] == 24 and result["metrics"]["step"] == 24
    assert result["metrics"]["rank_weight_spread"] == 0.0
    steps, repeated = logged_steps(uri, result["run_id"])
    print(f"killed worker {killed[0]}; steps run again after the restart: {repeated}; final step {max(steps)}")
    # steps after the checkpoint it resumed from were run twice; the first steps only once
    assert repeated and min(repeated) > 4 and steps.count(1) == 1, steps
    assert max(steps) == 24
