"""Real components for the tests: a local Ray cluster, an MLflow tracking server on SQLite,
and small synthetic dancer videos (real mp4 files)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(scope="session")
def ray_cluster():
    import ray
    # 4 logical CPUs on a 2-core machine: 2 train workers plus Ray Data's tasks must fit at once.
    ray.init(num_cpus=4, include_dashboard=False, ignore_reinit_error=True,
             runtime_env={"env_vars": {"PYTHONPATH": os.getcwd()}})
    yield ray
    ray.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on loopback with a SQLite backend and proxied artifacts."""
    home = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "mlflow"), "server",
         "--backend-store-uri", f"sqlite:///{home}/mlflow.db", "--artifacts-destination", str(home / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=open(home / "server.log", "w"), stderr=subprocess.STDOUT)
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError(f"mlflow server did not start: {(home / 'server.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield uri
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def dancers(tmp_path_factory):
    """Two synthetic dancers, 48 frames at 128x128, with ground-truth keypoints."""
    from edn.synth import synthesize
    out = tmp_path_factory.mktemp("dancers")
    files = synthesize(str(out), dancers=2, frames=48, size=(128, 128), seed=3)
    return sorted(f for f in files if f.endswith(".mp4"))
