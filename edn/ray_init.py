"""Starting or joining Ray for a verb. A local cluster's workers are told its address: Ray Train's
placement-group cleaner asks Ray's state API about its controller without one, which fails with a
traceback ("Found multiple active Ray instances") on a machine running several local clusters
(docs/testing.md)."""
from __future__ import annotations

import os

# the runtime env of a local cluster's jobs: each worker process learns the cluster's address as it starts
OWN_ADDRESS = {"worker_process_setup_hook": f"{__name__}.name_own_cluster"}


def init_ray() -> None:
    """Joins $RAY_ADDRESS (e.g. under `ray job submit`), else starts a local cluster (or joins a
    `ray start` head on this machine), its workers told its address."""
    import ray

    from edn.errors import raise_on_sigterm
    # Ray prestarts workers for a new cluster's first driver without the job's runtime env (OWN_ADDRESS),
    # so they serve none of its tasks: each spends ~2 CPU s importing Ray, then idles to the end
    os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
    ray.init(ignore_reinit_error=True, runtime_env=None if os.environ.get("RAY_ADDRESS") else OWN_ADDRESS)
    raise_on_sigterm()


def name_own_cluster() -> None:
    import ray
    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
