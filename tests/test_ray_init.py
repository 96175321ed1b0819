"""A local cluster's workers know its address, so Ray's state API asked from a worker without one
(as Ray Train's placement-group cleaner asks about its controller) finds it beside other clusters."""
import json
import os
import subprocess
import sys

import pytest

ASK = """
import json, sys, ray
from edn.ray_init import OWN_ADDRESS
ray.init(address="local", num_cpus=1, runtime_env=OWN_ADDRESS if sys.argv[1] == "own" else None)

@ray.remote(num_cpus=0)
class Asker:
    def ask(self):
        import os
        from ray.util.state import list_actors
        me = ray.get_runtime_context().get_actor_id()
        try:  # whether the cluster the state API reached is this actor's own
            return os.environ.get("RAY_ADDRESS"), any(a.actor_id == me for a in list_actors())
        except ConnectionError as e:
            return os.environ.get("RAY_ADDRESS"), str(e)

print(json.dumps([ray.get_runtime_context().gcs_address, *ray.get(Asker.remote().ask.remote())]))
"""


@pytest.mark.parametrize("runtime_env", ["own", "default"])
def test_a_local_clusters_workers_find_it_beside_another(ray_cluster, runtime_env):
    """The session's cluster runs in this process: the script's is a second one on this machine."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", ASK, runtime_env], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    gcs, address, found_itself = json.loads(out.stdout.strip().splitlines()[-1])
    if runtime_env == "own":
        assert address == gcs and found_itself is True
    else:  # what Ray does without it, and why edn.ray_init exists: the worker is not told its cluster, so
        # the state API guesses. With no `ray start` head on this machine it gives up ("Found multiple active
        # Ray instances"); with one (test_job_submit's head) it picks the head's address, and reaches its own
        # cluster only because the worker's KV client is already bound to it: which one depends on the machine
        assert address is None
        assert found_itself is True or "Found multiple active Ray instances" in found_itself
