"""What the fault-tolerance tests watch in a running training: Ray Train's registered
checkpoint, and which steps MLflow saw twice."""
from __future__ import annotations

import json
import os

from mlflow import MlflowClient


def registered_step(run_dir: str) -> int:
    """The step of the latest checkpoint Ray Train's controller has registered (it keeps its
    checkpoint manager's state in the run folder): a checkpoint only counts once registered."""
    try:
        with open(os.path.join(run_dir, "checkpoint_manager_snapshot.json")) as f:
            latest = json.load(f)["latest_checkpoint_result"]
    except (OSError, ValueError, KeyError):
        return 0
    return latest["metrics"]["step"] if latest else 0


def logged_steps(tracking_uri: str, run_id: str, metric: str = "G_gan") -> tuple[list[int], list[int]]:
    """(every step the run logged `metric` at, those logged more than once): a run resumed from
    a checkpoint logs the steps after it twice, and the steps before it once."""
    steps = [m.step for m in MlflowClient(tracking_uri).get_metric_history(run_id, metric)]
    return steps, sorted({s for s in steps if steps.count(s) > 1})
