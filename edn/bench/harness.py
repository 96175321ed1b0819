"""What the benchmarks share: how one runs (a Ray session, quiet logs, a scratch folder), how it
reports (a table ending on its key ratios, and a JSON result file: machine, package versions,
git commit, settings, rows, every figure) and how it profiles code in its own process (cProfile:
the time inside named functions, nothing patched)."""
from __future__ import annotations

import contextlib
import cProfile
import dataclasses
import datetime
import inspect
import json
import logging
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any

PACKAGES = ("torch", "ray", "mediapipe", "numpy", "av", "pyarrow", "opencv-contrib-python")
QUIET_LOGGERS = ("edn", "ray.data", "ray.train")  # their INFO lines would bury the table


def row(what: str, value, unit: str = "", note: str = "") -> dict:
    """One line of a benchmark's table (value: a number or a short text)."""
    return {"what": what, "value": value, "unit": unit, "note": note}


def key_ratio(name: str, value: float, target: str, meets: bool | None, uses: str = "") -> dict:
    """A headline figure: `target` in words (e.g. '>= 0.8'), `uses` says which figures it divides."""
    return {"name": name, "value": value, "target": target, "meets": meets, "uses": uses}


def run(name: str, settings, out: str, measure: Callable[[Any, str, list, dict], list[dict]],
        ray_cpus: int | None) -> dict:
    """`measure(settings, workdir, rows, figures)` -> its key ratios, the first its headline; run
    with edn's and Ray's INFO logs silenced, in a Ray session of `ray_cpus` logical CPUs (None: no
    Ray) and a scratch folder, then reported. -> {"out": the JSON file, "key_ratios": [...]}"""
    rows: list[dict] = []
    figures: dict = {"load_avg_at_start": load_avg()}
    levels = {logger: logging.getLogger(logger).level for logger in QUIET_LOGGERS}
    for logger in levels:
        logging.getLogger(logger).setLevel(logging.WARNING)
    try:
        with contextlib.ExitStack() as stack:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"edn-bench-{name}-"))
            if ray_cpus:
                stack.enter_context(ray_session(ray_cpus, rows, figures))
            keys = measure(settings, workdir, rows, figures)
    finally:
        for logger, level in levels.items():
            logging.getLogger(logger).setLevel(level)
    figures["load_avg_at_end"] = load_avg()
    path = out if out.endswith(".json") else os.path.join(out, f"{name}.json")
    report(name, rows, keys, path, dataclasses.asdict(settings), figures)
    return {"out": path, "key_ratios": keys}


@contextlib.contextmanager
def ray_session(num_cpus: int, rows: list, figures: dict) -> Iterator[None]:
    """The running Ray cluster, else $RAY_ADDRESS's, else a local one of `num_cpus` logical CPUs
    (address="local": a cluster of its own even where a `ray start` head runs on this machine),
    shut down at the end if started here. Its start-up is a row of its own, in no other figure."""
    import ray

    from edn.train.data import data_context
    owned = not ray.is_initialized()
    started = time.perf_counter()
    if owned and os.environ.get("RAY_ADDRESS"):
        ray.init()
    elif owned:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False)
    rows.append(row("ray.init", time.perf_counter() - started, "s",
                    "started here; in no figure" if owned else "already running"))
    figures["ray_resources"] = ray.cluster_resources()
    try:
        with data_context(enable_progress_bars=False):
            yield
    finally:
        if owned:
            ray.shutdown()


def profile_calls(fn: Callable[[], Any], phases: dict[str, Callable]) -> tuple[Any, float, dict[str, float]]:
    """fn() under cProfile -> (its result, its seconds, the seconds spent inside each of `phases`'
    functions, callees included; a generator's are those of its steps). cProfile's cost per
    Python call falls mostly on the Python-heavy phases."""
    profile = cProfile.Profile()
    started = time.perf_counter()
    result = profile.runcall(fn)
    seconds = time.perf_counter() - started
    stats = pstats.Stats(profile).stats  # (file, first line, name) -> (calls, primitive, own s, cumulative s, callers)
    inside = {}
    for phase, function in phases.items():
        code = inspect.unwrap(function).__code__
        inside[phase] = stats.get((code.co_filename, code.co_firstlineno, code.co_name), (0, 0, 0.0, 0.0))[3]
    return result, seconds, inside


CPU_FLAGS = {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"}


def load_avg() -> list[float] | None:
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_info() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cpu_model, flags = "", set()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in f if ":" in line)}  # any CPU's
        cpu_model, flags = info.get("model name", ""), set(info.get("flags", "").split())
    import torch

    from edn.runtime import native_bf16
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    # the flags that decide the speed of these figures: same model name, different machines (docs/performance.md)
    return {"cpu_count": os.cpu_count(), "cpus_usable": usable, "cpu_model": cpu_model,
            "cpu_flags": sorted(flags & CPU_FLAGS), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_native_bf16": native_bf16("cpu")[1], "load_avg_1_5_15": load_avg(),
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


def _shown(value) -> str:
    if not isinstance(value, float):
        return str(value)
    size = abs(value)
    return f"{value:.0f}" if size >= 100 else f"{value:.1f}" if size >= 10 else f"{value:.3f}" if size >= 0.01 \
        else f"{value:.2g}"


def format_table(rows: list[dict]) -> str:
    cells = [(r["what"], _shown(r["value"]), r["unit"], r["note"]) for r in rows]
    widths = [max((len(c[i]) for c in cells), default=0) for i in range(3)]
    lines = []
    for what, value, unit, note in cells:
        line = f"{what:<{widths[0]}}  {value:>{widths[1]}} {unit:<{widths[2]}}"
        lines.append((line + "  " + note if note else line).rstrip())
    return "\n".join(lines)


def format_key_ratio(k: dict) -> str:
    verdict = {True: "meets the target", False: "BELOW the target", None: "no target check"}[k["meets"]]
    uses = f"; {k['uses']}" if k.get("uses") else ""
    return f"KEY RATIO {k['name']} = {k['value']:.3f}  (target {k['target']}: {verdict}{uses})"


def report(name: str, rows: list[dict], keys: list[dict], out_json: str, config: dict, figures: dict) -> dict:
    """Print the table, then the key ratios (the headline, keys[0], last), and write the JSON result."""
    result = {"benchmark": name, "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
              "machine": machine_info(), "git": git_commit(), "config": config, "rows": rows,
              "key_ratios": keys, "figures": figures}
    title = f"edn bench {name}"
    print(f"\n{title}\n{'=' * len(title)}\n{format_table(rows)}\n")
    for k in keys[1:] + keys[:1]:
        print(format_key_ratio(k))
    if os.path.dirname(out_json):
        os.makedirs(os.path.dirname(out_json), exist_ok=True)
    with open(out_json, "w") as f:
        json.dump(result, f, indent=1, default=str)
    print(f"results: {out_json}", flush=True)
    return result
