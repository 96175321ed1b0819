"""pix2pixHD's VGG19 perceptual loss, with ImageNet weights loaded from a file: never a random VGG.

The weights are torchvision's ImageNet VGG19 (`vgg19-dcbb9e9d.pth`), found by edn.weights: a URL
given by the caller (any fsspec URL) or torchvision's own cache. Nothing is downloaded here. When neither holds them,
`load_vgg19_features` raises `PerceptualWeightsMissing`; whether training goes on without the
perceptual loss is the trainer's decision (`perceptual_status` tells it, and what to log).

`VGGPerceptualLoss` is a plain, frozen nn.Module: keep it beside the generator, not inside it, so
that it is neither optimized, nor checkpointed, nor wrapped in DDP with the generator.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edn.errors import WeightsError
from edn.weights import PretrainedWeights

# pix2pixHD (models/networks.py, Vgg19/VGGLoss): relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
VGG_SLICES = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))
LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)

# Keys of a full torchvision VGG19 state_dict besides `features.*`; they are not used here.
_CLASSIFIER_KEYS = frozenset(f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias"))

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PerceptualWeightsMissing(WeightsError, FileNotFoundError):
    """No VGG19 weights where they were looked for; the message says where, and how to supply them."""


class PerceptualWeightsInvalid(WeightsError, RuntimeError):
    """The VGG19 weights file exists but is not a (torchvision VGG19) state_dict; names the file."""


# torchvision's VGG19_Weights.IMAGENET1K_V1.url, written out: importing torchvision.models costs a
# training worker ~1.6 s of CPU at start (it imports torch._dynamo), paid only where VGG19 is built
VGG19 = PretrainedWeights("VGG19 weights for the perceptual loss",
                          "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", "vgg_weights_url",
                          PerceptualWeightsMissing, PerceptualWeightsInvalid)


def perceptual_status(weights_url: str | None = None) -> dict:
    """Whether the perceptual loss can run, for the trainer to report and log at start.

    {"available": bool, "source": the URL or cache path looked at, "reason": str}. Only checks that
    the file exists (no read of ~550 MB); a corrupt file is reported by `load_vgg19_features`.
    """
    return VGG19.status(weights_url)


def _vgg19_features() -> nn.Sequential:
    """torchvision's VGG19 `features` (config "E", no batch norm), without the 120M-parameter
    classifier that the loss never uses. Indices and parameter names are torchvision's."""
    from torchvision.models.vgg import cfgs, make_layers
    return make_layers(cfgs["E"], batch_norm=False)


def load_vgg19_features(weights_url: str | None = None) -> nn.Sequential:
    """torchvision's VGG19 `features` with ImageNet weights, frozen and in eval mode.

    `weights_url`: any fsspec URL of a state_dict as torchvision saves it (`vgg19-dcbb9e9d.pth`:
    `features.*` and `classifier.*`), or one of `features.*` only. Without it, torchvision's cache
    (`VGG19.cache_path()`). Raises PerceptualWeightsMissing when there is no file, and
    PerceptualWeightsInvalid, naming the file, when it is not such a state_dict (strict loading).
    """
    url, state = VGG19.read_state(weights_url)
    features_state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    unexpected = sorted(k for k in state if not k.startswith("features.") and k not in _CLASSIFIER_KEYS)
    if unexpected or not features_state:
        raise PerceptualWeightsInvalid(
            f"VGG19 weights file {url} is not a torchvision VGG19 state_dict: "
            + (f"unexpected keys {unexpected[:8]}" if unexpected else "no features.* keys"))
    features = _vgg19_features()
    try:
        features.load_state_dict(features_state, strict=True)
    except RuntimeError as exc:
        raise PerceptualWeightsInvalid(
            f"VGG19 weights file {url} does not match torchvision's VGG19 features: {exc}") from exc
    features.requires_grad_(False)
    return features.eval()


class VGGPerceptualLoss(nn.Module):
    """pix2pixHD's VGGLoss: sum over relu1_1..relu5_1 of w_i * L1(vgg_i(fake), vgg_i(real)),
    w = 1/32, 1/16, 1/8, 1/4, 1; the real image's features carry no gradient.

    Inputs are images in [-1, 1] (the generator's tanh range). pix2pixHD feeds them to VGG19 as
    they are, without ImageNet normalisation; torchvision's weights were trained on ImageNet-
    normalised [0, 1] RGB, so here they are mapped to (x + 1) / 2, then (x - mean) / std with
    ImageNet's mean and std, which is the input those weights expect. (The loss values therefore
    differ from pix2pixHD's for the same images.)

    Frozen: no parameter requires grad and the module stays in eval mode even under .train().
    Hold it outside the generator (not in its optimizer, checkpoint or DDP wrapper).
    """

    def __init__(self, features: nn.Module):
        super().__init__()
        layers = list(features.children())
        if len(layers) < VGG_SLICES[-1][1]:
            raise ValueError(f"VGG19 features need at least {VGG_SLICES[-1][1]} layers, got {len(layers)}")
        self.slices = nn.ModuleList(nn.Sequential(*layers[a:b]) for a, b in VGG_SLICES)
        self.layer_weights = LAYER_WEIGHTS
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_weights(cls, weights_url: str | None = None) -> VGGPerceptualLoss:
        return cls(load_vgg19_features(weights_url))

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        return super().train(False)  # always frozen

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] RGB -> ImageNet-normalised RGB."""
        return ((x + 1) / 2 - self.mean) / self.std

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = self.normalize(x)
        out = []
        for s in self.slices:
            h = s(h)
            out.append(h)
        return out

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            real_feats = self.features(real)
        fake_feats = self.features(fake)
        total = fake.new_zeros(())
        for w, f, r in zip(self.layer_weights, fake_feats, real_feats):
            total = total + w * F.l1_loss(f, r.detach())
        return total
