"""Multi-node training on one machine (ray.cluster_utils.Cluster, three raylets): the two
training workers run on two different nodes; one of those nodes is removed once a checkpoint
is registered and a fresh node joins; the run resumes from its last checkpoint on the new
node and finishes with both ranks' weights identical. The cluster lives in a process of its
own (tests/multinode_run.py) so that it never meets the session's `ray_cluster`."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # trains or runs jobs: started first (tests/conftest.py)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_training_across_nodes_survives_losing_a_node(dancers, tmp_path):
    done = subprocess.run([sys.executable, "-m", "tests.multinode_run", str(tmp_path), dancers[0]], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert done.returncode == 0 and lines, done.stderr[-6000:]
    s = json.loads(lines[-1][len("SUMMARY "):])
    print({k: v for k, v in s.items() if k != "logged_steps"})
    # before the loss: one worker on each worker node
    assert s["placement"] == sorted(s["worker_nodes"])
    # then the removed node's worker came back on the node added in its place
    assert s["removed"] == s["worker_nodes"][0] and len(s["added"]) == 1
    assert s["hosts"] == sorted([*s["worker_nodes"], *s["added"]])
    assert s["steps"] == 24 and s["final_step"] == 24 and s["rank_weight_spread"] == 0.0
    # two worker groups: the first from step 0, the second resumed from a checkpoint at least as
    # late as the one registered when the node went, not restarted from step 0 (started_at_step,
    # in MLflow); each step after the resume logged, the first step once
    assert s["registered_step"] >= 4 and len(s["started_at"]) == 2 and s["started_at"][0] == 0, s
    resumed_at = s["started_at"][1]
    assert resumed_at % 4 == 0 and resumed_at >= s["registered_step"], s
    assert set(range(resumed_at + 1, 25)) <= set(s["logged_steps"]) and s["logged_steps"].count(1) == 1, s
    # steps logged both before the loss and after the resume: none later than where it resumed
    assert all(step > resumed_at for step in s["repeated_steps"]), s


def test_catalog_render_survives_losing_a_node(dancers, tmp_path):
    done = subprocess.run([sys.executable, "-m", "tests.multinode_render_run", str(tmp_path), *dancers], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("SUMMARY ")]
    assert done.returncode == 0 and lines, done.stderr[-6000:]
    s = json.loads(lines[-1][len("SUMMARY "):])
    print(s)
    # a render actor on each worker node, one of them removed mid-catalog, a fresh node joined
    assert s["placement"] == sorted(s["worker_nodes"]) and len(s["added"]) == 1
    assert s["removed"] == s["worker_nodes"][0] and s["actor_restarts"] >= 1  # Ray restarted the lost actor
    # every row rendered, whole, once
    assert s["result"]["done"] == s["result"]["rendered"] == 4 and not s["result"]["failed"]
    assert s["manifest_rows"] == [0, 1, 2, 3] and s["statuses"] == ["done"] * 4
    assert s["frames"] == s["expected_frames"]
    assert s["rows_finished"] == [0, 1, 2, 3]
