"""`edn bench train`: edn's training step against a plain eager loop, the input pipeline against
batches in memory, and 1 vs 2 Ray Train workers with the all-reduce cost and a projection.

1. Step: images/s of one full G+D step (body stage with temporal smoothing; face stage on a
   frozen body generator) at each --sizes WIDTHxHEIGHT, for (a) train_parts.PlainStep, pix2pixHD's
   loop written plainly (fp32, NCHW, three D forwards, for-loop Adam) and (b) edn's step as the
   trainer builds it (edn.train.loop.build + make_step: on GPU bf16 autocast, channels_last,
   fused Adam; no host sync in the step); on GPU also (c) edn's step with G and D compiled.
   Same networks (--nets demo: `make demo`'s; paper: TrainConfig's defaults), same initial
   weights, same synthetic batch in memory. The sides take turns (ABBA), medians of --rounds.
   FLOPs per step counted (torch.utils.flop_counter: convolutions, matmuls); MFU against the
   GPU's bf16 peak where it is in train_parts.PEAK_BF16_TFLOPS. Where the time goes: edn's step
   split into phases by hooks on the networks and optimizers (train_parts.phase_profile).
2. Input pipeline: epochs of edn's body step on batches from the Parquet dataset through Ray
   Data (edn.train.data.training_pairs and iter_torch_batches as the trainer's loop calls it)
   against epochs on the same batches kept in memory, taking turns. A synthetic dancer is
   ingested with the groundtruth detector unless --dataset/--target are given.
3. Scaling: the body step on 1 and 2 Ray Train workers (DDP: gloo on CPU, --threads threads
   each; NCCL where there are GPUs enough), all-reduce time of one step's gradient bytes in the 2-worker group, and
   the projection to N GPUs (train_scaling.projection; bandwidths assumed in train_scaling.LINKS),
   also for the paper's networks on H100s (their FLOPs counted, an MFU assumed).

Everything runs with --threads torch threads per process (1 by default: see TrainBench.threads).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import tempfile
import time

import torch

from edn.bench import key_ratio, out_file, report, row
from edn.bench.train_parts import (
    frozen_body,
    grad_bytes,
    interleaved,
    median,
    model_batch,
    optimized_side,
    peak_flops,
    phase_profile,
    plain_side,
    step_flops,
    sync,
    synthetic_pairs,
    train_config,
)

BATCH = {"cpu": {256: 4, 512: 2, 1024: 1}, "cuda": {256: 16, 512: 8, 1024: 4}}  # by frame width


@dataclasses.dataclass
class TrainBench:
    sizes: tuple = ((256, 128),)      # WIDTHxHEIGHT; the paper's 512x256 and 1024x512 by --sizes
    stages: tuple = ("body", "face")
    nets: str = ""                    # demo or paper; default demo on CPU, paper on GPU
    batch: int = 0                    # 0: BATCH by device and width
    rounds: int = 6                   # timing rounds of each side (ABBA), medians kept
    steps_per_round: int = 1
    warmup: int = 1
    compile: bool = True              # GPU: also time edn's step with G and D compiled
    device: str = "auto"
    # torch threads in this process and per scaling worker. 1 by default: on a shared machine
    # 2 threads stall on every op (OpenMP waits for the descheduled one): measured 2-4 s/step
    # instead of 0.13 s at 64x32 with other jobs running.
    threads: int = 1
    pipeline: bool = True
    dataset: str = ""                 # for the pipeline; default: a synthetic dancer ingested here
    target: str = ""
    frames: int = 120                 # of the synthetic dancer
    pipeline_rounds: int = 2          # epochs of each side
    scaling: bool = True
    workers: tuple = (1, 2)
    scaling_steps: int = 4
    allreduce_reps: int = 5
    seed: int = 0
    smoke: bool = False


SMOKE = {"sizes": ((64, 32),), "batch": 2, "rounds": 2, "frames": 24, "pipeline_rounds": 1, "scaling_steps": 1,
         "allreduce_reps": 2, "smoke": True}


def _ray() -> bool:
    import ray
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        # address="local": a cluster of its own, not another job's that happens to run here
        ray.init(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False)
    return True


def _size(s: tuple[int, int]) -> str:
    return f"{s[0]}x{s[1]}"


def step_section(b: TrainBench, device: torch.device, rows: list, figures: dict) -> list[dict]:
    peak, peak_note = peak_flops(device)
    rows.append(row("device", str(device), "", f"{peak_note}; torch threads {torch.get_num_threads()}; "
                    f"nets {b.nets}; sides take turns (ABBA), median of {b.rounds} rounds of {b.steps_per_round}"))
    keys = []
    for size in b.sizes:
        for stage in b.stages:
            batch_size = b.batch or BATCH[device.type].get(size[0], 1)
            cfg = train_config(b.nets, stage, batch_size)
            body = frozen_body(cfg, device) if stage == "face" else None
            batch = model_batch(synthetic_pairs(batch_size, size, b.seed), cfg, device)
            plain_batch = model_batch(synthetic_pairs(batch_size, size, b.seed), dataclasses.replace(
                cfg, channels_last=False), device)
            plain, edn = plain_side(cfg, device, body), optimized_side(cfg, device, body)
            sides = {"eager": functools.partial(plain, plain_batch), "edn": functools.partial(edn, batch)}
            if b.compile and device.type == "cuda":
                sides["edn compiled"] = functools.partial(optimized_side(cfg, device, body, True), batch)
            warmup = b.warmup + 2 * ("edn compiled" in sides)  # compiling: both requires_grad variants of D
            times = interleaved(sides, b.rounds, b.steps_per_round, device, warmup=warmup)
            label = f"{stage} {_size(size)} b{batch_size}"
            fig = {"batch": batch_size, "size": list(size), "step_s": times,
                   "flops": {"eager": step_flops(sides["eager"]), "edn": step_flops(sides["edn"])},
                   "phases_s": phase_profile(edn, batch, device)}
            for name, ts in times.items():
                s = median(ts)
                flops = fig["flops"]["eager" if name == "eager" else "edn"]
                mfu = f"; MFU {100 * flops / s / peak:.1f}%" if peak else ""
                rows.append(row(f"{label}: {name}", batch_size / s, "img/s", f"{s * 1e3:.0f} ms/step, "
                                f"{flops / 1e9:.1f} GFLOP/step, {flops / s / 1e9:.1f} GFLOP/s{mfu}"))
                fig.setdefault("images_per_s", {})[name] = batch_size / s
            ratio = median(times["eager"]) / median(times["edn"])
            fig["ratio"] = ratio
            rows.append(row(f"{label}: ratio edn / eager", ratio, "", "images/s"))
            if "edn compiled" in times:
                fig["compile_ratio"] = median(times["edn"]) / median(times["edn compiled"])
                rows.append(row(f"{label}: ratio compiled / edn", fig["compile_ratio"], "", "does compiling pay?"))
            total = sum(fig["phases_s"].values())
            rows.append(row(f"{label}: where edn's step goes", total * 1e3, "ms", ", ".join(
                f"{k} {100 * v / total:.0f}%" for k, v in fig["phases_s"].items()) + " (synced per phase)"))
            figures[f"step_{stage}_{_size(size)}"] = fig
            target, meets = (">= 2.0 (GPU)", ratio >= 2.0) if device.type == "cuda" else (">= 1.0 (CPU)", ratio >= 1.0)
            keys.append(key_ratio(f"edn step / eager images/s ({stage}, {_size(size)}, {device.type})", ratio, target,
                                  meets, "medians of interleaved rounds, one process"))
    return keys


def make_dataset(workdir: str, frames: int, size: tuple[int, int], seed: int) -> tuple[str, str]:
    """One synthetic dancer at `size`, ingested with its ground-truth keypoints; (url, target)."""
    from edn.data.ingest import IngestConfig, ingest
    from edn.synth import synthesize
    synthesize(os.path.join(workdir, "videos"), 1, frames, size, seed)
    url = os.path.join(workdir, "dataset")
    done = ingest([os.path.join(workdir, "videos", "dancer_00.mp4")], url,
                  IngestConfig(estimator="groundtruth", width=size[0], height=size[1]))
    if done["done"] != ["dancer_00"]:
        raise RuntimeError(f"ingest of the benchmark's dancer failed: {done['failed']}")
    return url, "dancer_00"


def pipeline_section(b: TrainBench, device: torch.device, workdir: str, rows: list, figures: dict) -> dict:
    from edn.train.data import training_pairs
    from edn.train.loop import epoch_batches, step_memory_format, to_batch
    t = time.perf_counter()
    url, target = (b.dataset, b.target) if b.dataset else make_dataset(workdir, b.frames, b.sizes[0], b.seed)
    made = time.perf_counter() - t
    cfg = train_config(b.nets, "body", 0)
    pairs, record = training_pairs(url, target, cfg.holdout_fraction)
    size = (record["width"], record["height"])
    cfg.batch_size = bs = b.batch or BATCH[device.type].get(size[0], 1)
    edn, mf = optimized_side(cfg, device), step_memory_format(cfg, device)

    def batches():  # the trainer's call, on this process's iterator of the dataset instead of a Ray Train shard
        return epoch_batches(pairs, cfg, device)

    in_memory = list(batches())
    edn(to_batch(in_memory[0], mf))  # warm-up

    def epoch(source) -> dict:
        t0, first = time.perf_counter(), None
        for raw in source():
            first = time.perf_counter() - t0 if first is None else first
            edn(to_batch(raw, mf))
        sync(device)
        return {"epoch_s": time.perf_counter() - t0, "first_batch_s": first}

    epochs = {"ray data": [], "memory": []}
    runs = interleaved({"ray data": lambda: epochs["ray data"].append(epoch(batches)),
                        "memory": lambda: epochs["memory"].append(epoch(lambda: in_memory))},
                       b.pipeline_rounds, 1, device, warmup=0)
    n = len(in_memory) * bs
    fig = {"dataset": url, "target": target, "dataset_s": made, "size": list(size), "batch": bs,
           "batches_per_epoch": len(in_memory), "ray_data": epochs["ray data"], "memory": epochs["memory"],
           "epoch_s": runs}
    pipe, mem = n / median(runs["ray data"]), n / median(runs["memory"])
    lead = median([r["first_batch_s"] for r in fig["ray_data"]])
    steady = (n - bs) / median([r["epoch_s"] - r["first_batch_s"] for r in fig["ray_data"]])
    fig.update(images_per_s={"ray_data": pipe, "memory": mem, "ray_data_after_first_batch": steady},
               ratio=pipe / mem, ratio_steady=steady / mem)
    figures["pipeline"] = fig
    rows += [row("pipeline: dataset", f"{record['frames']} frames {_size(size)}", "",
                 f"{len(in_memory)} batches of {bs} pairs per epoch; " + (f"made here in {made:.1f} s" if not b.dataset
                                                                         else url)),
             row("pipeline: body step, batches in memory", mem, "img/s", "to_batch + step"),
             row("pipeline: body step, batches from Ray Data", pipe, "img/s",
                 "whole epochs: read, pairs, shuffle, decode, draw, iter_torch_batches; "
                 f"first batch after {lead:.2f} s"),
             row("pipeline: from Ray Data after the first batch", steady, "img/s", "the epoch's start-up left out"),
             row("pipeline: ratio Ray Data / memory, after the first batch", fig["ratio_steady"], "")]
    return key_ratio("step images/s, Ray Data / in memory (whole epochs)", fig["ratio"], ">= 0.95",
                     fig["ratio"] >= 0.95, f"medians of {b.pipeline_rounds} epochs each; steady ratio in the table")


def scaling_section(b: TrainBench, device: torch.device, rows: list, figures: dict) -> dict:
    """Workers on GPUs (NCCL) where there are enough of them, else on CPU (gloo) with the demo
    networks (the paper's are far too slow there); the projection uses section 1's step and nets."""
    from edn.bench.train_scaling import projection, run_workers
    from edn.config import to_dict
    size = b.sizes[0]
    use_gpu = device.type == "cuda" and torch.cuda.device_count() >= max(b.workers)
    where = "GPU, NCCL" if use_gpu else "CPU, gloo"
    cfg = train_config(b.nets if use_gpu or device.type == "cpu" else "demo", "body",
                       b.batch or BATCH["cuda" if use_gpu else "cpu"].get(size[0], 1))
    runs = {}
    for w in b.workers:
        runs[w] = run_workers(to_dict(cfg), w, b.threads, size, b.scaling_steps, b.warmup, use_gpu,
                              allreduce_reps=b.allreduce_reps)
        plural = ("s" if w > 1 else "", "s" if b.threads > 1 else "")
        rows.append(row(f"scaling: {w} Ray Train worker{plural[0]} x {b.threads} thread{plural[1]}",
                        runs[w]["images_per_s"], "img/s", f"body {_size(size)}, batch {cfg.batch_size} per worker, "
                        f"{runs[w]['step_s'] * 1e3:.0f} ms/step (median of {b.scaling_steps}), {where}"))
    nbytes = grad_bytes(cfg)
    total = sum(nbytes.values())
    fig = {"where": where, "runs": runs, "grad_bytes": nbytes,
           "paper_grad_bytes": grad_bytes(train_config("paper", "body", 1))}
    rows.append(row("scaling: gradient bytes per step", total / 2**20, "MiB", f"G {nbytes['G'] / 2**20:.2f} + D "
                    f"{nbytes['D'] / 2**20:.2f} (fp32); paper nets: "
                    f"{sum(fig['paper_grad_bytes'].values()) / 2**20:.0f} MiB"))
    lo, hi = min(runs), max(runs)
    bus = None
    if hi > 1:
        ar = runs[hi]["allreduce_G+D_s"]
        bus = total * 2 * (hi - 1) / hi / ar / 1e9
        share = ar / runs[hi]["step_s"]
        fig.update(allreduce_s=ar, bus_GBps=bus, allreduce_share=share)
        rows.append(row(f"scaling: all-reduce of one step's gradients, {hi} workers", ar * 1e3, "ms",
                        f"G {runs[hi]['allreduce_G_s'] * 1e3:.1f} + D {runs[hi]['allreduce_D_s'] * 1e3:.1f} ms "
                        f"apart; bus {bus:.2f} GB/s; {100 * share:.0f}% of the step if not overlapped"))
    step = figures.get(f"step_body_{_size(size)}")
    compute, batch = (step["batch"] / step["images_per_s"]["edn"], step["batch"]) if step \
        else (runs[lo]["step_s"], cfg.batch_size)
    proj_bytes = sum(grad_bytes(train_config(b.nets, "body", 1)).values()) if step else total
    proj_rows, fig["projection"] = projection(compute, proj_bytes, batch, bus)
    fig.update(projection_compute_s=compute, projection_bytes=proj_bytes)
    rows.append(row("projection: step_N = compute + bytes x 2(N-1)/N / bus bandwidth", compute * 1e3, "ms compute",
                    f"edn's body step on {device.type}, {b.nets} nets, {proj_bytes / 2**20:.1f} MiB; "
                    f"images/s = N x {batch} / step_N (efficiency)"))
    rows += proj_rows
    rows += gpu_projection(fig)
    fig["ratio"] = runs[hi]["images_per_s"] / runs[lo]["images_per_s"]
    figures["scaling"] = fig
    return key_ratio(f"images/s, {hi} workers / {lo} worker ({b.threads} thread each, {where})", fig["ratio"],
                     f"none ({os.cpu_count()} cores, shared)", None, "scaling section")


def gpu_projection(fig: dict) -> list[dict]:
    """The same formula for the paper's networks on H100s, compute from their counted FLOPs at an
    assumed MFU (train_scaling.ASSUMED_MFU), all-reduce over each link of LINKS."""
    from edn.bench.train_parts import PEAK_BF16_TFLOPS, meta_step_flops
    from edn.bench.train_scaling import ASSUMED_MFU, GPU_CASE, projection
    cfg = train_config("paper", "body", GPU_CASE["batch"])
    flops = meta_step_flops(cfg, GPU_CASE["size"])
    compute = flops / (dict(PEAK_BF16_TFLOPS)[GPU_CASE["gpu"]] * 1e12 * ASSUMED_MFU)
    nbytes = sum(fig["paper_grad_bytes"].values())
    label = f"GPU projection, paper nets {_size(GPU_CASE['size'])} b{GPU_CASE['batch']}"
    rows, fig["gpu_projection"] = projection(compute, nbytes, GPU_CASE["batch"], None, label=label)
    fig["gpu_projection_assumptions"] = {"flops_per_step": flops, "mfu": ASSUMED_MFU, "compute_s": compute, **GPU_CASE}
    return [row(f"{label}: compute", compute * 1e3, "ms", f"{flops / 1e12:.1f} TFLOP/step counted (meta device) / "
                f"({GPU_CASE['gpu']} bf16 peak x {ASSUMED_MFU:.0%} MFU, assumed); "
                f"{nbytes / 2**20:.0f} MiB gradients")] + rows


def run(b: TrainBench, out_json: str) -> dict:
    device = torch.device("cuda" if b.device == "auto" and torch.cuda.is_available() else
                          "cpu" if b.device == "auto" else b.device)
    b.nets = b.nets or ("paper" if device.type == "cuda" else "demo")
    torch.set_num_threads(b.threads)
    rows, figures = [], {}
    if device.type == "cpu":
        rows.append(row("GPU path", "not run here", "", "no GPU: bf16 autocast, channels_last, fused Adam, "
                        "torch.compile and MFU are written but were not exercised"))
    keys = step_section(b, device, rows, figures)
    if b.pipeline or b.scaling:
        import ray
        quiet = {name: logging.getLogger(name).level for name in ("edn", "ray.data", "ray.train")}
        for name in quiet:
            logging.getLogger(name).setLevel(logging.WARNING)
        owned = _ray()
        ray.data.DataContext.get_current().enable_progress_bars = False
        try:
            with tempfile.TemporaryDirectory(prefix="edn-bench-train-") as workdir:
                if b.pipeline:
                    keys.append(pipeline_section(b, device, workdir, rows, figures))
                if b.scaling:
                    keys.append(scaling_section(b, device, rows, figures))
        finally:
            for name, level in quiet.items():
                logging.getLogger(name).setLevel(level)
            if owned:
                ray.shutdown()
    return report("train", rows, keys, out_json, config=dataclasses.asdict(b), figures=figures)


def _sizes(text: str) -> tuple:
    from edn.cli import _size as parse
    return tuple(parse(s) for s in text.split(","))


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = TrainBench()
    p.add_argument("--sizes", type=_sizes, default=None, help="frame sizes WIDTHxHEIGHT, comma-separated "
                   "(default 256x128; the paper's: 256x128,512x256,1024x512)")
    p.add_argument("--stages", type=lambda s: tuple(s.split(",")), default=None, help="body,face (default both)")
    p.add_argument("--nets", choices=("demo", "paper"), default=None,
                   help="network sizes (default demo on CPU, paper on GPU)")
    p.add_argument("--batch", type=int, default=None, help="batch size at every size (default by device and size)")
    p.add_argument("--rounds", type=int, default=None, help=f"timing rounds per side (default {d.rounds})")
    p.add_argument("--threads", type=int, default=None, help=f"torch threads here and per worker (default {d.threads})")
    p.add_argument("--device", default=None, help="auto, cpu or cuda (default auto)")
    p.add_argument("--no-compile", action="store_true", help="GPU: do not time the torch.compile variant")
    p.add_argument("--dataset", default=None, help="pipeline: an ingested dataset URL (default: a synthetic dancer)")
    p.add_argument("--target", default=None, help="pipeline: the video id in --dataset")
    p.add_argument("--no-pipeline", action="store_true", help="skip the input pipeline section")
    p.add_argument("--no-scaling", action="store_true", help="skip the Ray Train scaling section")
    p.add_argument("--out", default="outputs/bench", help="result folder (train.json in it) or .json file")
    p.add_argument("--smoke", action="store_true", help="a seconds-long version (tiny frames), for tests")


def main(a: argparse.Namespace) -> dict:
    b = TrainBench(**(SMOKE if a.smoke else {}))
    for field in ("sizes", "stages", "nets", "batch", "rounds", "threads", "device", "dataset", "target"):
        if getattr(a, field, None) is not None:
            setattr(b, field, getattr(a, field))
    b.compile, b.pipeline, b.scaling = not a.no_compile, not a.no_pipeline, not a.no_scaling
    if b.rounds < 1 or b.threads < 1 or b.batch < 0 or set(b.stages) - {"body", "face"} \
            or bool(b.dataset) != bool(b.target):
        raise ValueError("edn bench train needs --rounds >= 1, --threads >= 1, --batch >= 0, stages among body,face, "
                         "and --dataset with --target")
    result = run(b, out_file(a.out, "train"))
    return {"out": out_file(a.out, "train"), "key_ratios": result["key_ratios"]}
