"""`edn bench train`: what it measures is edn.bench.settings.TrainBench's docstring."""
from __future__ import annotations

import dataclasses
import functools
import os
import time
from statistics import median

import torch

from edn.bench import harness
from edn.bench.harness import key_ratio, row
from edn.bench.settings import TrainBench
from edn.bench.train_parts import (
    BATCH,
    frozen_body,
    grad_bytes,
    interleaved,
    model_batch,
    optimized_side,
    phase_profile,
    plain_side,
    step_flops,
    sync,
    synthetic_pairs,
    train_config,
)
from edn.runtime import native_bf16


def run(b: TrainBench, out: str) -> dict:
    return harness.run("train", b, out, measure, ray_cpus=os.cpu_count() or 1 if b.pipeline or b.scaling else None)


def measure(b: TrainBench, workdir: str, rows: list, figures: dict) -> list[dict]:
    device = torch.device("cuda" if b.device == "auto" and torch.cuda.is_available() else
                          "cpu" if b.device == "auto" else b.device)
    b.nets = b.nets or ("paper" if device.type == "cuda" else "demo")
    torch.set_num_threads(b.threads)
    if device.type == "cpu":
        rows.append(row("GPU path", "not run here", "", "no GPU: bf16 autocast, channels_last, fused Adam and "
                        "torch.compile are written but were not exercised"))
    keys = step_section(b, device, rows, figures)
    if b.pipeline:
        keys.append(pipeline_section(b, device, workdir, rows, figures))
    if b.scaling:
        keys.append(scaling_section(b, device, rows, figures))
    return keys


def _size(s: tuple[int, int]) -> str:
    return f"{s[0]}x{s[1]}"


def step_section(b: TrainBench, device: torch.device, rows: list, figures: dict) -> list[dict]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    rows.append(row("device", str(device), "", f"{name}; torch threads {torch.get_num_threads()}; nets {b.nets}; "
                    f"sides take turns (ABBA), median of {b.rounds} rounds of {b.steps_per_round}"))
    keys = []
    cpu_bf16, why = native_bf16("cpu") if device.type == "cpu" else (False, "")
    if device.type == "cpu":
        rows.append(row("bf16 step", "timed" if cpu_bf16 else "not timed", "", why))
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
            if cpu_bf16:  # what training in bf16 would gain here (the trainer's CPU steps: fp32 unless cpu_bf16)
                sides["edn bf16"] = functools.partial(optimized_side(cfg, device, body, amp=True), batch)
            warmup = b.warmup + 2 * ("edn compiled" in sides)  # compiling: both requires_grad variants of D
            times = interleaved(sides, b.rounds, b.steps_per_round, device, warmup=warmup)
            label = f"{stage} {_size(size)} b{batch_size}"
            fig = {"batch": batch_size, "size": list(size), "step_s": times,
                   "flops": {"eager": step_flops(sides["eager"]), "edn": step_flops(sides["edn"])},
                   "phases_s": phase_profile(edn, batch, device)}
            for side, ts in times.items():
                s = median(ts)
                flops = fig["flops"]["eager" if side == "eager" else "edn"]
                rows.append(row(f"{label}: {side}", batch_size / s, "img/s", f"{s * 1e3:.0f} ms/step, "
                                f"{flops / 1e9:.1f} GFLOP/step, {flops / s / 1e9:.1f} GFLOP/s"))
                fig.setdefault("images_per_s", {})[side] = batch_size / s
            ratio = median(times["eager"]) / median(times["edn"])
            fig["ratio"] = ratio
            rows.append(row(f"{label}: ratio edn / eager", ratio, "", "images/s"))
            if "edn bf16" in times:
                fig["bf16_ratio"] = median(times["edn"]) / median(times["edn bf16"])
                rows.append(row(f"{label}: ratio edn bf16 / edn fp32", fig["bf16_ratio"], "",
                                "the step under CPU bf16 autocast; training: fp32 on CPU unless cpu_bf16"))
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
    from edn.data.reader import video_record
    from edn.train.data import training_pairs
    from edn.train.loop import epoch_batches, step_memory_format, to_batch
    t = time.perf_counter()
    url, target = (b.dataset, b.target) if b.dataset else make_dataset(workdir, b.frames, b.sizes[0], b.seed)
    made = time.perf_counter() - t
    cfg = train_config(b.nets, "body", 0)
    record = video_record(url, target)
    pairs = training_pairs(url, [(target, record)], cfg.holdout_fraction)
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
    networks (the paper's are far too slow there)."""
    from edn.bench.train_scaling import run_workers
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
    if hi > 1:  # NCCL's bus bandwidth: what a ring all-reduce moves per rank, 2(N-1)/N of the bytes, per second
        ar = runs[hi]["allreduce_G+D_s"]
        bus = total * 2 * (hi - 1) / hi / ar / 1e9
        share = ar / runs[hi]["step_s"]
        fig.update(allreduce_s=ar, bus_GBps=bus, allreduce_share=share)
        rows.append(row(f"scaling: all-reduce of one step's gradients, {hi} workers", ar * 1e3, "ms",
                        f"G {runs[hi]['allreduce_G_s'] * 1e3:.1f} + D {runs[hi]['allreduce_D_s'] * 1e3:.1f} ms "
                        f"apart; bus {bus:.2f} GB/s; {100 * share:.0f}% of the step if not overlapped"))
    fig["ratio"] = runs[hi]["images_per_s"] / runs[lo]["images_per_s"]
    figures["scaling"] = fig
    return key_ratio(f"images/s, {hi} workers / {lo} worker ({b.threads} thread each, {where})", fig["ratio"],
                     f"none ({os.cpu_count()} cores, shared)", None, "scaling section")
