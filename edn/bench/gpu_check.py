"""`python -m edn.bench.gpu_check --out OUT.json [--device cuda|cpu] [--quick]`: what edn's training
step and render generator do on one GPU, with torch alone.

Written for a GPU machine that has torch, torchvision, numpy, pyarrow and OpenCV but none of Ray,
MLflow, mediapipe, PyAV, scikit-image, fsspec, pandas or PyYAML: everything here is built from
edn's own code (edn.train.loop.build and make_step, edn.bench.train_parts, edn.inference.generate)
and nothing imported reaches those packages (tests/test_gpu_check.py runs it with them hidden).

1. Training step, body stage, temporal, the paper's networks (pix2pixHD's global generator,
   TrainConfig's defaults) at each size, batch train_parts.BATCH by device and width: the plain
   eager loop (train_parts.PlainStep: fp32, NCHW, for-loop Adam) against edn's step and its
   variants: bf16 autocast off, channels_last off, both off, Adam's foreach kernel instead of
   fused, and (a second pass, after the rest is saved, as compiling can take minutes or fail)
   G and D through torch.compile. Same weights and batch; the sides take turns (ABBA), medians of
   rounds. Per variant: images/s, ratio to the eager loop's images/s measured in the same pass,
   FLOP/s (train_parts.step_flops) and MFU against the GPU's dense peak (PEAKS) in the precision
   the variant computes in.
2. Render: the body generator in inference as edn.inference renders (edn.inference.generate on a
   batch of streams, each with its previous frame, as Renderer.step calls it) in fp32 and in bf16
   autocast, taking turns; the largest |difference| between their outputs on the same input.

The JSON is written after each part (`complete` false until the end), so a run cut short by a
timeout keeps what it measured; a variant that fails (torch.compile, out of memory) is recorded
as its error string.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import json
import os
import re
import sys
import time
from collections.abc import Callable
from statistics import median

import torch

from edn.bench.harness import format_table, git_commit, machine_info, row
from edn.bench.train_parts import (
    BATCH,
    PlainStep,
    interleaved,
    model_batch,
    optimized_side,
    plain_side,
    step_flops,
    sync,
    synthetic_pairs,
    train_config,
)
from edn.config import parse_size
from edn.inference import generate
from edn.models.body import BodyGenerator
from edn.models.networks import to_model_range
from edn.runtime import for_autocast, native_bf16
from edn.train.loop import step_memory_format
from edn.train.step import GANStep

# Absent on the GPU machine: importing any of them (even through edn) would fail there.
FORBIDDEN = ("ray", "mlflow", "mediapipe", "av", "skimage", "fsspec", "gcsfs", "pandas", "yaml", "kubernetes")

# Dense (no sparsity) peak TFLOP/s from NVIDIA's datasheets, by a pattern of torch's device name;
# the first match wins (H200 NVL before H200, L40S before L4).
PEAKS = (
    ("H200 NVL", {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0}),
    ("H200", {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    ("H100 NVL", {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0}),
    ("H100 PCIe", {"bf16": 756.5, "tf32": 378.0, "fp32": 51.2}),
    ("H100", {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),  # SXM: "NVIDIA H100 80GB HBM3"
    ("A100", {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    ("L40S", {"bf16": 362.1, "tf32": 183.0, "fp32": 91.6}),
    (r"\bL4\b", {"bf16": 121.0, "tf32": 60.0, "fp32": 30.3}),
)

# edn's step with one setting changed: (name, TrainConfig changes, fused Adam or None for build's choice)
VARIANTS = (("edn", {}, None), ("edn fp32", {"amp": False}, None), ("edn NCHW", {"channels_last": False}, None),
            ("edn fp32 NCHW", {"amp": False, "channels_last": False}, None), ("edn foreach Adam", {}, False))


@dataclasses.dataclass
class Settings:
    device: str
    quick: bool = False
    nets: str = "paper"                 # train_parts.NETS: the paper's, or the demo's with --quick
    sizes: tuple = ((512, 256),)        # training step, WIDTHxHEIGHT
    batch: int = 0                      # 0: train_parts.BATCH by device and width
    rounds: int = 4                     # timing rounds per side (ABBA), medians kept
    steps: int = 3                      # steps per round
    warmup: int = 2
    compile: bool = True
    compile_backend: str = "inductor"
    compile_warmup: int = 3             # compiling: D's two requires_grad states, then one more
    render_size: tuple = (512, 256)
    render_batch: int = 4
    threads: int = 0                    # torch threads; 0: torch's default
    seed: int = 0


QUICK = {"nets": "demo", "sizes": ((64, 32),), "batch": 2, "rounds": 2, "steps": 1, "warmup": 1,
         "compile_warmup": 2, "compile_backend": "eager", "render_size": (64, 32), "render_batch": 2}


def peak_of(device: torch.device) -> dict | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for pattern, tflops in PEAKS:
        if re.search(pattern, name, re.IGNORECASE):
            return {"gpu": name, "matched": pattern, "tflops": tflops, "source": "NVIDIA datasheets, dense"}
    return None


def precision_of(bf16: bool) -> str:
    """What a variant's convolutions compute in: cuDNN runs fp32 convolutions in TF32 unless told not to."""
    return "bf16" if bf16 else "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"


def adam_kind(opt: torch.optim.Optimizer, device: torch.device) -> str:
    g = opt.param_groups[0]
    if g.get("fused"):
        return "fused"
    # foreach=None: torch picks foreach when every parameter is on a GPU
    return "foreach" if g.get("foreach") or (g.get("foreach") is None and device.type == "cuda") else "for-loop"


def step_settings(step: GANStep | PlainStep, cfg, device: torch.device, compiled: str | None = None) -> dict:
    """What the variant really runs with here (on CPU edn's step has no autocast and stays NCHW)."""
    plain = isinstance(step, PlainStep)
    return {"bf16_autocast": not plain and step.autocast is not contextlib.nullcontext,
            "channels_last": not plain and step_memory_format(cfg, device) == torch.channels_last,
            "adam": adam_kind(step.opt_G, device), "compile": compiled}


def failed(record: dict, e: Exception, device: torch.device) -> None:
    record["error"] = f"{type(e).__name__}: {e}"[:4000]
    if device.type == "cuda":
        torch.cuda.empty_cache()


def timed(sides: dict[str, Callable], s: Settings, device: torch.device, warmup: dict[str, int],
          records: dict[str, dict]) -> dict[str, list[float]]:
    """Each side warmed up alone, its seconds in records[name]["warmup_s"]; one that fails gets its
    error string instead and is dropped; the rest timed taking turns (train_parts.interleaved)."""
    for name in list(sides):
        t = time.perf_counter()
        try:
            for _ in range(warmup.get(name, s.warmup)):
                sides[name]()
            sync(device)
        except Exception as e:  # noqa: BLE001 - torch.compile and OOM raise many kinds; record, go on
            failed(records[name], e, device)
            del sides[name]
            continue
        records[name]["warmup_s"] = time.perf_counter() - t
    return interleaved(sides, s.rounds, s.steps, device, warmup=0) if sides else {}


def figures(records: dict[str, dict], times: dict[str, list[float]], batch: int, flops: dict[str, int | None],
            peak: dict | None, baseline: str) -> None:
    """images/s, ratio to `baseline`'s, FLOP/s and MFU of each timed side of `records`, into its record."""
    for name in [n for n in records if n in times]:
        r, s = records[name], median(times[name])
        r.update(step_s=times[name], images_per_s=batch / s)
        if baseline in times:
            r[f"ratio_to_{baseline.replace(' ', '_')}"] = median(times[baseline]) / s
        f = flops.get(name)
        r["flops_per_step"] = f
        r["tflops_per_s"] = f / s / 1e12 if f else None
        r["peak_used"] = precision_of(r["settings"]["bf16_autocast"]) if peak else None
        r["mfu"] = r["tflops_per_s"] / peak["tflops"][r["peak_used"]] if peak and f else None


def train_section(s: Settings, device: torch.device, size: tuple[int, int], peak: dict | None,
                  save: Callable[[dict], None]) -> dict:
    batch = s.batch or BATCH[device.type].get(size[0], 1)
    cfg = train_config(s.nets, "body", batch)
    raw = synthetic_pairs(batch, size, s.seed)
    batches = {cl: model_batch(raw, dataclasses.replace(cfg, channels_last=cl), device) for cl in (True, False)}
    plain = plain_side(cfg, device)
    sides = {"eager": functools.partial(plain, batches[False])}
    records = {"eager": {"settings": step_settings(plain, cfg, device)}}
    for name, change, fused in VARIANTS:
        vcfg = dataclasses.replace(cfg, **change)
        sides[name] = functools.partial(optimized_side(vcfg, device, fused=fused), batches[vcfg.channels_last])
        records[name] = {"settings": step_settings(sides[name].func, vcfg, device)}
    section = {"size": list(size), "batch": batch, "nets": s.nets, "variants": records}
    times = timed(sides, s, device, {}, records)
    # FLOPs as executed: the eager loop runs D three times and fills D's gradients in G's
    # backward, edn's step does less; its variants (and the compiled one) do edn's arithmetic.
    flops = {"eager": step_flops(sides["eager"]) if "eager" in sides else None,
             "edn": step_flops(sides["edn"]) if "edn" in sides else None}
    flops.update({name: flops["edn"] for name, _, _ in VARIANTS[1:]})
    figures(records, times, batch, flops, peak, "eager")
    save(section)
    if s.compile:
        for name in [k for k in sides if k not in ("eager", "edn")]:
            del sides[name]  # its networks and Adam states freed: the compiled variant needs room
        compile_pass(s, device, cfg, sides, batches[True], section, flops["edn"], peak)
        save(section)
    return section


def compile_pass(s: Settings, device: torch.device, cfg, sides: dict[str, Callable], batch: dict, section: dict,
                 flops: int | None, peak: dict | None) -> None:
    """edn's step with G and D through torch.compile, timed taking turns with the eager loop and
    edn's uncompiled step again (its ratios are to theirs in this pass)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    name, records = "edn compiled", section["variants"]
    records[name] = r = {"settings": {**records["edn"]["settings"], "compile": s.compile_backend}, "pass": "compile",
                         "note": "timed in a second pass with eager and edn; its ratios are to those of that pass"}
    try:  # an unknown backend fails here, most failures at the first call
        sides[name] = functools.partial(optimized_side(cfg, device, compile_networks=True,
                                                       compile_backend=s.compile_backend), batch)
    except Exception as e:  # noqa: BLE001 - recorded, as timed() does
        failed(r, e, device)
        return
    again = {k: {"settings": records[k]["settings"]} for k in sides if k != name}
    times = timed(sides, s, device, {name: s.compile_warmup}, {**again, name: r})
    figures({name: r}, times, section["batch"], {name: flops}, peak, "eager")
    if name in times and "edn" in times:
        r["ratio_to_edn"] = median(times["edn"]) / median(times[name])
    section["compile_pass_step_s"] = times


def render_section(s: Settings, device: torch.device, peak: dict | None) -> dict:
    """The body generator (random weights: cost and precision are what is measured) on a batch of
    pose figures, with the batch's previous frames, as edn.inference.Renderer.step calls it."""
    cfg = train_config(s.nets, "body", s.render_batch)
    torch.manual_seed(s.seed)
    G = BodyGenerator(cfg.generator, cfg.temporal).to(device).eval()
    raw = synthetic_pairs(s.render_batch, s.render_size, s.seed)
    x, prev = (to_model_range(raw[k][:, 1].to(device)) for k in ("pose", "image"))  # uint8 NHWC, as Renderer's
    outputs: dict[str, torch.Tensor] = {}

    generators = {p: for_autocast(G, p) for p in ("fp32", "bf16")}  # as a Renderer holds them

    @torch.no_grad()
    def render(precision: str) -> None:
        outputs[precision] = generate(generators[precision], x, prev, precision)

    sides = {p: functools.partial(render, p) for p in ("fp32", "bf16")}
    records = {p: {"settings": {"bf16_autocast": p == "bf16"}} for p in sides}
    times = timed(sides, s, device, {}, records)
    flops = step_flops(sides["fp32"]) if "fp32" in sides else None
    figures(records, times, s.render_batch, dict.fromkeys(sides, flops), peak, "fp32")
    native, why = native_bf16(device.type)
    section = {"size": list(s.render_size), "batch": s.render_batch, "nets": s.nets, "temporal": cfg.temporal,
               "bf16_native": native, "bf16_native_why": why, **records}
    if len(outputs) == 2:
        diff = (outputs["fp32"] - outputs["bf16"]).abs()
        section.update(max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()),
                       max_abs_diff_levels=float(diff.max()) * 127.5)  # in 0..255 gray levels
    return section


def header(s: Settings, device: torch.device, peak: dict | None) -> dict:
    gpu = torch.cuda.get_device_properties(device) if device.type == "cuda" else None
    return {"check": "edn.bench.gpu_check", "complete": False,
            "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "device": {"type": device.type, "name": gpu.name if gpu else "CPU",
                       "capability": [gpu.major, gpu.minor] if gpu else None,
                       "memory_gib": gpu.total_memory / 2**30 if gpu else None},
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
            "git": git_commit(), "machine": machine_info(), "settings": dataclasses.asdict(s),
            "backends": {"cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                         "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                         "cudnn_benchmark": torch.backends.cudnn.benchmark, "torch_threads": torch.get_num_threads()},
            "peak": peak, "render": None, "train": {}}


def table(result: dict) -> list[dict]:
    def line(label: str, r: dict, baseline: str) -> dict:
        if "error" in r or "step_s" not in r:
            return row(label, "error" if "error" in r else "not timed", "", r.get("error", "").split("\n")[0][:100])
        mfu = f", MFU {100 * r['mfu']:.1f}% of {r['peak_used']} peak" if r.get("mfu") is not None else ""
        ratio = r.get(f"ratio_to_{baseline}")
        return row(label, r["images_per_s"], "img/s",
                   (f"x{ratio:.2f} {baseline}, " if ratio else "") + f"{1e3 * median(r['step_s']):.1f} ms{mfu}")

    rows = [row("device", result["device"]["name"], "", f"torch {result['torch']}, CUDA {result['cuda']}")]
    if result["render"]:
        rd = result["render"]
        label = f"render {rd['size'][0]}x{rd['size'][1]} b{rd['batch']}"
        rows += [line(f"{label}: {p}", rd[p], "fp32") for p in ("fp32", "bf16")]
        if "max_abs_diff" in rd:
            rows.append(row(f"{label}: max |fp32 - bf16|", rd["max_abs_diff"], "", "outputs in [-1, 1]"))
    for label, sec in result["train"].items():
        rows += [line(f"train {label}: {name}", r, "eager") for name, r in sec["variants"].items()]
    return rows


def parse(argv: list[str] | None) -> tuple[Settings, str]:
    p = argparse.ArgumentParser(prog="python -m edn.bench.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="the JSON result file")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny networks, sizes and rounds, and torch.compile's "
                   "eager backend (dynamo only: inductor's C++ build takes minutes on a CPU): seconds on a CPU")
    p.add_argument("--sizes", help="training step sizes WIDTHxHEIGHT, comma-separated (default 512x256)")
    p.add_argument("--batch", type=int, help="training batch at every size (default by device and width)")
    p.add_argument("--rounds", type=int, help="timing rounds per side (default 4)")
    p.add_argument("--no-compile", dest="compile", action="store_false", default=None,
                   help="skip the torch.compile variant")
    p.add_argument("--compile-backend", help="torch.compile's backend (default inductor)")
    p.add_argument("--threads", type=int, help="torch threads (default torch's)")
    a = p.parse_args(argv)
    given = {k: v for k, v in vars(a).items() if v is not None and k not in ("out", "device", "quick", "sizes")}
    if a.sizes:
        given["sizes"] = tuple(parse_size(t) for t in a.sizes.split(","))
    return Settings(device=a.device, quick=a.quick, **{**(QUICK if a.quick else {}), **given}), a.out


def main(argv: list[str] | None = None) -> dict:
    s, out = parse(argv)
    device = torch.device(s.device)
    if s.threads:
        torch.set_num_threads(s.threads)
    started, peak = time.perf_counter(), peak_of(device)
    result = header(s, device, peak)

    def save() -> None:
        result.update(seconds=time.perf_counter() - started,
                      forbidden_loaded=sorted({m.partition(".")[0] for m in sys.modules} & set(FORBIDDEN)))
        if os.path.dirname(out):
            os.makedirs(os.path.dirname(out), exist_ok=True)
        with open(out + ".tmp", "w") as f:
            json.dump(result, f, indent=1, default=str)
        os.replace(out + ".tmp", out)  # a run killed mid-write leaves the last whole file

    save()
    result["render"] = render_section(s, device, peak)
    save()
    print(f"gpu_check: render done, {time.perf_counter() - started:.0f} s", flush=True)
    for size in s.sizes:
        label = f"{size[0]}x{size[1]}"

        def keep(section: dict, label=label) -> None:
            result["train"][label] = section
            save()
            print(f"gpu_check: train {label} saved, {time.perf_counter() - started:.0f} s", flush=True)

        train_section(s, device, size, peak, keep)
    result["complete"] = True
    save()
    print(f"\n{format_table(table(result))}\nresults: {out} ({result['seconds']:.0f} s)", flush=True)
    return result


if __name__ == "__main__":
    main()
