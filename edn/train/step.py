"""One GAN training step (pix2pixHD objective), for either stage: a generator update with the
discriminator frozen, then a discriminator update. Works on bare modules or DDP-wrapped ones.

What differs between stages is what the discriminator and the reconstruction losses see
(`Judged`): the body stage judges (pose t-1, pose t, frame t-1, frame t) with temporal smoothing,
or (pose, frame) frame by frame; the face stage judges (pose crop, face crop).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from edn.models.body import REFERENCE_CHANNELS, BodyGenerator
from edn.models.face import apply_face, crop
from edn.models.losses import FeatureMatchingLoss, LSGANLoss

LOSS_TERMS = ("G_gan", "G_feat", "G_vgg", "G_l1", "D_fake", "D_real")  # every loss a step returns, by name


def body_discriminator_channels(temporal: bool, reference: bool) -> int:
    """What body_judged gives the discriminator: poses and frames (t-1 and t with temporal
    smoothing), and the reference's 9 channels with reference channels."""
    return (12 if temporal else 6) + (REFERENCE_CHANNELS if reference else 0)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


@dataclass
class Judged:
    d_fake: torch.Tensor  # discriminator input: condition and generated images, channels concatenated
    d_real: torch.Tensor  # the same condition with the real images
    fake: torch.Tensor    # generated images for the reconstruction terms (perceptual, L1)
    real: torch.Tensor


def body_judged(G: nn.Module, batch: dict[str, torch.Tensor], temporal: bool) -> Judged:
    """batch: pose_prev, pose, image_prev, image, each (B, 3, H, W) in [-1, 1]; and reference
    (B, 9, H, W) for a generator with reference channels, which the discriminator sees too, as a
    condition: it judges whether the frame is this person in this room; and appearance_prev,
    appearance for a generator with appearance figures (the generator's input only)."""
    ref, app_prev, app = batch.get("reference"), batch.get("appearance_prev"), batch.get("appearance")
    extra = [] if ref is None else [ref]
    if not temporal:
        fake = G(batch["pose"], None, ref, app)
        cond = torch.cat([batch["pose"], *extra], 1)
        return Judged(torch.cat([cond, fake], 1), torch.cat([cond, batch["image"]], 1), fake, batch["image"])
    # Frame t-1 from a blank previous frame, then frame t from the generated t-1, as in the
    # paper; both through G's own forward, so a DDP wrapper's gradient hooks see both calls.
    fake_prev = G(batch["pose_prev"], None, ref, app_prev)
    fake = G(batch["pose"], fake_prev, ref, app)
    cond = torch.cat([batch["pose_prev"], batch["pose"], *extra], 1)
    return Judged(torch.cat([cond, fake_prev, fake], 1), torch.cat([cond, batch["image_prev"], batch["image"]], 1),
                  torch.cat([fake_prev, fake]), torch.cat([batch["image_prev"], batch["image"]]))


def face_judged(body: BodyGenerator, G_face, batch: dict[str, torch.Tensor]) -> Judged:
    """The frozen body generator's frame t, its face refined: (pose crop, face) against (pose crop,
    real face); with batch["reference_face"] (a face generator with a reference), that is part of
    the generator's input and of the discriminator's condition, as a base body's reference is."""
    with torch.no_grad():
        body_out = body.frame_t(batch)
    ref = batch.get("reference_face")
    _, crops = apply_face(G_face, batch["pose"], body_out, batch["face_box"], reference_face=ref)
    real = crop(batch["image"], batch["face_box"])
    cond = torch.cat([crops["pose"], *([] if ref is None else [ref])], 1)
    return Judged(torch.cat([cond, crops["pasted"]], 1), torch.cat([cond, real], 1), crops["pasted"], real)


class GANStep:
    """The generator's terms are named (G_gan, G_feat, G_vgg, G_l1), each with a weight, so every
    term is logged under its name; a term of weight 0 is not computed."""

    def __init__(self, judge: Callable[[dict], Judged], D: nn.Module, opt_G: torch.optim.Optimizer,
                 opt_D: torch.optim.Optimizer, weights: dict[str, float], perceptual: nn.Module | None = None,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext):
        self.judge, self.D, self.opt_G, self.opt_D, self.autocast = judge, D, opt_G, opt_D, autocast
        self.weights = {k: w for k, w in weights.items() if w}
        if "G_vgg" in self.weights and perceptual is None:
            raise ValueError("G_vgg has a weight but no perceptual loss was given")
        self.gan, self.feat, self.l1, self.vgg = LSGANLoss(), FeatureMatchingLoss(), nn.L1Loss(), perceptual

    def _generator_terms(self, j: Judged, pred_fake, pred_real) -> dict[str, torch.Tensor]:
        terms = {"G_gan": lambda: self.gan(pred_fake, True),
                 "G_feat": lambda: self.feat(pred_fake, pred_real),
                 "G_vgg": lambda: self.vgg(j.fake.float(), j.real.float()),
                 "G_l1": lambda: self.l1(j.fake, j.real)}
        return {name: terms[name]() for name in self.weights}

    def __call__(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Returns the detached losses (no host sync here).

        The discriminator runs twice per step, on 3 batches' worth of images: once through the
        (DDP) D on cat(detached fake, real) for D's update, whose real half's features also serve
        G's feature matching (detached: the same D weights, as D has not stepped yet), and once
        through the bare D, frozen, on the fake alone for G's update. D's weights and the fake
        are the same in both, so this is the G-then-D step of pix2pixHD, with no D gradients in
        G's backward and one DDP forward per backward."""
        with self.autocast():
            j = self.judge(batch)
            n = len(j.d_fake)
            d_fake, d_real = _split(self.D(torch.cat([j.d_fake.detach(), j.d_real], 0)), n)
            D = unwrap(self.D)
            D.requires_grad_(False)
            try:
                g_terms = self._generator_terms(j, D(j.d_fake), d_real)
            finally:
                D.requires_grad_(True)
            d_terms = {"D_fake": self.gan(d_fake, False), "D_real": self.gan(d_real, True)}
        self.opt_G.zero_grad(set_to_none=True)
        sum(self.weights[k] * v for k, v in g_terms.items()).backward()
        self.opt_G.step()
        self.opt_D.zero_grad(set_to_none=True)
        (0.5 * sum(d_terms.values())).backward()
        self.opt_D.step()
        return {k: v.detach() for k, v in {**g_terms, **d_terms}.items()}


def _split(pred: list[list[torch.Tensor]], n: int) -> tuple[list, list]:
    """A D output on cat([fake, real]) -> (output on fake, output on real)."""
    return [[f[:n] for f in scale] for scale in pred], [[f[n:] for f in scale] for scale in pred]
