"""Finding and reading pretrained weights (VGG19 for the perceptual loss, LPIPS' backbone): one
place, so every network that needs ImageNet weights looks, reports and fails the same way.

Nothing is downloaded. The file is a caller-given fsspec URL (local path, gs://, memory://) or
torchvision's own cache (`torch.hub.get_dir()/checkpoints/<the file name of torchvision's URL>`,
where torchvision itself would put it). Where neither holds it, the caller's Missing error says
where it looked and how to supply it; a file that is not a state_dict raises its Invalid error
naming the file. `status` answers, cheaply (the file's existence only), what a run reports at
start. Strict loading of the tensors into a network is the caller's (it knows the key layout).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

import torch

from edn.storage import filesystem


@dataclass(frozen=True)
class PretrainedWeights:
    what: str                    # what they are, for messages: "VGG19 weights for the perceptual loss"
    url: str                     # where torchvision downloads them from
    setting: str                 # how a user gives another location: "vgg_weights_url"
    missing: type[Exception]     # raised when no file is found
    invalid: type[Exception]     # raised when the file is not a state_dict

    @property
    def filename(self) -> str:
        return os.path.basename(urlparse(self.url).path)

    def cache_path(self) -> str:
        """torchvision's cache file (follows $TORCH_HOME / torch.hub.set_dir)."""
        return os.path.join(torch.hub.get_dir(), "checkpoints", self.filename)

    def how_to_supply(self) -> str:
        return (f"Supply them in one of these ways: download {self.url} and place it at {self.cache_path()} "
                f"(torchvision's cache; $TORCH_HOME moves it), or give its location (local path, gs://, "
                f"memory://) as {self.setting}.")

    def resolve(self, weights_url: str | None) -> str:
        """The location to load from, or `missing` naming where it looked."""
        if weights_url:
            fs, path = filesystem(weights_url)
            if not fs.isfile(path):
                raise self.missing(f"{self.what} not found at {self.setting}={weights_url!r}. " + self.how_to_supply())
            return weights_url
        path = self.cache_path()
        if not os.path.isfile(path):
            raise self.missing(f"{self.what} not found: no {self.setting} given and no file in torchvision's cache "
                               f"at {path}. " + self.how_to_supply())
        return path

    def status(self, weights_url: str | None = None) -> dict:
        """{"available", "source" (the URL or cache path looked at), "reason"}, for a run to report
        and log; only checks that the file exists (a corrupt one is found by `read_state`)."""
        source = weights_url or self.cache_path()
        try:
            resolved = self.resolve(weights_url)
        except self.missing as exc:
            return {"available": False, "source": source, "reason": str(exc)}
        except Exception as exc:  # e.g. gs:// without credentials: unavailable, and why
            return {"available": False, "source": source,
                    "reason": f"{self.what}: could not check {source}: {type(exc).__name__}: {exc}"}
        where = self.setting if weights_url else "torchvision's cache"
        return {"available": True, "source": resolved, "reason": f"{self.what} found ({where})"}

    def read_state(self, weights_url: str | None) -> tuple[str, Mapping[str, torch.Tensor]]:
        """(the file, its state_dict), tensors only (weights_only); `missing` or `invalid` otherwise."""
        url = self.resolve(weights_url)
        fs, path = filesystem(url)
        try:
            with fs.open(path, "rb") as f:
                state = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise self.invalid(f"{self.what}: file {url} could not be read as a torch state_dict: "
                               f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(state, Mapping):
            raise self.invalid(f"{self.what}: file {url} holds a {type(state).__name__}, not a state_dict")
        return url, state
