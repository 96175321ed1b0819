"""Benchmarks (`edn bench <name>`): shared reporting and measuring helpers.

Every benchmark builds a list of `row(...)`s and one or more key ratios, then calls `report`,
which prints the table and writes the JSON result file: the machine (CPU count, platform,
Python, package versions), the git commit, the benchmark's config, the rows and the key ratios.
`ProcessTreeMonitor` samples the resident memory of a process and all its descendants (e.g. a
subprocess running its own local Ray cluster).
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import threading
import time
from importlib import metadata

PACKAGES = ("torch", "ray", "mediapipe", "numpy", "av", "pyarrow", "opencv-contrib-python")


def row(what: str, value, unit: str = "", note: str = "") -> dict:
    """One line of a benchmark's table (value: a number or a short text)."""
    return {"what": what, "value": value, "unit": unit, "note": note}


def key_ratio(name: str, value: float, target: str, meets: bool | None, uses: str = "") -> dict:
    """A headline figure: `target` in words (e.g. '>= 0.8'), `uses` says which figures it divides."""
    return {"name": name, "value": value, "target": target, "meets": meets, "uses": uses}


def machine_info() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu_model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"cpu_count": os.cpu_count(), "cpus_usable": usable, "cpu_model": cpu_model, "load_avg_1_5_15": load,
            "platform": platform.platform(), "python": sys.version.split()[0], "packages": versions}


def git_commit() -> dict | None:
    """The repository's HEAD and whether the work tree has changes (None outside a git checkout)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(dirty)}


def _fmt(value) -> str:
    if isinstance(value, float):
        a = abs(value)
        return f"{value:.0f}" if a >= 100 else f"{value:.1f}" if a >= 10 else f"{value:.3f}" if a >= 0.01 \
            else f"{value:.2g}"
    return str(value)


def format_table(rows: list[dict]) -> str:
    cells = [(r["what"], _fmt(r["value"]), r["unit"], r["note"]) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(3)] if cells else [0, 0, 0]
    lines = []
    for what, value, unit, note in cells:
        line = f"{what:<{widths[0]}}  {value:>{widths[1]}} {unit:<{widths[2]}}"
        lines.append((line + "  " + note if note else line).rstrip())
    return "\n".join(lines)


def format_key_ratio(k: dict) -> str:
    verdict = {True: "meets the target", False: "BELOW the target", None: "no target check"}[k["meets"]]
    uses = f"; {k['uses']}" if k.get("uses") else ""
    return f"KEY RATIO {k['name']} = {k['value']:.3f}  (target {k['target']}: {verdict}{uses})"


def out_file(out: str, name: str) -> str:
    """`--out` is a folder (the file is <folder>/<name>.json) or a .json file."""
    return out if out.endswith(".json") else os.path.join(out, f"{name}.json")


def report(name: str, rows: list[dict], key_ratio: dict | list[dict], out_json: str,
           config: dict | None = None, figures: dict | None = None, stream=None) -> dict:
    """Print the table, ending with the key ratio line(s), and write the JSON result file.

    The first key ratio is the benchmark's headline; it is printed last."""
    keys = [key_ratio] if isinstance(key_ratio, dict) else list(key_ratio)
    result = {"benchmark": name, "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "machine": machine_info(), "git": git_commit(), "config": config or {}, "rows": rows,
              "key_ratios": keys, "figures": figures or {}}
    stream = stream or sys.stdout
    title = f"edn bench {name}"
    print(f"\n{title}\n{'=' * len(title)}\n{format_table(rows)}\n", file=stream)
    for k in keys[1:] + keys[:1]:
        print(format_key_ratio(k), file=stream)
    out_dir = os.path.dirname(out_json)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    with open(out_json, "w") as f:
        json.dump(result, f, indent=1, default=str)
    print(f"results: {out_json}", file=stream, flush=True)
    return result


def _psutil():
    try:
        import psutil
    except ImportError:  # Ray vendors psutil and puts it on sys.path when imported
        import ray  # noqa: F401
        import psutil
    return psutil


def _high_water_mark(pid: int) -> int:
    """A process's peak resident set (VmHWM, bytes) from /proc; 0 where that is not available."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def ray_role(cmdline: list[str], is_root: bool) -> str:
    """'driver' (the monitored process), 'workers' (Ray worker processes: tasks and actors) or
    'ray system' (raylet, GCS, dashboard agent, log monitor and other daemons)."""
    if is_root:
        return "driver"
    text = " ".join(cmdline)
    return "workers" if text.startswith("ray::") or "default_worker.py" in text else "ray system"


class ProcessTreeMonitor:
    """Samples the resident set size (RSS) of process `pid` and all its descendants every
    `interval` seconds in a thread, until `stop()`.

    Figures (bytes): `peak[role]`, `peak[name]` for each of `combine` and `peak["total"]`: the
    largest sum of RSS over those processes seen in one sample (simultaneous); `hwm_sum[...]`:
    the sum over the processes of each one's own peak (the kernel's VmHWM where readable, else
    its sampled peak), an upper bound that also catches spikes between samples. RSS counts shared
    pages (libraries, Ray's object store) in every process that maps them."""

    def __init__(self, pid: int, interval: float = 0.05, classify=ray_role, combine: dict | None = None):
        self.pid, self.interval, self.classify = pid, interval, classify
        self.combine = combine or {}  # name -> roles whose simultaneous sum is also tracked
        self.peak: dict[str, int] = {}
        self.procs: dict[int, dict] = {}  # pid -> role, peak rss, title at peak, hwm
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ProcessTreeMonitor:
        self._thread.start()
        return self

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return self.figures()

    def _run(self) -> None:
        psutil = _psutil()
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
                role = self.classify(cmd, p.pid == self.pid)
                info = self.procs.setdefault(p.pid, {"role": role, "rss": 0, "title": "", "hwm": 0})
                if cmd:  # a forked worker shows its parent's command line at first, an exiting one none
                    info["role"] = role
                sums[info["role"]] = sums.get(info["role"], 0) + rss
                if rss > info["rss"]:
                    info.update(rss=rss, title=" ".join(cmd)[:80])
                info["hwm"] = max(info["hwm"], _high_water_mark(p.pid))
            for name, roles in self.combine.items():
                sums[name] = sum(sums.get(r, 0) for r in roles)
            sums["total"] = sum(v for k, v in sums.items() if k not in self.combine)
            for role, value in sums.items():
                self.peak[role] = max(self.peak.get(role, 0), value)
            self.samples += 1
            time.sleep(self.interval)

    def figures(self) -> dict:
        hwm: dict[str, int] = {}
        for info in self.procs.values():
            hwm[info["role"]] = hwm.get(info["role"], 0) + max(info["hwm"], info["rss"])
        for name, roles in self.combine.items():
            hwm[name] = sum(hwm.get(r, 0) for r in roles)
        hwm["total"] = sum(v for k, v in hwm.items() if k not in self.combine)
        top = sorted(self.procs.items(), key=lambda kv: -kv[1]["rss"])[:5]
        return {"peak": dict(self.peak), "hwm_sum": hwm, "samples": self.samples, "interval_s": self.interval,
                "processes": len(self.procs),
                "largest": [{"pid": pid, "role": i["role"], "peak_rss": i["rss"], "title": i["title"]}
                            for pid, i in top]}
