"""`edn bench train`, scaling: the body step on 1 and N Ray Train workers (DDP, gloo on CPU,
NCCL on GPU), the all-reduce of one step's gradients timed in the same process group, and the
projection to N GPUs.

Each worker group runs `scaling_worker`: edn.train.loop's build and make_step, DDP-wrapped as
the trainer does for more than one worker, on an in-memory synthetic batch (the input pipeline
is measured apart), `warmup` steps then `steps` timed ones. With more than one worker it then
times `torch.distributed.all_reduce` of fp32 buffers the size of G's and of D's gradients (what
DDP reduces each step, in buckets overlapped with the backward) in the group Ray Train set up.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time

import torch

from edn.bench import row

# All-reduce bus bandwidths assumed for the projection (GB/s; what NCCL's all-reduce reaches, not
# the link's nominal rate): stated here, not measured.
LINKS = (("NVLink 4, 8x H100 SXM in a node", 360.0), ("PCIe 4 x16, GPUs in a node without NVLink", 20.0),
         ("100 GbE between nodes", 10.0), ("25 GbE between nodes", 2.5))


def scaling_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch
    from torch.nn.parallel import DistributedDataParallel as DDP

    from edn.bench.train_parts import model_batch, sync, synthetic_pairs
    from edn.config import from_dict
    from edn.train.config import TrainConfig
    from edn.train.loop import build, make_step

    cfg = from_dict(TrainConfig, config["train"])
    world = ray.train.get_context().get_world_size()
    torch.set_num_threads(config["threads"])
    device = ray.train.torch.get_device()
    G, D, opt_G, opt_D = build(cfg, device)
    n_G, n_D = sum(p.numel() for p in G.parameters()), sum(p.numel() for p in D.parameters())
    if world > 1:
        G, D = DDP(G), DDP(D)
    step = make_step(cfg, G, D, opt_G, opt_D, device)
    batch = model_batch(synthetic_pairs(cfg.batch_size, tuple(config["size"]), cfg.seed), cfg, device)
    for _ in range(config["warmup"]):
        step(batch)
    times = []
    for _ in range(config["steps"]):
        sync(device)
        t = time.perf_counter()
        step(batch)
        sync(device)
        times.append(time.perf_counter() - t)
    metrics = {"step_s": statistics.median(times), "step_times": times, "world": world,
               "images_per_s": world * cfg.batch_size / statistics.median(times)}
    if world > 1:
        for name, numel in (("G", n_G), ("D", n_D), ("G+D", n_G + n_D)):
            buf = torch.ones(numel, device=device)
            reps = []
            for _ in range(config["allreduce_reps"] + 1):
                torch.distributed.barrier()
                sync(device)
                t = time.perf_counter()
                torch.distributed.all_reduce(buf)
                sync(device)
                reps.append(time.perf_counter() - t)
            metrics[f"allreduce_{name}_s"] = statistics.median(reps[1:])  # the first sets the connections up
    if ray.train.get_context().get_world_rank():
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:  # Ray Train keeps the metrics of reports with a checkpoint
        with open(os.path.join(tmp, "metrics.json"), "w") as f:
            json.dump(metrics, f)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def run_workers(cfg_dict: dict, workers: int, threads: int, size: tuple[int, int], steps: int, warmup: int,
                use_gpu: bool, allreduce_reps: int = 5) -> dict:
    import ray.train
    from ray.train.torch import TorchTrainer
    with tempfile.TemporaryDirectory(prefix="edn-bench-scaling-") as storage:
        trainer = TorchTrainer(
            scaling_worker,
            train_loop_config={"train": cfg_dict, "threads": threads, "size": list(size), "steps": steps,
                               "warmup": warmup, "allreduce_reps": allreduce_reps},
            scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                                   resources_per_worker={"CPU": threads}),
            run_config=ray.train.RunConfig(name=f"bench-scaling-{workers}-{os.getpid()}", storage_path=storage))
        result = trainer.fit()
        with result.checkpoint.as_directory() as d, open(os.path.join(d, "metrics.json")) as f:
            return json.load(f)


# The GPU projection's compute: the paper's body step at 1024x512, batch 4 per GPU, its FLOPs
# counted, at this fraction of an H100's dense bf16 peak (an assumption, until a GPU run measures it).
ASSUMED_MFU = 0.4
GPU_CASE = {"size": (1024, 512), "batch": 4, "gpu": "H100"}


def projection(compute_s: float, grad_bytes: int, batch: int, measured_bus_gbs: float | None,
               ns: tuple[int, ...] = (1, 2, 8, 64), label: str = "projection") -> tuple[list[dict], dict]:
    """step_N = compute + bytes * 2(N-1)/N / bus bandwidth (ring all-reduce; no overlap with the
    backward assumed, so an upper bound on the step); images/s = N * batch / step_N."""
    links = list(LINKS) + ([("gloo here, measured", measured_bus_gbs)] if measured_bus_gbs else [])
    rows, table = [], {}
    for name, gbs in links:
        per_n = {}
        for n in ns:
            comm = grad_bytes * 2 * (n - 1) / n / (gbs * 1e9)
            per_n[n] = {"step_s": compute_s + comm, "comm_s": comm,
                        "images_per_s": n * batch / (compute_s + comm), "efficiency": compute_s / (compute_s + comm)}
        table[name] = {"bus_GBps": gbs, "per_n": per_n}
        cells = ", ".join(f"N={n}: {v['images_per_s']:.3g} img/s ({100 * v['efficiency']:.0f}%)"
                          for n, v in per_n.items())
        rows.append(row(f"{label}, {name} ({gbs:g} GB/s)", per_n[ns[-1]]["comm_s"] * 1e3, "ms comm",
                        f"at N={ns[-1]}; {cells}"))
    return rows, table
