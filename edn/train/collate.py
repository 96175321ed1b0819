"""The trainer's last step of the data: a batch of compact pairs (edn.train.data) decoded, its pose
figures drawn and, for a generator with reference channels, each pair's video's reference added,
as torch tensors. Ray Data runs it in the iterator's prefetch thread of the training worker.

A base model's pairs are recoloured (`recolour`): each pair, its room's empty scene and its
reference frame by one random turn of hue, so that no colour of a person or a room can be learned
by heart and the network must take every colour from the reference. A base trained on 12 dancers
without it painted a held-out dancer in an average of the 12 (docs/base-model.md). With
`lightness`, half the turns also mirror lightness (dark to light, light to dark; hue and
saturation kept): a turn of hue alone keeps dark trousers dark, so a base would never see light legs."""
from __future__ import annotations

import numpy as np
import torch
from ray.data.collate_fn import NumpyBatchCollateFn

from edn.data.reference import appearance_colours
from edn.train.data import render_pairs

_GREY = np.ones(3) / np.sqrt(3)
_CHROMA = np.array([[1, -1, 0], [1, 1, -2]]) / np.sqrt([[2], [6]])  # orthonormal, across the grey axis


def hue_turns(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 3) colour maps that keep grey grey and brightness as it was: a turn of hue by a random
    angle, mirrored (hues in reverse order) half the time."""
    angle = rng.uniform(0, 2 * np.pi, n)
    mirror = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    turn = np.stack([np.stack([np.cos(angle), -np.sin(angle) * mirror], -1),
                     np.stack([np.sin(angle), np.cos(angle) * mirror], -1)], -2)
    return np.outer(_GREY, _GREY) + np.einsum("ki,nkl,lj->nij", _CHROMA, turn, _CHROMA)


def lightness_mirrors(maps: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Half of the colour maps `maps` (n, 3, 3) followed by a mirror of lightness, c -> c - 2(c.g)g
    + 255 (g the grey axis): black becomes white, navy a light blue. Returns the maps and their
    offsets (n, 3), 255 where mirrored, for apply_colour_maps."""
    mirrored = rng.random(len(maps)) < 0.5
    maps = maps - 2 * mirrored[:, None, None] * np.outer(_GREY, _GREY)
    return maps, np.where(mirrored[:, None], 255.0, 0.0) * np.ones(3)


def apply_colour_maps(pictures: np.ndarray, maps: np.ndarray, offsets: np.ndarray | None = None) -> np.ndarray:
    """pictures (n, ..., 3) uint8, each through its own map (n, 3, 3) and offset (n, 3)."""
    out = np.einsum("n...c,ndc->n...d", pictures.astype(np.float32), maps.astype(np.float32))
    if offsets is not None:
        out += offsets.reshape(len(offsets), *[1] * (out.ndim - 2), 3).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


class PairCollate(NumpyBatchCollateFn):
    def __init__(self, downscale: int = 1, references: np.ndarray | None = None, recolour: bool = False,
                 appearance: bool = False, seed: int | None = None, reference_faces: np.ndarray | None = None,
                 lightness: bool = False):
        """`references`: (videos, H, W, 9) uint8, the run's videos' in order (edn.data.reference);
        `recolour`: each pair and its reference by one random turn of hue (a base model's), drawn
        from `seed`, with `lightness` a mirror of lightness half the time; `appearance`: the pairs'
        appearance figures too, in their reference's colours;
        `reference_faces`: (videos, S, S, 3) uint8, their face boxes (a face generator's with a reference)."""
        super().__init__()
        self.downscale, self.references, self.recolour, self.lightness = downscale, references, recolour, lightness
        self.reference_faces = reference_faces
        self.colours = np.stack([appearance_colours(r) for r in references]) if appearance else None
        self.rng = np.random.default_rng(seed)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        out = render_pairs(batch, self.downscale, self.colours)
        if self.references is not None:
            out["reference"] = self.references[out["video"]]
            if self.reference_faces is not None:
                out["reference_face"] = self.reference_faces[out["video"]]
            if self.recolour:
                maps, offsets = hue_turns(len(out["image"]), self.rng), None
                if self.lightness:
                    maps, offsets = lightness_mirrors(maps, self.rng)
                for pictures in [k for k in ("image", "appearance", "reference_face") if k in out]:
                    out[pictures] = apply_colour_maps(out[pictures], maps, offsets)
                reference = out["reference"]  # a copy (indexed by video), changed in place
                for scene_or_frame in (slice(0, 3), slice(3, 6)):  # as the pair; the pose figure as drawn
                    reference[..., scene_or_frame] = apply_colour_maps(reference[..., scene_or_frame], maps, offsets)
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}
