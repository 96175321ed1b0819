"""The Ray Train worker loop for the body GAN: build, resume, train, log, checkpoint."""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from edn.config import from_dict
from edn.models.networks import GlobalGenerator, MultiscaleDiscriminator
from edn.train.config import TrainConfig
from edn.train.data import to_model_range
from edn.train.step import BodyGANStep, unwrap

STATE_FILE = "state.pt"


def build(cfg: TrainConfig, device: torch.device):
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    G = GlobalGenerator(cfg.generator).to(device)
    D = MultiscaleDiscriminator(cfg.discriminator).to(device)
    betas = (cfg.beta1, cfg.beta2)
    return G, D, torch.optim.Adam(G.parameters(), cfg.lr, betas=betas), torch.optim.Adam(D.parameters(), cfg.lr, betas=betas)


def save_state(path: str, step: int, G, D, opt_G, opt_D) -> None:
    torch.save({"step": step, "G": G.state_dict(), "D": D.state_dict(),
                "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict()}, os.path.join(path, STATE_FILE))


def load_state(path: str, device: torch.device) -> dict:
    return torch.load(os.path.join(path, STATE_FILE), map_location=device, weights_only=True)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Constant, then linear decay to zero over the last (1 - lr_decay_start) of the steps: a
    function of the step alone, so a resumed run continues the same schedule."""
    start = cfg.lr_decay_start * cfg.steps
    return cfg.lr * min(1.0, (cfg.steps - step) / max(cfg.steps - start, 1))


def sample_grid(pose: torch.Tensor, fake: torch.Tensor, real: torch.Tensor) -> np.ndarray:
    """pose | output | real for the first item, as one uint8 image."""
    row = torch.cat([pose[0], fake[0], real[0]], dim=2)
    return ((row.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def train_loop_per_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    cfg = from_dict(TrainConfig, config["train"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.torch_threads or max(1, int(cfg.cpus_per_worker)))
    device = ray.train.torch.get_device()
    G, D, opt_G, opt_D = build(cfg, device)
    step = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = load_state(d, device)
        G.load_state_dict(state["G"]), D.load_state_dict(state["D"])
        opt_G.load_state_dict(state["opt_G"]), opt_D.load_state_dict(state["opt_D"])
        step = state["step"]
    if world > 1:  # G and D wrapped separately: each has its own backward per step
        G, D = DDP(G), DDP(D)
    gan_step = BodyGANStep(G, D, opt_G, opt_D, cfg.loss_weights)
    client = MlflowClient(config["tracking_uri"]) if rank == 0 else None
    run_id = config["mlflow_run_id"]

    shard = ray.train.get_dataset_shard("train")
    tick, images_since = time.time(), 0
    while step < cfg.steps:
        batches = 0
        for batch in shard.iter_torch_batches(batch_size=cfg.batch_size, drop_last=True,
                                              local_shuffle_buffer_size=4 * cfg.batch_size, device=device):
            batches += 1
            lr = learning_rate(cfg, step)
            for group in (*opt_G.param_groups, *opt_D.param_groups):
                group["lr"] = lr
            pose = to_model_range(batch["pose"][:, 1])   # frame t of each (t-1, t) pair
            real = to_model_range(batch["image"][:, 1])
            losses = gan_step(pose, real)
            step += 1
            images_since += len(pose) * world
            if client and step % cfg.log_every == 0:
                now = time.time()
                values = {k: float(v) for k, v in losses.items()}
                values["images_per_s"] = images_since / (now - tick)
                values["lr"] = lr
                ms = int(now * 1000)
                client.log_batch(run_id, [Metric(k, v, ms, step) for k, v in values.items()])
                tick, images_since = now, 0
            if client and (step % cfg.image_every == 0 or step == cfg.steps):
                with torch.no_grad():
                    client.log_image(run_id, sample_grid(pose, unwrap(G)(pose[:1]), real), key="samples", step=step)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                metrics = {"step": step, **{k: float(v) for k, v in losses.items()}}
                with tempfile.TemporaryDirectory() as tmp:
                    if rank == 0:
                        save_state(tmp, step, unwrap(G), unwrap(D), opt_G, opt_D)
                    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None)
            if step >= cfg.steps:
                break
        if batches == 0:
            raise RuntimeError(f"{cfg.dataset_url}: target {cfg.target!r} gives no training batch of "
                               f"{cfg.batch_size} frame pairs per worker; use a longer video, fewer workers or a smaller batch")
