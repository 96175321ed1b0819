"""`edn bench train`, its parts: the plain reference step, the two sides of a stage at a size,
synthetic batches, interleaved timing and FLOP counting."""
from __future__ import annotations

import copy
import dataclasses
import functools
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from edn.models.body import BodyGenerator
from edn.models.face import FaceGeneratorConfig, face_discriminator_config
from edn.models.losses import FeatureMatchingLoss, LSGANLoss
from edn.models.networks import DiscriminatorConfig, GeneratorConfig
from edn.pose.face import face_box_side
from edn.train.config import TrainConfig
from edn.train.loop import build, make_step, step_memory_format, to_batch
from edn.train.step import GANStep, body_judged, face_judged

BATCH = {"cpu": {256: 4, 512: 2, 1024: 1}, "cuda": {256: 16, 512: 8, 1024: 4}}  # by frame width

# Network sizes: "demo" is what `make demo` trains on 2 CPU cores, "paper" TrainConfig's defaults
# (pix2pixHD's global generator, ngf 64, 4 downsamplings, 9 blocks). No VGG19 term on either side
# (its weights are not on the development machine); L1 (weight 10) as the demo uses.
NETS = {
    "demo": {"generator": GeneratorConfig(ngf=16, n_downsample=3, n_blocks=4),
             "discriminator": DiscriminatorConfig(ndf=32, n_layers=3, num_D=2),
             "face_generator": FaceGeneratorConfig(ngf=16, n_downsample=2, n_blocks=3),
             "face_discriminator": face_discriminator_config(ndf=32, n_layers=2)},
    "paper": {},
}


def train_config(nets: str, stage: str, batch: int) -> TrainConfig:
    return TrainConfig(stage=stage, temporal=True, batch_size=batch, lambda_vgg=0.0, lambda_l1=10.0, **NETS[nets])


class PlainStep:
    """The reference edn's step is measured against: pix2pixHD's training loop written plainly
    (its model's forward computes every loss, then train.py steps G, then D): the discriminator
    runs three times (on the detached fake, the real, the fake), G's backward also fills D's
    gradients (thrown away by D's zero_grad), fp32, NCHW, for-loop Adam. Same networks, inputs and
    objective as edn's step, and none of its code, so that any change to edn's step is measured
    against a fixed baseline."""

    def __init__(self, judge, D, opt_G, opt_D, weights: dict[str, float]):
        if set(weights) - {"G_gan", "G_feat", "G_l1"}:
            raise ValueError(f"the plain step has G_gan, G_feat and G_l1, not {sorted(weights)}")
        self.judge, self.D, self.opt_G, self.opt_D, self.w = judge, D, opt_G, opt_D, weights
        self.gan, self.feat = LSGANLoss(), FeatureMatchingLoss()

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        j = self.judge(batch)
        pred_fake_pool, pred_real, pred_fake = self.D(j.d_fake.detach()), self.D(j.d_real), self.D(j.d_fake)
        loss_D = 0.5 * (self.gan(pred_fake_pool, False) + self.gan(pred_real, True))
        loss_G = (self.w.get("G_gan", 0) * self.gan(pred_fake, True)
                  + self.w.get("G_feat", 0) * self.feat(pred_fake, pred_real)
                  + self.w.get("G_l1", 0) * F.l1_loss(j.fake, j.real))
        self.opt_G.zero_grad()
        loss_G.backward()
        self.opt_G.step()
        self.opt_D.zero_grad()
        loss_D.backward()
        self.opt_D.step()
        return {"G": loss_G.detach(), "D": loss_D.detach()}


def frozen_body(cfg: TrainConfig, device: torch.device) -> BodyGenerator:
    """The face stage's frozen body generator (random weights: only its cost matters here)."""
    torch.manual_seed(cfg.seed + 7)
    return BodyGenerator(cfg.generator, cfg.temporal).to(device).requires_grad_(False)


def plain_side(cfg: TrainConfig, device: torch.device, body: BodyGenerator | None = None) -> PlainStep:
    G, D, _, _ = build(dataclasses.replace(cfg, channels_last=False), device)
    judge = functools.partial(body_judged, G, temporal=cfg.temporal) if cfg.stage == "body" \
        else functools.partial(face_judged, body, G)
    betas = (cfg.beta1, cfg.beta2)
    return PlainStep(judge, D, torch.optim.Adam(G.parameters(), cfg.lr, betas=betas, foreach=False),
                     torch.optim.Adam(D.parameters(), cfg.lr, betas=betas, foreach=False),
                     {k: v for k, v in cfg.loss_weights(False).items() if v})


def optimized_side(cfg: TrainConfig, device: torch.device, body: BodyGenerator | None = None,
                   compile_networks: bool = False, fused: bool | None = None,
                   compile_backend: str = "inductor", amp: bool | None = None) -> GANStep:
    """edn's step as the trainer builds it (edn.train.loop.build + make_step); with
    `compile_networks`, G and D through torch.compile (a variant, to see whether it pays); with
    `fused`, Adam's fused kernel on or off instead of build's choice (on on GPU), a variant too;
    `amp`, bf16 autocast on or off instead of the trainer's rule (make_step)."""
    G, D, opt_G, opt_D = build(cfg, device)
    if fused is not None:  # build's parameter groups and settings, only the kernel changed
        opt_G, opt_D = (torch.optim.Adam([{**g, "fused": fused} for g in o.param_groups]) for o in (opt_G, opt_D))
    if body is not None:
        body = copy.deepcopy(body).to(memory_format=step_memory_format(cfg, device))
    if compile_networks:
        G, D = torch.compile(G, backend=compile_backend), torch.compile(D, backend=compile_backend)
    return make_step(cfg, G, D, opt_G, opt_D, device, body, amp=amp)


def phase_profile(step: GANStep, batch: dict[str, torch.Tensor], device: torch.device,
                  steps: int = 2) -> dict[str, float]:
    """Seconds per step in each phase of edn's step, from hooks on D's forwards and on the
    optimizers' steps (the device synced at each, so only for this breakdown): G forward (the
    judge: both frames, or the frozen body and the face crops), D forwards (both), G's losses and
    backward (through the frozen D), G's Adam, D's backward, D's Adam. `step` not DDP-wrapped."""
    marks: list[tuple[str, float]] = []

    def mark(name):
        def hook(*_):
            sync(device)
            marks.append((name, time.perf_counter()))
        return hook

    opt_G, opt_D = step.opt_G, step.opt_D
    handles = [step.D.register_forward_pre_hook(mark("D>")), step.D.register_forward_hook(mark("D<")),
               opt_G.register_step_pre_hook(mark("oG>")), opt_G.register_step_post_hook(mark("oG<")),
               opt_D.register_step_pre_hook(mark("oD>")), opt_D.register_step_post_hook(mark("oD<"))]
    phases = dict.fromkeys(("G forward", "D forwards", "G losses + backward", "G Adam", "D backward", "D Adam"), 0.0)
    try:
        for _ in range(steps):
            marks.clear()
            sync(device)
            marks.append(("start", time.perf_counter()))
            step(batch)
            t = dict(marks)  # the last mark of each name
            d_in = [m for n, m in marks if n == "D>"]
            d_out = [m for n, m in marks if n == "D<"]
            phases["G forward"] += d_in[0] - t["start"]
            phases["D forwards"] += sum(b - a for a, b in zip(d_in, d_out))
            phases["G losses + backward"] += t["oG>"] - d_out[-1]
            phases["G Adam"] += t["oG<"] - t["oG>"]
            phases["D backward"] += t["oD>"] - t["oG<"]
            phases["D Adam"] += t["oD<"] - t["oD>"]
    finally:
        for h in handles:
            h.remove()
    return {k: v / steps for k, v in phases.items()}


def grad_bytes(cfg: TrainConfig) -> dict[str, int]:
    """Bytes of fp32 gradients DDP all-reduces per step: every trained parameter of G and of D."""
    with torch.device("meta"):  # shapes only: the paper's G alone is 188 M parameters
        G, D, _, _ = build(cfg, torch.device("meta"))
    return {"G": 4 * sum(p.numel() for p in G.parameters()), "D": 4 * sum(p.numel() for p in D.parameters())}


def synthetic_pairs(batch: int, size: tuple[int, int], seed: int = 0) -> dict[str, torch.Tensor]:
    """A raw pair batch as the trainer's data gives it: pose figures and frames (B, 2, H, W, 3)
    uint8, face boxes (B, 4) of the size ingest computes, near the top centre."""
    w, h = size
    rng = np.random.default_rng(seed)
    s = face_box_side(w, h)
    box = [(w - s) // 2, min(h // 8, h - s), (w - s) // 2 + s, min(h // 8, h - s) + s]
    return {"pose": torch.from_numpy(rng.integers(0, 256, (batch, 2, h, w, 3), np.uint8)),
            "image": torch.from_numpy(rng.integers(0, 256, (batch, 2, h, w, 3), np.uint8)),
            "face_box": torch.tensor([box] * batch, dtype=torch.int32)}


def model_batch(raw: dict[str, torch.Tensor], cfg: TrainConfig, device: torch.device) -> dict[str, torch.Tensor]:
    return to_batch({k: v.to(device) for k, v in raw.items()}, step_memory_format(cfg, device))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(sides: dict[str, Callable[[], object]], rounds: int, steps: int, device: torch.device,
                warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per step of each side, one figure per round. The sides take turns, in ABBA order
    (A, B, B, A, A, B, ...), so that a busy moment of a shared machine hits both alike."""
    for fn in sides.values():
        for _ in range(warmup):
            fn()
    sync(device)
    names, times = list(sides), {name: [] for name in sides}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            t = time.perf_counter()
            for _ in range(steps):
                sides[name]()
            sync(device)
            times[name].append((time.perf_counter() - t) / steps)
    return times


def step_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call (forward and backward; matmuls and convolutions, as FlopCounterMode counts)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()
