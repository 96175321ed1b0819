"""Everything on gs://, against a GCS emulator on loopback: synthetic videos written to the
bucket, an ingest job reading them and writing the dataset there, a training job whose Ray Train
checkpoints land there, an MLflow server keeping its artifacts there, the registered model
loaded back, and a transfer video rendered into the bucket. The jobs reach the emulator through
environment variables in their runtime_env, as a user points edn at a bucket."""
import json
import os
import subprocess
import sys

import pytest
from gcsfs.core import GCSFileSystem

from edn.registry import load_registered
from edn.video import probe
from tests.conftest import GCS_BUCKET, start_mlflow_server
from tests.test_job_submit import TINY

pytestmark = pytest.mark.slow  # trains or runs jobs: started first (tests/conftest.py)

BUCKET = f"gs://{GCS_BUCKET}"


@pytest.fixture(scope="module")
def gcs_mlflow(gcs_emulator, tmp_path_factory):
    """An MLflow server whose artifacts live in the bucket (proxied: clients never touch GCS)."""
    yield from start_mlflow_server(tmp_path_factory.mktemp("mlflow-gcs"), f"{BUCKET}/mlflow", gcs_emulator)


def edn(*args: str, env: dict) -> dict:
    """An `edn` command as a user runs it, with the emulator's variables in its environment."""
    done = subprocess.run([sys.executable, "-m", "edn.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"edn {args[0]} failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout)


def test_ingest_train_register_render_on_gs(ray_head, gcs_emulator, gcs_mlflow, tmp_path):
    # the plain gcsfs class: this process imported gcsfs before GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false
    # could be set, and gcsfs's experimental one probes the bucket over gRPC, which the emulator lacks
    fs = GCSFileSystem(endpoint_url=gcs_emulator["STORAGE_EMULATOR_HOST"], token="anon")
    edn("synth", f"{BUCKET}/videos", "--dancers", "2", "--frames", "48", "--size", "128x128", "--seed", "3",
        env=gcs_emulator)
    assert {os.path.basename(p) for p in fs.ls(f"{GCS_BUCKET}/videos")} >= {"dancer_00.mp4", "dancer_01.mp4"}

    dataset = f"{BUCKET}/dataset"
    ray_head.submit("gcs-ingest", ["python", "-m", "ray_jobs.ingest", f"{BUCKET}/videos", "--out", dataset,
                                   "--estimator", "groundtruth", "--size", "64x64"], env_vars=gcs_emulator)
    for vid in ("dancer_00", "dancer_01"):
        record = json.loads(fs.cat_file(f"{GCS_BUCKET}/dataset/videos/{vid}.json"))
        assert record["frames"] == 48 and record["source_url"] == f"{BUCKET}/videos/{vid}.mp4"
        assert fs.ls(f"{GCS_BUCKET}/dataset/frames/{vid}")
    assert not fs.exists(f"{GCS_BUCKET}/dataset/_staging") or not fs.ls(f"{GCS_BUCKET}/dataset/_staging")

    storage = f"{BUCKET}/ray"
    ray_head.submit("gcs-train", ["python", "-m", "ray_jobs.train", "--dataset", dataset, "--target", "dancer_00",
                                  "--set", f"storage_path={storage}", "--set", "run_name=gcs-test",
                                  "--set", "model_name=edn-gcs", "--set", "steps=4",
                                  *(x for s in TINY for x in ("--set", s))],
                    env_vars={**gcs_emulator, "MLFLOW_TRACKING_URI": gcs_mlflow})
    # Ray Train's run folder in the bucket: the checkpoints (num_to_keep=2 of steps 2 and 4) and its state
    checkpoints = fs.glob(f"{GCS_BUCKET}/ray/gcs-test/checkpoint_*/state.pt")
    assert len(checkpoints) == 2, fs.find(f"{GCS_BUCKET}/ray")
    assert fs.exists(f"{GCS_BUCKET}/ray/gcs-test/checkpoint_manager_snapshot.json")

    model = load_registered("edn-gcs", "candidate", gcs_mlflow)
    assert model.version == "1" and model.meta.body_steps == 4 and model.meta.dataset_url == dataset
    artifacts = fs.find(f"{GCS_BUCKET}/mlflow")
    assert any(p.endswith("/model/generator.pt") for p in artifacts), artifacts

    out = f"{BUCKET}/renders/d01_on_d00.mp4"
    rendered = edn("render", "--dataset", dataset, "--source", "dancer_01", "--target", "dancer_00",
                   "--model", "edn-gcs", "--tracking-uri", gcs_mlflow, "--out", out, env=gcs_emulator)
    assert rendered["frames"] == 48
    local = tmp_path / "render.mp4"
    fs.get_file(out.removeprefix("gs://"), str(local))
    info = probe(str(local))
    assert info.frames == 48 and (info.width, info.height) == (192, 64)  # side by side: source | pose | output
