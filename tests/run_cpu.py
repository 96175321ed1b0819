"""What one small Ray Train run costs in CPU seconds, by process: `python -m tests.run_cpu [RUNS]
[WORKERS]` (WORKERS 0: Ray Train's local mode, the loop in this process).

The suite starts ~30 Ray Train runs; on 2 cores its time is mostly CPU (docs/testing.md#time). This
starts a local Ray cluster as the tests' (4 logical CPUs, tests/conftest.py's environment; set a
variable to measure without one, e.g. RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=1), ingests
one 32-frame dancer, trains once to warm the cluster, then times RUNS more of the suite's smallest
run (tests/train_helpers.tiny_training: 4 steps of tiny networks, one worker) while sampling every
process's CPU time (user + system) every 0.1 s. Prints the mean per run by process kind
(tests.suite_cpu.kind: Ray titles its actors' processes `ray::ClassName`), the wall and the CPU of
all processes. The same processes take up to a third more CPU when the machine is busier: compare
runs made together."""
from __future__ import annotations

import collections
import dataclasses
import os
import sys
import tempfile
import threading
import time

import tests.conftest  # noqa: F401  the tests' Ray settings (environment variables)
from tests.suite_cpu import readings, remember

DRIVER = "this driver (train() and the progress display)"


def _cpu_by_process() -> dict[tuple[int, int], tuple[float, str]]:
    """tests.suite_cpu's readings, with this process named as the driver."""
    return {key: (cpu, DRIVER if key[0] == os.getpid() else name) for key, (cpu, name) in readings().items()}


def main(runs: int = 3, workers: int = 1) -> None:
    import ray

    from edn.data.ingest import IngestConfig, ingest
    from edn.synth import synthesize
    from edn.train.run import train
    from tests.train_helpers import tiny_training
    root = tempfile.mkdtemp(prefix="edn-run-cpu-")
    ray.init(address="local", num_cpus=4, include_dashboard=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.getcwd()}})
    videos = synthesize(f"{root}/videos", dancers=1, frames=32, size=(64, 64), seed=3)
    ingest([v for v in videos if v.endswith(".mp4")], f"{root}/dataset", IngestConfig(estimator="groundtruth"))
    uri = f"sqlite:///{root}/mlflow.db"

    def run(n: int) -> None:
        cfg = tiny_training(f"{root}/dataset", "dancer_00", f"{root}/ray", uri, f"edn-run-cpu-{n}")
        train(dataclasses.replace(cfg, num_workers=workers))

    run(0)  # the cluster's first run starts its long-lived helpers (Ray Data's stats actor, ...)
    last, stop, sampling = {}, threading.Event(), []

    def sample() -> None:
        while not stop.is_set():
            remember(last, _cpu_by_process())
            time.sleep(0.1)
        sampling.append(time.thread_time())  # this thread's own CPU, taken off this process's below

    before = _cpu_by_process()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.time()
    for n in range(1, runs + 1):
        run(n)
    wall = time.time() - started
    stop.set()
    sampler.join()
    by_name = collections.Counter()
    for key, (cpu, name) in last.items():
        by_name[name] += cpu - before.get(key, (0.0, ""))[0]
    by_name[DRIVER] -= sampling[0]
    print(f"{runs} runs of tests/train_helpers.tiny_training, num_workers={workers}, after one warm-up; per run:")
    for name, cpu in by_name.most_common():
        if cpu / runs >= 0.1:
            print(f"  {cpu / runs:6.1f} CPU s  {name}")
    print(f"  wall {wall / runs:.1f} s, CPU of all processes {sum(by_name.values()) / runs:.1f} s")
    ray.shutdown()


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
