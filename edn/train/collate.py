"""The trainer's last step of the data: a batch of compact pairs (edn.train.data) decoded, its pose
figures drawn and, for a generator with reference channels, each pair's video's reference added,
as torch tensors. Ray Data runs it in the iterator's prefetch thread of the training worker."""
from __future__ import annotations

import numpy as np
import torch
from ray.data.collate_fn import NumpyBatchCollateFn

from edn.train.data import render_pairs


class PairCollate(NumpyBatchCollateFn):
    def __init__(self, downscale: int = 1, references: np.ndarray | None = None):
        """`references`: (videos, H, W, 9) uint8, the run's videos' in order (edn.data.reference)."""
        super().__init__()
        self.downscale, self.references = downscale, references

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        out = render_pairs(batch, self.downscale)
        if self.references is not None:
            out["reference"] = self.references[out["video"]]
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}
