"""The face GAN (paper §Face GAN): networks, the face crop and its seamless paste-back.

After the body generator is trained and frozen, a face generator looks at the square box around
the nose (`edn.pose.face.face_box`) in the pose figure and in the body generator's output and
outputs a residual r; the final face is clamp(G_body(x) + r, -1, 1) in that box, blended back into
the frame with a feathered border. A face discriminator judges (pose crop, face crop) pairs.

Conventions (all images NCHW in [-1, 1]):

* ``boxes``: (B, 4) integer tensor of x0, y0, x1, y1 in pixels, x1/y1 exclusive, as the dataset's
  ``face_box`` column holds them. Every valid box of a batch is a square of one size S (one box
  size per video: 128 px at 512-high frames, scaled with the height) and lies inside the frame.
* ``valid``: (B,) bool tensor; False where the frame has no face box (``face_box`` is null: no
  nose seen). Such rows may hold anything in ``boxes`` (``boxes_to_tensor`` writes -1). When
  ``valid`` is None it is taken as ``(boxes >= 0).all(1)``, so -1 rows alone mark missing boxes.
  Invalid frames pass through ``apply_face`` unchanged (exactly) and their crops are
  zeros; losses on crops must leave them out (``apply_face`` returns ``valid`` for that).
* ``apply_face`` is the one implementation of crop -> residual -> add -> paste, used by the face
  training step and by rendering alike. The networks always see the whole batch (invalid rows
  included, on zero crops) so that every rank of a DDP job runs the same graph.

Design choices:

* ``FaceGenerator`` is edn's ``GlobalGenerator`` (in_channels 6: pose crop + body crop; 9 with
  ``reference``: + the appearance reference's face box, below) reused as is, with its tanh output
  scaled by ``residual_scale`` (2). The reference code (the paper's pix2pixHD fork) uses a global
  generator ending in tanh and adds it unclamped, so the face can leave [-1, 1] and a residual of
  at most 1 cannot turn a black pixel white. Here the residual spans [-2, 2], enough to move any
  pixel of [-1, 1] anywhere in it, yet stays bounded (no blow-ups early in training), and the sum
  is clamped to the valid image range so that the discriminator, the perceptual loss and the
  rendered video all see a real image.
* The clamp is straight-through (forward: clamp; backward: identity) so that a pixel the residual
  pushed past ±1 still gets the gradient that pulls it back; the tanh bound keeps that safe.
* The last convolution is zero-initialised, so at step 0 the residual is exactly 0 and
  ``apply_face`` returns the body output bit for bit: the face stage starts from the frozen body
  generator instead of from noise (as ControlNet-style zero convolutions). Only that last layer
  gets a gradient on the very first step; after it the whole network does.
* The crop need not be a multiple of the generator's stride (180 px at 720-high frames): the
  input is reflect-padded up to one and the output cropped back.
* Paste blends with a separable smoothstep ramp over ``feather`` pixels (default S // 8): weight
  0 on the box's outermost pixel ring (continuous with the untouched frame outside) rising to 1
  at ``feather`` pixels in; the reference code pastes with a hard edge. Paste computes
  ``crop + w * (face - crop)``, so pasting a frame's own crop is exact and gradients reach
  ``faces`` (and ``frames``).
* The face discriminator is ``MultiscaleDiscriminator`` with 6 input channels
  (``face_discriminator_config``; 9 with ``reference``): one scale by default, like the reference's
  single PatchGAN on the face, as the crop is small (32-128 px).
* ``reference`` (a base model's face GAN, and its fine-tuned targets'): the generator and the
  discriminator also see the face box of the video's appearance reference frame
  (edn.data.reference), and the generator outputs an opacity besides the residual: the face is
  the reference's face box laid over the refined body crop where the opacity says (as the body
  generator composites over the empty scene). Both boxes are centred on the nose, so the
  reference's face and hair stand where this frame's should, and taking them is a matter of
  where, not of drawing them through the network's 8x coarser middle. Without it the base drew a
  held-out dancer's head without her hair or eyes, mediapipe read such renders as seen from
  behind, and a face GAN shown the reference face as input alone did not learn to copy it
  (docs/base-model.md). The opacity's bias starts at -4 (1.8%): the stage starts from the body
  generator's face, nearly.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from edn.models.networks import DiscriminatorConfig, GeneratorConfig, GlobalGenerator
from edn.pose.face import boxes_array, face_box_side


@dataclass(frozen=True)
class FaceGeneratorConfig:
    ngf: int = 32  # the reference's global face generator: ngf 64, 3 downsamplings, 5 blocks
    n_downsample: int = 3
    n_blocks: int = 5
    residual_scale: float = 2.0  # residual = residual_scale * tanh(...), in [-2, 2]
    reference: bool = False  # also sees the appearance reference's face box (module docstring)

    @property
    def condition_channels(self) -> int:
        """What the face discriminator sees besides the face: the pose crop, and the reference's face."""
        return 6 if self.reference else 3


class FaceGenerator(nn.Module):
    """cat(pose crop, body-output crop[, reference face]) (B, 6 or 9, S, S) -> residual (B, 3, S, S),
    0 at initialisation[, and the reference face's opacity (B, 1, S, S) in (0, 1)], as (B, 3 or 4, S, S)."""

    def __init__(self, cfg: FaceGeneratorConfig = FaceGeneratorConfig()):
        super().__init__()
        self.cfg = cfg
        self.net = GlobalGenerator(GeneratorConfig(
            # the discriminator's condition and the body's crop; out: the residual, and the opacity
            in_channels=cfg.condition_channels + 3, out_channels=3 + (1 if cfg.reference else 0), ngf=cfg.ngf,
            n_downsample=cfg.n_downsample, n_blocks=cfg.n_blocks))
        last = self.net.model[-2]  # the final 7x7 conv, before the tanh (which forward applies to the residual only)
        assert isinstance(last, nn.Conv2d) and isinstance(self.net.model[-1], nn.Tanh)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        if cfg.reference:
            nn.init.constant_(last.bias[3:], -4.0)  # opacity sigmoid(-4) = 1.8% at the start

    @property
    def stride(self) -> int:
        return self.net.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = -h % self.stride, -w % self.stride
        if ph or pw:
            # reflect needs the pad smaller than the side; replicate has no such limit
            mode = "reflect" if ph < h and pw < w else "replicate"
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode=mode)
        pre = self.net.model[:-1](x)  # before the tanh
        r = torch.cat([self.cfg.residual_scale * torch.tanh(pre[:, :3]), torch.sigmoid(pre[:, 3:])], 1)
        if ph or pw:
            r = r[..., ph // 2:ph // 2 + h, pw // 2:pw // 2 + w]
        return r


def face_discriminator_config(ndf: int = 64, n_layers: int = 3, num_D: int = 1) -> DiscriminatorConfig:
    """For ``MultiscaleDiscriminator``: judges cat(pose crop, face crop), 6 channels (training builds
    it with ``FaceGeneratorConfig.condition_channels`` + 3)."""
    return DiscriminatorConfig(in_channels=6, ndf=ndf, n_layers=n_layers, num_D=num_D)


def boxes_to_tensor(rows: Sequence[Sequence[int] | None]) -> tuple[torch.Tensor, torch.Tensor]:
    """The dataset's nullable ``face_box`` values -> (boxes (B, 4) int64, with -1 rows for None;
    valid (B,) bool)."""
    boxes = torch.from_numpy(boxes_array(rows)).long()
    return boxes, boxes[:, 0] >= 0


def _boxes(boxes: torch.Tensor, valid: torch.Tensor | None, height: int, width: int,
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Checked (boxes with invalid rows replaced by a box at the origin, valid, size S)."""
    boxes = torch.as_tensor(boxes).to(device=device, dtype=torch.int64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (B, 4), got {tuple(boxes.shape)}")
    if valid is None:
        valid = (boxes >= 0).all(1)
    valid = torch.as_tensor(valid).to(device=device, dtype=torch.bool)
    if valid.shape != boxes.shape[:1]:
        raise ValueError(f"valid must be ({boxes.shape[0]},), got {tuple(valid.shape)}")
    good = boxes[valid]
    if len(good):
        sizes = torch.cat([good[:, 2] - good[:, 0], good[:, 3] - good[:, 1]])
        size = int(sizes[0])
        assert bool((sizes == size).all()), f"face boxes of one batch must be squares of one size: {good.tolist()}"
        assert size > 0 and bool((good[:, :2] >= 0).all() and (good[:, 2] <= width).all()
                                 and (good[:, 3] <= height).all()), \
            f"face boxes must lie inside the {width}x{height} frame: {good.tolist()}"
    else:  # no face in the batch: the size face_box would give, so shapes stay the same
        size = face_box_side(width, height)
    origin = torch.tensor([0, 0, size, size], device=device, dtype=torch.int64)
    return torch.where(valid[:, None], boxes, origin), valid, size


def _index(boxes: torch.Tensor, channels: int, size: int) -> tuple[torch.Tensor, ...]:
    """Advanced indices (b, c, y, x) of the boxes, broadcasting to (B, C, S, S)."""
    ar = torch.arange(size, device=boxes.device)
    b = torch.arange(len(boxes), device=boxes.device)[:, None, None, None]
    c = torch.arange(channels, device=boxes.device)[None, :, None, None]
    y = (boxes[:, 1, None] + ar)[:, None, :, None]
    x = (boxes[:, 0, None] + ar)[:, None, None, :]
    return b, c, y, x


def crop(images: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, S, S), the boxes' contents; zeros for invalid rows. Differentiable."""
    boxes, valid, size = _boxes(boxes, valid, images.shape[-2], images.shape[-1], images.device)
    out = images[_index(boxes, images.shape[1], size)]
    return torch.where(valid[:, None, None, None], out, torch.zeros((), dtype=out.dtype, device=out.device))


def default_feather(size: int) -> int:
    return max(1, size // 8)


def feather_mask(size: int, feather: int, device: torch.device | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(S, S) paste weights: 0 on the outermost pixel ring, a smoothstep up to 1 at ``feather``
    pixels from the edge, 1 inside; separable (the product of the row and column ramps).
    ``feather`` 0 is a hard paste (all ones)."""
    if feather < 0 or feather > (size - 1) // 2:
        raise ValueError(f"feather must be in 0..{(size - 1) // 2} for a {size}-pixel box, got {feather}")
    if feather == 0:
        return torch.ones(size, size, device=device, dtype=dtype)
    i = torch.arange(size, device=device, dtype=torch.float64)
    t = (torch.minimum(i, size - 1 - i) / feather).clamp(0, 1)
    ramp = (t * t * (3 - 2 * t)).to(dtype)
    return ramp[:, None] * ramp[None, :]


def _paste(frames: torch.Tensor, under: torch.Tensor, faces: torch.Tensor, boxes: torch.Tensor,
           valid: torch.Tensor, size: int, feather: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames with the blended faces put in the boxes, the blended crops); ``under`` = the
    frames' own crops, ``boxes``/``valid`` already checked."""
    if faces.shape != under.shape:
        raise ValueError(f"faces must be {tuple(under.shape)}, got {tuple(faces.shape)}")
    w = feather_mask(size, default_feather(size) if feather is None else feather, frames.device, frames.dtype)
    blended = torch.where(valid[:, None, None, None], under + w * (faces - under), under)
    return frames.index_put(_index(boxes, frames.shape[1], size), blended), blended


def clamp_straight_through(x: torch.Tensor) -> torch.Tensor:
    """clamp(x, -1, 1) in the forward pass (exactly), identity in the backward pass."""
    return x.clamp(-1, 1).detach() + (x - x.detach())


def apply_face(G_face: nn.Module, pose: torch.Tensor, body_out: torch.Tensor, boxes: torch.Tensor,
               valid: torch.Tensor | None = None, feather: int | None = None,
               reference_face: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Crop -> residual -> add -> paste: the body generator's frames ``body_out`` (B, 3, H, W)
    with the face generator's faces in the boxes of the pose figures ``pose`` (B, 3, H, W).

    Returns (final frames (B, 3, H, W), crops), crops of (B, C, S, S) tensors: ``pose``,
    ``body`` (the body output's crop), ``residual``, ``face`` = clamp(body + residual) (straight-
    through) and ``pasted`` = the final frame's crop (``face`` blended over the feathered border:
    what is rendered, so what the face discriminator and the perceptual loss should judge, against
    ``crop(real, boxes)``), plus ``valid`` (B,) bool. ``body_out`` is not detached here: pass the
    frozen body generator's output (computed under no_grad, or detached). ``reference_face``
    (B, 3, S, S): the appearance reference's face box, for a generator with ``reference``."""
    boxes, valid, size = _boxes(boxes, valid, body_out.shape[-2], body_out.shape[-1], body_out.device)
    zero = torch.zeros((), dtype=body_out.dtype, device=body_out.device)
    keep = valid[:, None, None, None]
    pose_c = torch.where(keep, pose[_index(boxes, pose.shape[1], size)], zero)
    under = body_out[_index(boxes, body_out.shape[1], size)]  # the frames' own crops, for the blend
    body_c = torch.where(keep, under, zero)
    out = G_face(torch.cat([pose_c, body_c, *([] if reference_face is None else [reference_face])], 1))
    residual = out[:, :3]
    face = clamp_straight_through(body_c + residual)
    if reference_face is not None:  # the reference's face laid over it, where the opacity says
        face = face + out[:, 3:] * (reference_face - face)
    final, pasted = _paste(body_out, under, face, boxes, valid, size, feather)
    pasted = torch.where(keep, pasted, zero)
    return final, {"pose": pose_c, "body": body_c, "residual": residual, "face": face, "pasted": pasted,
                   "valid": valid}
