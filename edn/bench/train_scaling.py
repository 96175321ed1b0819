"""`edn bench train`, scaling: the body step on 1 and N Ray Train workers (DDP, gloo on CPU,
NCCL on GPU), and the all-reduce of one step's gradients timed in the same process group.

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
