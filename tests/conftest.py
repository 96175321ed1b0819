"""Real components for the tests: a local Ray cluster, an MLflow tracking server on SQLite,
and small synthetic dancer videos (real mp4 files)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from edn.ray_init import OWN_ADDRESS
from tests.ray_head import free_port, start_head

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
# Ray Train's controller polls its workers every 2 s, so a run ends up to 2 s after its last
# step; the suite's ~30 short runs end within a quarter second (the Ray processes the tests start
# inherit it)
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
# On 2 cores the suite's time is CPU, and each Ray Train run costs ~50 CPU s, mostly processes
# importing Ray, torch and MLflow (`python -m tests.run_cpu`, docs/testing.md#time). Ray Train's
# preemption watcher, an actor per run (~3 CPU s), watches for node preemption, which no test causes.
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
# The suite runs more torch threads than the machine has cores (two pytest processes, a cluster of
# 4 logical CPUs on 2 cores), and torch's OpenMP threads spin at every barrier before they sleep:
# a spinning thread holds the core the thread it waits for needs. Set before torch is imported
# (libgomp reads it once, at load); the Ray processes and CLIs the tests start inherit it.
# test_quality.py on 2 pytest processes: 407 -> 264 CPU s, 212 -> 141 s (docs/testing.md#time).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# As edn.ray_init does for a verb's local cluster: the workers Ray prestarts for a cluster's first
# driver lack the runtime env the tests' clusters and jobs give theirs, and serve nothing
os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
# Ray kills idle workers beyond its soft limit (the CPU count, which a training run's actors fill)
# after 1 s, so each test's Ray Data and join tasks start fresh ones (~2 CPU s each, importing Ray);
# kept 60 s, the next test's tasks reuse them, and an idle worker costs ~0.007 CPU s a second.
# The suite: 102 -> 60-67 workers ending idle, 1386 -> 1238-1281 busy CPU s (docs/testing.md#time)
os.environ.setdefault("RAY_idle_worker_killing_time_threshold_ms", "60000")


def pytest_collection_modifyitems(items):
    """The files marked slow (they train or run jobs) first, each file's tests in their order. Under
    make test's two pytest processes pytest-xdist hands out files with the most tests first, so this
    orders only files with as many tests (most slow files have one). Handing the slow files out
    first (--no-loadscope-reorder) was slower: 14 min 17 s against 13 min 3 s (docs/testing.md#time)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


# The files that use the `ray_head` fixture, a `ray start` head that lives to the end of its pytest
# process: one process runs them all, so the suite starts one head, not one in each process
RAY_HEAD_FILES = ("tests/test_cluster_cli.py", "tests/test_gcs.py", "tests/test_job_submit.py")


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: unknown to a pytest without it
def pytest_xdist_make_scheduler(config, log):
    """make test's scheduling (pytest-xdist's --dist loadfile: a file at a time) with RAY_HEAD_FILES
    handed out as one unit."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class HeadFilesTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            file = super()._split_scope(nodeid)
            return "the ray_head files" if file in RAY_HEAD_FILES else file

    return HeadFilesTogether(config, log)


@pytest.fixture(scope="session")
def ray_cluster():
    import ray
    # 4 logical CPUs on a 2-core machine: 2 train workers plus Ray Data's tasks must fit at once.
    # address="local": a cluster of its own, even while a `ray start` head runs on this machine; its
    # workers told its address, as edn's verbs do (edn.ray_init): the suite runs two clusters at once
    ray.init(address="local", num_cpus=4, include_dashboard=False, ignore_reinit_error=True,
             runtime_env={"env_vars": {"PYTHONPATH": os.getcwd()}, **OWN_ADDRESS})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_head():
    """A head started with `ray start --head` (token auth on) for `ray job submit` tests
    (tests/ray_head.py); separate from `ray_cluster`, the test process's own Ray."""
    yield from start_head(num_cpus=4)


def _wait_until_up(proc: subprocess.Popen, url: str, log, name: str, seconds: float) -> None:
    """Until `url` answers; a server that exits or stays silent is killed, with its log's end."""
    deadline = time.time() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"{name} did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.3)


def start_mlflow_server(home, artifacts_destination: str, env: dict | None = None):
    """`mlflow server` on loopback with a SQLite backend in `home`, proxying artifacts to
    `artifacts_destination` (a folder or a bucket URL): yields its URI, stops it after."""
    port = free_port()
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "mlflow"), "server",
         "--backend-store-uri", f"sqlite:///{home}/mlflow.db", "--artifacts-destination", artifacts_destination,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=open(home / "server.log", "w"), stderr=subprocess.STDOUT,
        # MLflow 3's job runner (three huey consumer processes per server) serves nothing edn uses
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})})
    uri = f"http://127.0.0.1:{port}"
    _wait_until_up(proc, f"{uri}/health", home / "server.log", "mlflow server", 90)
    yield uri
    _stop(proc)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on loopback with a SQLite backend and proxied artifacts."""
    home = tmp_path_factory.mktemp("mlflow")
    yield from start_mlflow_server(home, str(home / "artifacts"))


GCS_BUCKET = "edn-test"


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory):
    """`gcp-storage-emulator` on loopback, in memory, with the bucket GCS_BUCKET. Yields the
    environment variables that point gcsfs (and MLflow's google-cloud-storage) at it: what a
    process, or a Ray job's runtime_env, needs to reach it."""
    log = tmp_path_factory.mktemp("gcs") / "emulator.log"
    port = free_port()
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "gcp-storage-emulator"), "start", "--host", "127.0.0.1",
         "--port", str(port), "--in-memory", "--default-bucket", GCS_BUCKET],
        stdout=open(log, "w"), stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    _wait_until_up(proc, f"{endpoint}/storage/v1/b/{GCS_BUCKET}", log, "gcp-storage-emulator", 30)
    yield {"STORAGE_EMULATOR_HOST": endpoint, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
           "FSSPEC_GS_TOKEN": "anon"}
    _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def dancers(tmp_path_factory):
    """Two synthetic dancers, 48 frames at 128x128, with ground-truth keypoints."""
    from edn.synth import synthesize
    out = tmp_path_factory.mktemp("dancers")
    files = synthesize(str(out), dancers=2, frames=48, size=(128, 128), seed=3)
    return sorted(f for f in files if f.endswith(".mp4"))
