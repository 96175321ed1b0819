"""pix2pixHD networks: the global generator and multi-scale patch discriminators.

Plain nn.Modules; everything Ray or MLflow lives in edn.train.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn


def _norm(channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels, affine=False)


class ResnetBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


@dataclass(frozen=True)
class GeneratorConfig:
    in_channels: int = 3  # pose figure (3); +3 with temporal smoothing (previous frame)
    out_channels: int = 3
    ngf: int = 64         # of the finest network: with local enhancers, the global one has ngf * 2**n
    n_downsample: int = 4
    n_blocks: int = 9
    n_local_enhancers: int = 0  # pix2pixHD's local enhancer for high resolution (1 for 1024x512)
    n_blocks_local: int = 3
    # body generator: two more input channels holding each pixel's x and y (edn.models.body)
    position_channels: bool = True
    # body generator: nine more holding the video's appearance reference (edn.data.reference):
    # on for a base model trained on many videos and for a target fine-tuned from one; set by the run
    reference_channels: bool = False
    # with reference channels: a fourth output channel is an opacity, and the frame is the generated
    # picture laid over the reference's empty scene by it (edn.models.body); models registered
    # before it existed load with it off
    composite: bool = True
    # with reference channels: three more holding the pose drawn in the reference's colours
    # (edn.data.reference, appearance figures); off unless asked, as in models registered before it
    appearance: bool = False

    @property
    def draws_appearance(self) -> bool:
        """Whether the generator takes appearance figures: asked for, and with reference channels."""
        return self.reference_channels and self.appearance


class GlobalGenerator(nn.Module):
    """Conv front end, strided downsampling, residual blocks, transposed-conv upsampling, tanh."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        ngf = cfg.ngf
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3), nn.Conv2d(cfg.in_channels, ngf, 7), _norm(ngf), nn.ReLU(True)]
        for i in range(cfg.n_downsample):
            c = ngf * 2**i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), _norm(2 * c), nn.ReLU(True)]
        c = ngf * 2**cfg.n_downsample
        layers += [ResnetBlock(c) for _ in range(cfg.n_blocks)]
        for i in range(cfg.n_downsample):
            c = ngf * 2 ** (cfg.n_downsample - i)
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1),
                       _norm(c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, cfg.out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    @property
    def stride(self) -> int:
        """Input height and width must be multiples of this."""
        return 2**self.cfg.n_downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LocalEnhancer(nn.Module):
    """pix2pixHD's coarse-to-fine generator: the global generator (without its output layers) on
    the input at 1/2**n resolution, then n enhancers, each adding the coarser features to its own
    downsampled features and upsampling the sum. Its `global_net` has the same layer names as a
    GlobalGenerator of ngf * 2**n, so a global generator trained at the lower resolution loads
    into it (`load_global`)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        n = cfg.n_local_enhancers
        self.global_net = GlobalGenerator(dataclasses.replace(cfg, ngf=cfg.ngf * 2**n, n_local_enhancers=0))
        self.global_net.model = self.global_net.model[:-3]  # features, not an image
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        for i in range(1, n + 1):
            c = cfg.ngf * 2 ** (n - i)
            self.down.append(nn.Sequential(
                nn.ReflectionPad2d(3), nn.Conv2d(cfg.in_channels, c, 7), _norm(c), nn.ReLU(True),
                nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), _norm(2 * c), nn.ReLU(True)))
            up = [ResnetBlock(2 * c) for _ in range(cfg.n_blocks_local)]
            up += [nn.ConvTranspose2d(2 * c, c, 3, stride=2, padding=1, output_padding=1), _norm(c), nn.ReLU(True)]
            if i == n:
                up += [nn.ReflectionPad2d(3), nn.Conv2d(cfg.ngf, cfg.out_channels, 7), nn.Tanh()]
            self.up.append(nn.Sequential(*up))
        self.pool = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    @property
    def stride(self) -> int:
        return 2 ** (self.cfg.n_downsample + self.cfg.n_local_enhancers)

    def global_parameters(self) -> list[nn.Parameter]:
        return list(self.global_net.parameters())

    def load_global(self, state: dict[str, torch.Tensor]) -> None:
        """Weights of a GlobalGenerator trained at the coarser resolution (its output layers dropped)."""
        kept = {k: v for k, v in state.items() if int(k.split(".")[1]) < len(self.global_net.model)}
        self.global_net.load_state_dict(kept)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = [x]
        for _ in range(self.cfg.n_local_enhancers):
            inputs.append(self.pool(inputs[-1]))
        out = self.global_net(inputs[-1])
        for i, (down, up) in enumerate(zip(self.down, self.up)):
            out = up(down(inputs[self.cfg.n_local_enhancers - 1 - i]) + out)
        return out


def make_generator(cfg: GeneratorConfig) -> nn.Module:
    return LocalEnhancer(cfg) if cfg.n_local_enhancers else GlobalGenerator(cfg)


@dataclass(frozen=True)
class DiscriminatorConfig:
    in_channels: int = 6  # condition (pose) + image
    ndf: int = 64
    n_layers: int = 3
    num_D: int = 2


class NLayerDiscriminator(nn.Module):
    """PatchGAN that returns every layer's activations (the last is the patch prediction)."""

    def __init__(self, in_channels: int, ndf: int, n_layers: int):
        super().__init__()
        k, p = 4, 2
        nf = ndf
        blocks = [[nn.Conv2d(in_channels, nf, k, stride=2, padding=p), nn.LeakyReLU(0.2, True)]]
        for n in range(1, n_layers + 1):
            prev, nf = nf, min(nf * 2, 512)
            stride = 2 if n < n_layers else 1
            blocks.append([nn.Conv2d(prev, nf, k, stride=stride, padding=p), _norm(nf), nn.LeakyReLU(0.2, True)])
        blocks.append([nn.Conv2d(nf, 1, k, stride=1, padding=p)])
        self.blocks = nn.ModuleList(nn.Sequential(*b) for b in blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats


class MultiscaleDiscriminator(nn.Module):
    """num_D PatchGANs on the input at full, 1/2, 1/4 ... resolution."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        self.cfg = cfg
        self.scales = nn.ModuleList(
            NLayerDiscriminator(cfg.in_channels, cfg.ndf, cfg.n_layers) for _ in range(cfg.num_D))
        self.down = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for i, d in enumerate(self.scales):
            if i:
                x = self.down(x)
            out.append(d(x))
        return out


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float in [-1, 1], what every network here takes and gives."""
    return images.movedim(-1, -3).float().div_(127.5).sub_(1.0)
