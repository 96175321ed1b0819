"""pix2pixHD objective terms. The training step combines them by name (see edn.train.step)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

DiscOutput = list[list[torch.Tensor]]  # per scale, per layer; last layer is the prediction


class LSGANLoss(nn.Module):
    """Least-squares GAN loss averaged over discriminator scales."""

    def forward(self, outputs: DiscOutput, target_is_real: bool) -> torch.Tensor:
        target = 1.0 if target_is_real else 0.0
        losses = [F.mse_loss(feats[-1], torch.full_like(feats[-1], target)) for feats in outputs]
        return torch.stack(losses).mean()


class FeatureMatchingLoss(nn.Module):
    """L1 between discriminator activations on fake and real, each layer weighted 4/(n_layers+1),
    each scale 1/num_D, as in pix2pixHD."""

    def forward(self, fake: DiscOutput, real: DiscOutput) -> torch.Tensor:
        num_d = len(fake)
        total = fake[0][0].new_zeros(())
        for fake_feats, real_feats in zip(fake, real):
            n_layers = len(fake_feats) - 2  # blocks = first conv + n_layers + prediction
            weight = 4.0 / (n_layers + 1) / num_d
            for f, r in zip(fake_feats[:-1], real_feats[:-1]):
                total = total + weight * F.l1_loss(f, r.detach())
        return total
