"""`edn bench ingest`, memory: an ingest in a fresh process, its process tree's resident memory sampled.

Each ingest runs in a subprocess (`python -m edn.bench.ingest_memory SPEC`) that starts its own
local Ray cluster (`ray.init(address="local")`), runs edn.data.ingest.ingest and shuts Ray down.
A ProcessTreeMonitor samples the RSS of that subprocess (the Ray driver) and of every process
below it: Ray's daemons (raylet, GCS, agents) and the Ray workers (plan and commit tasks, the
detector actors). Reported: the peak of the sampled sum over driver + workers ("ingest", the
processes that do the ingest's work), the peak of the sum over the whole tree (with Ray's
daemons) and the sum of each process's own peak (VmHWM).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

MB = 1 << 20
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INGEST_ROLES = ("driver", "workers")


def ray_role(cmdline: list[str], is_root: bool) -> str:
    """'driver' (the monitored process), 'workers' (Ray's worker processes: tasks and actors) or
    'ray system' (raylet, GCS, dashboard agent, log monitor and other daemons)."""
    if is_root:
        return "driver"
    text = " ".join(cmdline)
    return "workers" if text.startswith("ray::") or "default_worker.py" in text else "ray system"


def _high_water_mark(pid: int) -> int:
    """A process's peak resident set (VmHWM, bytes) from /proc; 0 where that is not available."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:")), 0)
    except (OSError, ValueError):
        return 0


class ProcessTreeMonitor:
    """Samples the RSS of process `pid` and all its descendants every `interval` seconds, in a
    thread, until `stop()`. Figures (bytes): `peak[role]`, `peak["ingest"]` (driver + workers) and
    `peak["total"]`: the largest sum over those processes in one sample (simultaneous);
    `hwm_sum[...]`: the sum over the processes of each one's own peak (VmHWM where readable, else
    its sampled peak), an upper bound that also catches spikes between samples. RSS counts shared
    pages (libraries, Ray's object store) in every process that maps them."""

    def __init__(self, pid: int, interval: float):
        self.pid, self.interval = pid, interval
        self.peak: dict[str, int] = {}
        self.procs: dict[int, dict] = {}  # pid -> role, peak rss, hwm
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ProcessTreeMonitor:
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        hwm: dict[str, int] = {}
        for info in self.procs.values():
            hwm[info["role"]] = hwm.get(info["role"], 0) + max(info["hwm"], info["rss"])
        return {"peak": self.peak, "hwm_sum": _with_sums(hwm), "samples": self.samples, "processes": len(self.procs)}

    def _run(self) -> None:
        import ray  # noqa: F401, I001 - Ray vendors psutil and puts it on sys.path: first
        import psutil
        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.is_set():
            try:
                procs = [root] + root.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            sums: dict[str, int] = {}
            for p in procs:
                try:
                    rss, cmd = p.memory_info().rss, p.cmdline()
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                info = self.procs.setdefault(p.pid, {"role": ray_role(cmd, p.pid == self.pid), "rss": 0, "hwm": 0})
                if cmd:  # a forked worker shows its parent's command line at first, an exiting one none
                    info["role"] = ray_role(cmd, p.pid == self.pid)
                sums[info["role"]] = sums.get(info["role"], 0) + rss
                info["rss"], info["hwm"] = max(info["rss"], rss), max(info["hwm"], _high_water_mark(p.pid))
            for role, value in _with_sums(sums).items():
                self.peak[role] = max(self.peak.get(role, 0), value)
            self.samples += 1
            time.sleep(self.interval)


def _with_sums(by_role: dict[str, int]) -> dict[str, int]:
    return {**by_role, "ingest": sum(by_role.get(r, 0) for r in INGEST_ROLES), "total": sum(by_role.values())}


def measure_ingest_memory(url: str, out_url: str, ingest_cfg: dict, workdir: str, num_cpus: int, name: str,
                          timeout: float = 900, interval: float = 0.05) -> dict:
    """Ingest `url` in a fresh process with its own local Ray (IngestConfig(**ingest_cfg)); its
    process tree's memory, in MB. `name` names the run's log and result files in `workdir`."""
    result_file, log_file = os.path.join(workdir, f"{name}.result.json"), os.path.join(workdir, f"{name}.log")
    spec = {"url": url, "out": out_url, "cfg": ingest_cfg, "num_cpus": num_cpus, "result": result_file}
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    with open(log_file, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "edn.bench.ingest_memory", json.dumps(spec)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        monitor = ProcessTreeMonitor(proc.pid, interval).start()
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = "timeout"
        figures = monitor.stop()
    if rc != 0 or not os.path.exists(result_file):
        with open(log_file) as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"ingest subprocess for {url} failed ({rc}); log {log_file}:\n{tail}")
    with open(result_file) as f:
        child = json.load(f)
    if child["failed"] or not child["done"]:
        raise RuntimeError(f"ingest of {url} failed: {child['failed']}")
    mb = {k: {role: round(v / MB, 1) for role, v in figures[k].items()} for k in ("peak", "hwm_sum")}
    return {**child, **mb, "samples": figures["samples"], "interval_s": interval, "processes": figures["processes"]}


def _child(spec_json: str) -> None:
    """The subprocess: a fresh local Ray cluster, one ingest, timings to spec['result']."""
    import logging

    import ray

    from edn.data.ingest import IngestConfig, ingest
    logging.basicConfig(level=logging.WARNING)
    spec = json.loads(spec_json)
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=spec["num_cpus"], include_dashboard=False)
    t1 = time.perf_counter()
    result = ingest([spec["url"]], spec["out"], IngestConfig(**spec["cfg"]))
    t2 = time.perf_counter()
    ray.shutdown()
    with open(spec["result"], "w") as f:
        json.dump({"ray_init_s": round(t1 - t0, 3), "ingest_s": round(t2 - t1, 3), "done": result["done"],
                   "failed": result["failed"]}, f)


if __name__ == "__main__":
    _child(sys.argv[1])
