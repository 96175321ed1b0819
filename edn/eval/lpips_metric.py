"""LPIPS (Zhang et al. 2018) with the `lpips` package and its real pretrained parts, or not at all.

LPIPS has two parts. The linear layers ship inside the `lpips` wheel (`lpips/weights/v0.1/<net>.pth`)
and `lpips.LPIPS(pretrained=True)` loads them. The backbone is torchvision's ImageNet network
(AlexNet for net="alex"), which `lpips` would fetch from the internet through torchvision. Here it
is built with `pnet_rand=True` (torchvision's architecture, random weights, no download) and its
weights are then loaded from a file (found by edn.weights), strictly: torchvision's cache
(`torch.hub.get_dir()/checkpoints/<file name from torchvision's weights URL>`) or a caller-given
fsspec URL (local path, gs://, memory://). Without that file the metric is *unavailable* (the
exception and `lpips_status` say where it looked and how to supply it): an LPIPS computed from a
random backbone would be a number without meaning, so it is never produced.
"""
from __future__ import annotations

import os
import warnings

import lpips
import numpy as np
import torch
from torchvision.models import AlexNet_Weights, SqueezeNet1_1_Weights, VGG16_Weights

from edn.errors import ConfigError, WeightsError
from edn.weights import PretrainedWeights

# lpips' net name -> the torchvision weights its backbone was trained with (what lpips downloads).
BACKBONE_WEIGHTS = {"alex": AlexNet_Weights.IMAGENET1K_V1, "vgg": VGG16_Weights.IMAGENET1K_V1,
                    "squeeze": SqueezeNet1_1_Weights.IMAGENET1K_V1}


class LpipsUnavailable(WeightsError, RuntimeError):
    """LPIPS cannot be computed; the message is the reason to report (where, why, how to fix)."""


class LpipsWeightsMissing(LpipsUnavailable, FileNotFoundError):
    """No backbone weights file where it was looked for."""


class LpipsWeightsInvalid(LpipsUnavailable):
    """The weights file exists but is not the backbone's torchvision state_dict; names the file."""


def backbone(net: str = "alex") -> PretrainedWeights:
    """Where LPIPS' `net` backbone's weights are found (edn.weights)."""
    return PretrainedWeights(f"LPIPS unavailable: {net} backbone weights (torchvision's ImageNet {net!r})",
                             BACKBONE_WEIGHTS[net].url, "the LPIPS weights URL (--lpips-weights)",
                             LpipsWeightsMissing, LpipsWeightsInvalid)


def lpips_status(weights_url: str | None = None, net: str = "alex") -> dict:
    """{"available", "source", "reason"} for reports, checking only that the file exists (cheap);
    a corrupt file is reported when `LpipsMetric.load` reads it."""
    return backbone(net).status(weights_url)


def _load_backbone(model: lpips.LPIPS, weights_url: str | None, net: str) -> str:
    """Copy torchvision's `features.<i>.*` tensors into lpips' `slice<s>.<i>.*` modules, strictly:
    every backbone parameter must come from the file, with its shape; `classifier.*` is unused.
    Returns the file."""
    url, state = backbone(net).read_state(weights_url)
    wanted = {name: "features." + name.split(".", 1)[1] for name in model.net.state_dict()}
    missing = sorted(v for v in wanted.values() if v not in state)
    extra = sorted(k for k in state if not k.startswith("classifier.") and k not in wanted.values())
    if missing or extra:
        raise LpipsWeightsInvalid(
            f"LPIPS unavailable: weights file {url} is not torchvision's {model.pnet_type} state_dict: "
            + (f"missing {missing[:6]}" if missing else "") + (f" unexpected {extra[:6]}" if extra else ""))
    try:
        model.net.load_state_dict({name: state[key] for name, key in wanted.items()}, strict=True)
    except RuntimeError as exc:
        raise LpipsWeightsInvalid(f"LPIPS unavailable: weights file {url} does not fit lpips' "
                                  f"{model.pnet_type} backbone: {exc}") from exc
    return url


def _check_linear_layers(model: lpips.LPIPS, net: str) -> None:
    """lpips loads its linear layers with strict=False; make sure they really came from its file."""
    path = os.path.join(os.path.dirname(lpips.__file__), "weights", "v0.1", f"{net}.pth")
    shipped = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    if not shipped or any(k not in own or not torch.equal(own[k], v) for k, v in shipped.items()):
        raise LpipsUnavailable(f"LPIPS unavailable: lpips' linear layers were not loaded from {path}")


class LpipsMetric:
    """Per-image LPIPS distance between uint8 RGB images (0 = identical, larger = more different)."""

    def __init__(self, model: lpips.LPIPS, source: str, device: str = "cpu", batch_size: int = 16):
        self.model = model.to(device).eval().requires_grad_(False)
        self.source, self.device, self.batch_size = source, device, batch_size

    @classmethod
    def load(cls, weights_url: str | None = None, net: str = "alex", device: str = "cpu") -> LpipsMetric:
        """Raises LpipsWeightsMissing / LpipsWeightsInvalid (both LpipsUnavailable) with the reason."""
        if net not in BACKBONE_WEIGHTS:
            raise ConfigError(f"unknown LPIPS net {net!r}; choose one of {sorted(BACKBONE_WEIGHTS)}")
        backbone(net).resolve(weights_url)  # missing weights: said before lpips builds anything
        with warnings.catch_warnings():  # lpips passes torchvision the deprecated pretrained=False
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        _check_linear_layers(model, net)
        return cls(model, _load_backbone(model, weights_url, net), device)

    @torch.no_grad()
    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB batches (or single (H, W, 3) images) -> (N,) float64 distances."""
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim == 3:
            a, b = a[None], b[None]
        if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
            raise ValueError(f"need two (N, H, W, 3) RGB batches of one shape, got {a.shape} and {b.shape}")
        out = []
        for i in range(0, len(a), self.batch_size):
            x, y = (torch.from_numpy(np.ascontiguousarray(v[i:i + self.batch_size])).to(self.device)
                    .permute(0, 3, 1, 2).float() / 127.5 - 1 for v in (a, b))  # lpips wants [-1, 1]
            out.append(self.model(x, y).flatten().double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)
