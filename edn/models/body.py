"""The body generator with the paper's temporal smoothing: frame t is generated from pose t and
the generator's own frame t-1 (zeros before the first frame). One module for training and
rendering, so both feed the previous frame the same way."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from edn.models.networks import GeneratorConfig, make_generator


class BodyGenerator(nn.Module):
    def __init__(self, cfg: GeneratorConfig, temporal: bool):
        super().__init__()
        self.temporal = temporal
        self.net = make_generator(dataclasses.replace(cfg, in_channels=6 if temporal else 3))

    @property
    def stride(self) -> int:
        return self.net.stride

    def forward(self, pose: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
        """pose, prev: (B, 3, H, W) in [-1, 1]; prev is ignored frame by frame, zeros if None."""
        if not self.temporal:
            return self.net(pose)
        return self.net(torch.cat([pose, torch.zeros_like(pose) if prev is None else prev], 1))

    def frame_t(self, pose_prev: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Frame t of a consecutive pair, as in training: from the frame generated for t-1 (from
        a blank previous frame) with temporal smoothing, from pose t alone frame by frame."""
        return self(pose, self(pose_prev) if self.temporal else None)

    @torch.no_grad()
    def sequence(self, poses: torch.Tensor, prev: torch.Tensor | None = None) -> torch.Tensor:
        """Render (N, 3, H, W) consecutive poses, each frame fed back into the next; `prev` is
        the frame before the first (None: the start of a video). Frame by frame, one batch."""
        if not self.temporal:
            return self(poses)
        out = []
        for pose in poses:
            prev = self(pose[None], prev)
            out.append(prev)
        return torch.cat(out) if out else poses.new_zeros((0, 3, *poses.shape[2:]))
