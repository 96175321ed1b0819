"""Run by test_multinode.py in a process of its own (a `ray.cluster_utils.Cluster` needs the
process's Ray connection, which the other tests' session cluster holds): several raylets on
this machine, two training workers on two different nodes, one of those nodes removed once a
checkpoint is registered and a fresh one joined. Prints a JSON summary for the test to assert on.

    python -m tests.multinode_run WORK_DIR VIDEO

(tests/multinode_render_run.py does the same to a catalog render.)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import ray
from ray.cluster_utils import Cluster

from edn.data.ingest import IngestConfig, ingest
from edn.models.networks import DiscriminatorConfig, GeneratorConfig
from edn.train.config import TrainConfig
from edn.train.run import train
from tests.ray_head import node_ports
from tests.train_helpers import logged_steps, logged_values, registered_step

SLOT = "edn_worker_slot"  # one per worker node: at most one training worker or render actor per node


def add_worker_node(cluster: Cluster):
    return cluster.add_node(num_cpus=2, resources={SLOT: 1})


def join_fresh_node(address: str, log: str) -> subprocess.Popen:
    """A fresh worker node joining the way one joins a real cluster, `ray start --address`:
    Cluster.add_node installs signal handlers, so it cannot run off the main thread, which
    train() holds. `--block`: stopping this process stops the node."""
    return subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--address", address,
                             "--block", "--num-cpus", "2", "--resources", json.dumps({SLOT: 1}),
                             "--disable-usage-stats", *map(str, node_ports())],
                            stdout=open(log, "a"), stderr=subprocess.STDOUT)


def train_worker_nodes(alive: bool = True) -> list[str]:
    """Node ids of the Ray Train workers alive now (or of every one there has been)."""
    return sorted({a["Address"]["NodeID"] for a in ray._private.state.actors().values()
                   if a["ActorClassName"] == "RayTrainWorker" and (a["State"] == "ALIVE" or not alive)})


def alive_nodes() -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n["Alive"]}


def replace_a_node(cluster: Cluster, victim, ready, seen: dict, stop: threading.Event, log_dir: str) -> None:
    """Once ready() says what happened (a true value), remove `victim` and start a fresh node."""
    while not stop.is_set():
        happened = ready()
        if happened:
            seen.update(removed=victim.node_id, **happened)
            before = alive_nodes() - {victim.node_id}
            cluster.remove_node(victim)
            log, tries = os.path.join(log_dir, "fresh-node.log"), 1
            seen["fresh"] = join_fresh_node(cluster.address, log)
            while not stop.is_set() and not alive_nodes() - before:
                # `ray start` exited: e.g. a port node_ports() found free was taken before its raylet
                # bound it (seen once: "Failed to start the grpc server"); again, with other ports
                if seen["fresh"].poll() is not None and tries < 3:
                    seen["fresh"], tries = join_fresh_node(cluster.address, log), tries + 1
                time.sleep(0.5)
            seen["added"] = sorted(alive_nodes() - before)
            return
        time.sleep(0.2)


def start_cluster() -> tuple[Cluster, list]:
    cluster = Cluster(initialize_head=True, connect=True, head_node_args={"num_cpus": 2})
    nodes = [add_worker_node(cluster), add_worker_node(cluster)]
    cluster.wait_for_nodes()
    return cluster, nodes


def shut_down(cluster: Cluster, seen: dict, stop: threading.Event) -> None:
    """The watcher, the fresh node it started, this process's Ray connection, the cluster."""
    stop.set()
    if "fresh" in seen:
        seen.pop("fresh").terminate()
    ray.shutdown()
    cluster.shutdown()


def main(work: str, video: str) -> dict:
    cluster, nodes = start_cluster()
    dataset = os.path.join(work, "dataset")
    assert ingest([video], dataset, IngestConfig(estimator="groundtruth", width=64, height=64))["done"]
    uri = f"sqlite:///{work}/mlflow.db"
    cfg = TrainConfig(dataset_url=dataset, target="dancer_00", allow_no_vgg=True,
                      generator=GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1),
                      discriminator=DiscriminatorConfig(ndf=8, n_layers=2, num_D=1),
                      steps=24, batch_size=2, num_workers=2, resources_per_worker={SLOT: 1},
                      checkpoint_every=4, log_every=1, image_every=100, max_failures=2,
                      storage_path=os.path.join(work, "ray"), tracking_uri=uri)
    seen, stop = {"worker_nodes": [n.node_id for n in nodes]}, threading.Event()
    run_dir = os.path.join(work, "ray", cfg.ray_run_name)

    def checkpoint_registered():
        step = registered_step(run_dir)
        return step > 0 and {"placement": train_worker_nodes(), "registered_step": step}
    watcher = threading.Thread(target=replace_a_node, daemon=True,
                               args=(cluster, nodes[0], checkpoint_registered, seen, stop, work))
    watcher.start()
    try:
        result = train(cfg)
        steps, repeated = logged_steps(uri, result["run_id"])
        started_at = [int(v) for v in logged_values(uri, result["run_id"], "started_at_step")]
        seen["hosts"] = train_worker_nodes(alive=False)
    finally:
        shut_down(cluster, seen, stop)
    return {**seen, "steps": result["steps"], "final_step": result["metrics"]["step"],
            "rank_weight_spread": result["metrics"]["rank_weight_spread"], "logged_steps": steps,
            "repeated_steps": repeated, "started_at": started_at}


if __name__ == "__main__":
    print("SUMMARY " + json.dumps(main(*sys.argv[1:])))
