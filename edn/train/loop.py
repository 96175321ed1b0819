"""The Ray Train worker loop, both stages: build, resume, train, log, checkpoint."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import random
import tempfile
import time

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from edn.config import from_dict
from edn.errors import DataError
from edn.models.body import BodyGenerator
from edn.models.face import FaceGenerator, apply_face
from edn.models.networks import LocalEnhancer, MultiscaleDiscriminator, to_model_range
from edn.models.perceptual import VGGPerceptualLoss
from edn.runtime import native_bf16
from edn.train.checkpoint import keep_local, local_checkpoint, restore, write
from edn.train.config import TrainConfig
from edn.train.step import GANStep, body_discriminator_channels, body_judged, face_judged, unwrap


def build(cfg: TrainConfig, device: torch.device, coarse: dict | None = None, init: dict | None = None):
    """The stage's trained generator and discriminator, identical on every rank, and their
    optimizers; `coarse`: a coarser global generator's weights for a local enhancer; `init`: the
    stage's {"G"} weights (and "D", if kept) of the base model a target is fine-tuned from."""
    torch.manual_seed(cfg.seed)
    if cfg.stage == "body":
        G = BodyGenerator(cfg.generator, cfg.temporal)
        D = MultiscaleDiscriminator(dataclasses.replace(
            cfg.discriminator, in_channels=body_discriminator_channels(cfg.temporal, cfg.generator.reference_channels)))
        if coarse is not None:
            G.net.load_global(coarse)
    else:
        G = FaceGenerator(cfg.face_generator)
        D = MultiscaleDiscriminator(dataclasses.replace(
            cfg.face_discriminator, in_channels=cfg.face_generator.condition_channels + 3))
    if init is not None:
        G.load_state_dict(init["G"])
        if "D" in init:
            D.load_state_dict(init["D"])
    G, D = G.to(device), D.to(device)
    G, D = G.to(memory_format=step_memory_format(cfg, device)), D.to(memory_format=step_memory_format(cfg, device))
    betas = (cfg.beta1, cfg.beta2)
    fused = device.type == "cuda"
    held = {id(p) for p in G.net.global_parameters()} if isinstance(getattr(G, "net", None), LocalEnhancer) else set()
    groups = [{"params": [p for p in G.parameters() if id(p) not in held], "name": "G"},
              {"params": [p for p in G.parameters() if id(p) in held], "name": "global"}]
    return (G, D, torch.optim.Adam([g for g in groups if g["params"]], cfg.lr, betas=betas, fused=fused),
            torch.optim.Adam(D.parameters(), cfg.lr, betas=betas, fused=fused))


def step_memory_format(cfg: TrainConfig, device: torch.device) -> torch.memory_format:
    """NHWC on GPU (tensor cores want it); on CPU NCHW, oneDNN's fast path for these convolutions."""
    return torch.channels_last if device.type == "cuda" and cfg.channels_last else torch.contiguous_format


def train_precision(cfg: TrainConfig, device: torch.device) -> tuple[bool, str]:
    """(bf16 autocast, why): on GPU with `cfg.amp`; on CPU only when asked (`cfg.cpu_bf16`: one
    demo trained each way scored alike, docs/training.md) and where the CPU computes bf16 natively."""
    if device.type == "cuda":
        return cfg.amp, "GPU, amp" if cfg.amp else "GPU, amp off"
    if not cfg.cpu_bf16:
        return False, "CPU: fp32 unless cpu_bf16"
    native, why = native_bf16("cpu")
    return native, f"cpu_bf16: {why}"


def make_step(cfg: TrainConfig, G, D, opt_G, opt_D, device: torch.device, body: BodyGenerator | None = None,
              perceptual: nn.Module | None = None, amp: bool | None = None) -> GANStep:
    """The stage's training step as the trainer runs it (also what `edn bench train` times);
    `body` is the frozen body generator of the face stage. `amp`, bf16 autocast; None: the
    trainer's rule (train_precision)."""
    if cfg.stage == "body":
        judge = functools.partial(body_judged, G, temporal=cfg.temporal)
    else:
        judge = functools.partial(face_judged, body, G)
    amp = train_precision(cfg, device)[0] if amp is None else amp
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if amp else contextlib.nullcontext
    return GANStep(judge, D, opt_G, opt_D, cfg.loss_weights(perceptual is not None), perceptual, autocast)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Constant, then linear decay to zero over the last (1 - lr_decay_start) of the steps: a
    function of the step alone, so a resumed run continues the same schedule."""
    start = cfg.lr_decay_start * cfg.steps
    return cfg.lr * min(1.0, (cfg.steps - step) / max(cfg.steps - start, 1))


def epoch_batches(data, cfg: TrainConfig, device: torch.device, references: np.ndarray | None = None,
                  reference_faces: np.ndarray | None = None):
    """One epoch of raw pair batches from a Ray Dataset of compact pairs (or a Ray Train shard of
    one), decoded and drawn in Ray Data's prefetch thread (PairCollate), on the device; with
    `references` (and `reference_faces`), the run's videos' (edn.data.reference), each pair's own.
    On GPU the batches are collated into pinned memory, so their copy to the GPU is asynchronous,
    overlapping the previous step's kernels."""
    from edn.train.collate import PairCollate
    # the epoch's hue turns from the rank's numpy stream, seeded by the run (restored on resume): a
    # run's colours repeat
    collate = PairCollate(cfg.downscale, references, cfg.is_base and cfg.recolour,
                          cfg.generator.draws_appearance, seed=np.random.randint(2**31),
                          reference_faces=reference_faces, lightness=cfg.recolour_lightness)
    return data.iter_torch_batches(batch_size=cfg.batch_size, drop_last=True,
                                   local_shuffle_buffer_size=4 * cfg.batch_size, device=device,
                                   pin_memory=device.type == "cuda", collate_fn=collate)


def to_batch(batch: dict, memory_format: torch.memory_format) -> dict[str, torch.Tensor]:
    """A pair batch (uint8 NHWC, [t-1, t]) -> model tensors in [-1, 1] and the face boxes of frame t."""
    out = {}
    # appearance: a generator's with appearance figures
    for name in [k for k in ("pose", "image", "appearance") if k in batch]:
        out[f"{name}_prev"] = to_model_range(batch[name][:, 0]).contiguous(memory_format=memory_format)
        out[name] = to_model_range(batch[name][:, 1]).contiguous(memory_format=memory_format)
    out["face_box"] = batch["face_box"]
    # a generator with reference channels (a face generator with a reference): each pair's video's (edn.data.reference)
    for name in [k for k in ("reference", "reference_face") if k in batch]:
        out[name] = to_model_range(batch[name]).contiguous(memory_format=memory_format)
    return out


class LossLog:
    """Logs a step's losses to MLflow, and sends them to the driver's progress display, without
    stalling the GPU: `add` starts their copy to the host (non_blocking, into pinned memory) and
    logs them at the next `add` or `flush`, by when the copy has long finished, so the step loop
    never waits for the device."""

    def __init__(self, client, run_id: str, progress=None):
        """`progress`: the driver's queue (edn.train.run.progress_of; in local mode a plain one)."""
        self.client, self.run_id, self.progress, self.pending = client, run_id, progress, None

    def started(self, step: int) -> None:
        """Where this worker group starts (0, or the step a resume restored): in MLflow, so a run's
        restarts can be read back, and for the driver's display, where the ETA counts from."""
        from mlflow.entities import Metric
        self.client.log_batch(self.run_id, [Metric("started_at_step", step, int(time.time() * 1000), step)])
        self.report({"step": step, "start": True})

    def report(self, item: dict) -> None:
        """Progress is a display: a lost queue (its node gone) must never stop training."""
        if self.progress is None:
            return
        try:
            self.progress.put_nowait(item)
        except Exception as e:  # ray.exceptions.RayError and the queue's Full
            logging.getLogger(__name__).warning("training progress no longer reaches the driver (training goes on): "
                                                "%s: %s", type(e).__name__, e)
            self.progress = None

    def add(self, step: int, losses: dict[str, torch.Tensor], extra: dict[str, float], when: float) -> None:
        self.flush()
        host = {k: v.to("cpu", non_blocking=True) for k, v in losses.items()}
        event = None
        if any(v.is_cuda for v in losses.values()):
            event = torch.cuda.Event()
            event.record()
        self.pending = (step, host, extra, int(when * 1000), event)

    def flush(self) -> None:
        if self.pending is None:
            return
        from mlflow.entities import Metric
        step, host, extra, when, event = self.pending
        if event is not None:
            event.synchronize()
        values = {**{k: float(v) for k, v in host.items()}, **extra}
        self.client.log_batch(self.run_id, [Metric(k, v, when, step) for k, v in values.items()])
        self.report({"step": step, **values})
        self.pending = None


def weight_spread(networks, world: int) -> float:
    """Largest difference between ranks of a checksum of every weight: 0 when DDP keeps them identical."""
    sums = torch.stack([torch.stack([p.detach().double().sum() for p in unwrap(n).parameters()]).sum()
                        for n in networks]).cpu()
    if world == 1:
        return 0.0
    gathered = [torch.zeros_like(sums) for _ in range(world)]
    torch.distributed.all_gather_object(gathered, sums)
    stacked = torch.stack(gathered)
    return float((stacked.max(0).values - stacked.min(0).values).max())


def sample_grid(*images: torch.Tensor) -> np.ndarray:
    """The first item of each (B, 3, H, W) tensor side by side, as one uint8 image."""
    row = torch.cat([im[0].float() for im in images], dim=2)
    return ((row.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()


def train_loop_per_worker(config: dict) -> None:
    import ray
    import ray.train
    import ray.train.torch
    from mlflow import MlflowClient

    from edn.registry import load_registered, parse_model_ref

    cfg = from_dict(TrainConfig, config["train"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.torch_threads or max(1, int(cfg.cpus_per_worker)))
    device = ray.train.torch.get_device()
    memory_format = step_memory_format(cfg, device)
    coarse = None
    if cfg.init_global_from:
        name, ref = parse_model_ref(cfg.init_global_from, cfg.registry_name)
        coarse = load_registered(name, ref, config["tracking_uri"]).body.net.state_dict()
    G, D, opt_G, opt_D = build(cfg, device, coarse, ray.get(config["init"]) if config.get("init") else None)
    torch.manual_seed(cfg.seed + 1 + rank)  # after the identical init: each rank its own stream
    np.random.seed(cfg.seed + 1 + rank)
    random.seed(cfg.seed + 1 + rank)
    step = epoch = 0
    local = config.get("local_checkpoint")  # local mode: Ray Train keeps no checkpoint, this folder does
    kept = local and local_checkpoint(local)
    checkpoint = ray.train.Checkpoint.from_directory(kept) if kept else ray.train.get_checkpoint()
    if checkpoint:  # a resumed run: where it stopped, every rank's RNG too
        with checkpoint.as_directory() as d:
            step, epoch = restore(d, rank, device, G, D, opt_G, opt_D, f"{cfg.ray_run_name!r} in {cfg.storage_path}")
    if world > 1:  # every network wrapped on its own: each has its own backward per step
        G, D = DDP(G), DDP(D)
    reference = None
    if cfg.stage == "face":
        reference = load_registered(cfg.registry_name, cfg.body_model, config["tracking_uri"], str(device)).body
        reference.requires_grad_(False)
        reference.to(memory_format=memory_format)
    perceptual = VGGPerceptualLoss.from_weights(cfg.vgg_weights_url or None).to(device) \
        if config["perceptual_available"] and cfg.lambda_vgg else None
    gan_step = make_step(cfg, G, D, opt_G, opt_D, device, reference, perceptual)
    client = MlflowClient(config["tracking_uri"]) if rank == 0 else None
    run_id = config["mlflow_run_id"]
    log = LossLog(client, run_id, config["progress"]) if client else None
    if log:
        log.started(step)
        bf16, why = train_precision(cfg, device)
        client.set_tag(run_id, "edn.train_precision", f"{'bf16' if bf16 else 'fp32'} ({why})")

    shard = ray.train.get_dataset_shard("train")
    references, reference_faces = (ray.get(config[k]) if config.get(k) is not None else None
                                   for k in ("references", "reference_faces"))
    tick, images_since = time.time(), 0
    while step < cfg.steps:
        batches = 0
        for raw in epoch_batches(shard, cfg, device, references, reference_faces):
            batches += 1
            lr = learning_rate(cfg, step)
            for group in (*opt_G.param_groups, *opt_D.param_groups):
                group["lr"] = 0.0 if group.get("name") == "global" and step < cfg.fix_global_steps else lr
            batch = to_batch(raw, memory_format)
            losses = gan_step(batch)
            step += 1
            images_since += cfg.batch_size * world
            if log and (step % cfg.log_every == 0 or step == cfg.steps):  # the last step too: progress ends at 100%
                now = time.time()
                log.add(step, losses, {"images_per_s": images_since / (now - tick), "lr": lr, "epoch": epoch}, now)
                tick, images_since = now, 0
            if client and (step % cfg.image_every == 0 or step == cfg.steps):
                client.log_image(run_id, _samples(cfg, unwrap(G), reference, batch), key="samples", step=step)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                spread = weight_spread((G, D), world)
                metrics = {"step": step, "epoch": epoch, "rank_weight_spread": spread,
                           **{k: float(v) for k, v in losses.items()}}
                if local:
                    keep_local(local, step, epoch, cfg.stage, G, D, opt_G, opt_D)
                    ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(local))
                else:
                    with tempfile.TemporaryDirectory() as tmp:
                        write(tmp, rank, step, epoch, cfg.stage, G, D, opt_G, opt_D)
                        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
            if step >= cfg.steps:
                break
        epoch += 1
        if batches == 0:
            raise DataError(f"{cfg.dataset_url}: target {cfg.target!r} gives no training batch of "
                            f"{cfg.batch_size} frame pairs per worker; "
                            "use a longer video, fewer workers or a smaller batch")
    if log:
        log.flush()


@torch.no_grad()
def _samples(cfg: TrainConfig, G, body, batch) -> np.ndarray:
    """pose | body output | with face GAN (face stage) | real, for the first pair's frame t."""
    first = {k: v[:1] for k, v in batch.items()}
    if cfg.stage == "body":
        return sample_grid(first["pose"], G.frame_t(first), first["image"])
    body_out = body.frame_t(first)
    final, _ = apply_face(G, first["pose"], body_out, first["face_box"], reference_face=first.get("reference_face"))
    return sample_grid(first["pose"], body_out, final, first["image"])
