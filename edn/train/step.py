"""One body-GAN training step (pix2pixHD objective): a discriminator update, then a generator
update with the discriminator frozen. Works on bare modules or DDP-wrapped ones."""
from __future__ import annotations

import torch
from torch import nn

from edn.models.losses import FeatureMatchingLoss, LSGANLoss


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


class BodyGANStep:
    """The generator's terms are named (G_gan, G_feat, G_l1), each with a weight, so every term
    is logged under its name; a term of weight 0 is not computed."""

    def __init__(self, G: nn.Module, D: nn.Module, opt_G: torch.optim.Optimizer,
                 opt_D: torch.optim.Optimizer, weights: dict[str, float]):
        self.G, self.D, self.opt_G, self.opt_D = G, D, opt_G, opt_D
        self.weights = {k: w for k, w in weights.items() if w}
        self.gan, self.feat, self.l1 = LSGANLoss(), FeatureMatchingLoss(), nn.L1Loss()

    def _generator_terms(self, fake, real, pred_fake, pred_real) -> dict[str, torch.Tensor]:
        terms = {"G_gan": lambda: self.gan(pred_fake, True),
                 "G_feat": lambda: self.feat(pred_fake, pred_real),
                 "G_l1": lambda: self.l1(fake, real)}
        return {name: terms[name]() for name in self.weights}

    def __call__(self, pose: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        """pose, real: (B, 3, H, W) in [-1, 1]. Returns detached losses (no host sync here)."""
        fake = self.G(pose)
        fake_in, real_in = torch.cat([pose, fake], 1), torch.cat([pose, real], 1)

        # G step through the bare D with its parameters frozen: no D gradients, and no DDP
        # reduction for D in this backward. Fake and real share one D forward.
        D = unwrap(self.D)
        D.requires_grad_(False)
        try:
            pred_fake, pred_real = _split(D(torch.cat([fake_in, real_in], 0)), len(pose))
            g_terms = self._generator_terms(fake, real, pred_fake, pred_real)
            self.opt_G.zero_grad(set_to_none=True)
            sum(self.weights[k] * v for k, v in g_terms.items()).backward()
            self.opt_G.step()
        finally:
            D.requires_grad_(True)

        # D step on the same fake, detached: one DDP forward per backward.
        pred_fake, pred_real = _split(self.D(torch.cat([fake_in.detach(), real_in], 0)), len(pose))
        d_terms = {"D_fake": self.gan(pred_fake, False), "D_real": self.gan(pred_real, True)}
        self.opt_D.zero_grad(set_to_none=True)
        (0.5 * sum(d_terms.values())).backward()
        self.opt_D.step()
        return {k: v.detach() for k, v in {**g_terms, **d_terms}.items()}


def _split(pred: list[list[torch.Tensor]], n: int) -> tuple[list, list]:
    """A D output on cat([fake, real]) -> (output on fake, output on real)."""
    return [[f[:n] for f in scale] for scale in pred], [[f[n:] for f in scale] for scale in pred]
