"""A training run's MLflow status: RUNNING while it trains, then FINISHED, FAILED or KILLED; a
rerun of the same name continues the same run and ends it again."""
import pytest
from mlflow import MlflowClient

from edn.tracking import run_for, run_status


def test_a_runs_status_follows_its_training(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = run_for(client, "edn-test", "dancer")

    def status() -> str:
        return client.get_run(run_id).info.status

    with pytest.raises(RuntimeError), run_status(client, run_id):
        assert status() == "RUNNING"
        raise RuntimeError("a worker failed")
    assert status() == "FAILED" and client.get_run(run_id).info.end_time
    with pytest.raises(KeyboardInterrupt), run_status(client, run_id):
        raise KeyboardInterrupt
    assert status() == "KILLED"
    assert run_for(client, "edn-test", "dancer") == run_id  # rerun under the same name: the same run
    with run_status(client, run_id):
        assert status() == "RUNNING"
    assert status() == "FINISHED"
