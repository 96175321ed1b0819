"""MLflow: where runs go by default, finding the run that a named training run logs to, and
its status while it trains."""
from __future__ import annotations

import contextlib
import os

from mlflow import MlflowClient

DEFAULT_HOME = "outputs/mlflow"


def tracking_uri(uri: str = "") -> str:
    """The given URI, else $MLFLOW_TRACKING_URI, else SQLite under outputs/mlflow/."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri:
        return uri
    home = os.path.abspath(DEFAULT_HOME)
    os.makedirs(home, exist_ok=True)
    return f"sqlite:///{home}/mlflow.db"


def experiment_id(client: MlflowClient, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    artifact_location = None
    if client.tracking_uri.startswith("sqlite:///"):
        # keep artifacts beside the database rather than in whatever folder we run from
        home = os.path.dirname(client.tracking_uri[len("sqlite:///"):])
        artifact_location = "file://" + os.path.join(home, "artifacts")
    return client.create_experiment(name, artifact_location=artifact_location)


def run_for(client: MlflowClient, experiment: str, run_name: str, tags: dict | None = None,
            identity: dict | None = None, new: bool = False) -> str:
    """The MLflow run of a named training run: re-submitting the same name (and the same `identity`
    tags, e.g. the run's storage) continues it; `new`, a run of its own even so (the training run
    starts over: nothing of it is left to continue)."""
    exp_id = experiment_id(client, experiment)
    ids = {"edn.run_name": run_name, **(identity or {})}
    found = [] if new else client.search_runs(
        [exp_id], filter_string=" and ".join(f"tags.`{k}` = '{v}'" for k, v in ids.items()),
        order_by=["attributes.start_time DESC"], max_results=1)
    if found:
        return found[0].info.run_id
    return client.create_run(exp_id, run_name=run_name, tags={**ids, **(tags or {})}).info.run_id


@contextlib.contextmanager
def run_status(client: MlflowClient, run_id: str):
    """The run RUNNING while the block runs (again, for a resumed one), then FINISHED; FAILED if it
    raises, KILLED on Ctrl-C. A driver killed outright leaves it RUNNING until a rerun ends it."""
    client.update_run(run_id, status="RUNNING")
    try:
        yield
    except KeyboardInterrupt:
        client.set_terminated(run_id, "KILLED")
        raise
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id)
