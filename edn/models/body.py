"""The body generator with the paper's temporal smoothing: frame t is generated from pose t and
the generator's own frame t-1 (zeros before the first frame). One module for training and
rendering, so both feed the previous frame the same way.

Position channels (not in the paper): a pose figure is drawn on black, and pix2pixHD pads by
reflection, so wherever the figure is not, the network's input is the same constant at every
position and it cannot tell one part of the frame from another. A fixed camera's background is a
function of position alone; without knowing the position the generator can only guess it from
where the figure is, and paints a blotchy average (measured: held-out SSIM below that of the mean
training frame). With `position_channels` the input also carries each pixel's x and y in [-1, 1]
(CoordConv, Liu et al. 2018), from which the background is learned as it is. Models registered
without the setting load with it off (edn.registry).

Reference channels (a base model, issue 15): the input also carries a reference of the person and
their room (edn.data.reference: empty scene, one frame, its pose figure), so one network renders
whichever person the reference shows. With `composite` (the default for such a model) the network
draws a picture and its opacity, and the frame is that picture laid over the reference's empty scene:
a fixed camera's room is copied from the scene by construction instead of being learned, which a
network trained on a dozen rooms did not do for a room it had not seen (it painted an average of
its rooms: docs/base-model.md), and the network's work is the person alone. With `appearance` the
input also carries the pose drawn in the reference's colours (edn.data.reference): the colours of the
clothes where each part is to be drawn, not only where it stood in the reference frame."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from edn.models.networks import GeneratorConfig, make_generator

REFERENCE_CHANNELS = 9  # edn.data.reference: empty scene, frame, pose figure (3 RGB pictures)
APPEARANCE_CHANNELS = 3  # the pose figure in the reference's colours


class BodyGenerator(nn.Module):
    def __init__(self, cfg: GeneratorConfig, temporal: bool):
        super().__init__()
        self.temporal, self.positions = temporal, cfg.position_channels
        self.references = cfg.reference_channels
        self.composite = cfg.reference_channels and cfg.composite
        self.appearance = cfg.draws_appearance
        channels = (6 if temporal else 3) + (2 if cfg.position_channels else 0) \
            + (REFERENCE_CHANNELS if cfg.reference_channels else 0) + (APPEARANCE_CHANNELS if self.appearance else 0)
        out = 4 if self.composite else 3  # with composite: RGB and opacity
        self.net = make_generator(dataclasses.replace(cfg, in_channels=channels, out_channels=out))

    @property
    def stride(self) -> int:
        return self.net.stride

    def forward(self, pose: torch.Tensor, prev: torch.Tensor | None = None,
                reference: torch.Tensor | None = None, appearance: torch.Tensor | None = None) -> torch.Tensor:
        """pose, prev: (B, 3, H, W) in [-1, 1]; prev is ignored frame by frame, zeros if None;
        reference: (B or 1, 9, H, W) in [-1, 1], required with reference channels; appearance:
        (B, 3, H, W), pose's appearance figure, required with `appearance`."""
        inputs = [pose]
        if self.temporal:
            inputs.append(torch.zeros_like(pose) if prev is None else prev)
        if self.positions:
            inputs.append(_positions(pose))
        if self.references:
            if reference is None:
                raise ValueError("this generator renders from an appearance reference; none was given")
            inputs.append(reference.expand(len(pose), -1, -1, -1))
        if self.appearance:
            if appearance is None:
                raise ValueError("this generator renders from appearance figures; none was given")
            inputs.append(appearance)
        out = self.net(torch.cat(inputs, 1))
        if not self.composite:
            return out
        # tanh's [-1, 1] -> opacity in [0, 1]; the scene is the reference's first three channels
        opacity = (out[:, 3:] + 1) / 2
        return opacity * out[:, :3] + (1 - opacity) * reference[:, :3]

    def frame_t(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Frame t of a consecutive pair batch (edn.train.loop.to_batch), as in training: from the
        frame generated for t-1 (from a blank previous frame) with temporal smoothing, from pose t
        alone frame by frame."""
        reference = batch.get("reference")
        prev = self(batch["pose_prev"], None, reference, batch.get("appearance_prev")) if self.temporal else None
        return self(batch["pose"], prev, reference, batch.get("appearance"))


def _positions(like: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W): x and y of every pixel, each from -1 to 1 across the frame."""
    b, _, h, w = like.shape
    y, x = torch.meshgrid(torch.linspace(-1, 1, h, device=like.device, dtype=like.dtype),
                          torch.linspace(-1, 1, w, device=like.device, dtype=like.dtype), indexing="ij")
    return torch.stack([x, y]).expand(b, 2, h, w)
