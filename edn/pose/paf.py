"""OpenPose's bottom-up decoding: part heatmaps + part affinity fields (PAFs) -> people.

Pure numpy/cv2, no network: `decode_people` takes the maps already upsampled to the network's
input resolution (H, W, channels) and returns every person as an (n_parts, 3) array of x, y in
those maps' pixels and the heatmap peak's score (0 = part not found). The steps follow OpenPose
(Cao et al., "Realtime Multi-Person 2D Pose Estimation using Part Affinity Fields") and CMU's
python implementation of its test-time decoding:

1. peaks: per part, the maxima of their 3x3 neighbourhood above `peak_threshold` (ties broken:
   >= the neighbours above/left, > those below/right; the 1-pixel border excluded, as in
   OpenPose's NMS, since upsampling rings there), refined to sub-pixel by a parabola through the
   peak and its two neighbours along each axis (OpenPose's score-weighted centroid barely moves
   a peak as broad as its heatmaps' sigma-7 ones);
2. limb candidates: for every pair of peaks of a limb's two parts, the PAF sampled at
   `n_samples` points on the segment between them, dotted with the segment's direction; kept when
   more than `min_above_fraction` of the samples exceed `paf_threshold` and the mean plus the
   distance prior min(0.5 * image height / length - 1, 0) is positive;
3. greedy matching per limb, best score first, each peak used once per limb;
4. assembly in OpenPose's limb order (a tree from the neck outwards): a limb extends the person
   holding one of its peaks, joins two people that share no part, or starts a new person;
   OpenPose's redundant limbs (shoulder-ear) complete or join people but never start one (so a
   person whose neck is hidden keeps head and arms together, as in CMU's code);
5. people with fewer than `min_parts` parts or a mean score (peaks + limbs, per part) below
   `min_mean_score` are dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edn.pose.layout import BODY_25


def _pairs(flat: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    return tuple(zip(flat[::2], flat[1::2]))


@dataclass(frozen=True)
class PoseModel:
    """What an OpenPose body network outputs: heatmaps (parts + background), then PAFs."""

    name: str
    parts: tuple[str, ...]                    # the network's part order
    pairs: tuple[tuple[int, int], ...]        # limbs (part a, part b), in OpenPose's order
    paf_channels: tuple[tuple[int, int], ...]  # each limb's (x, y) PAF channel, from the first PAF
    redundant: frozenset[int]                 # limbs that never start a person

    @property
    def n_parts(self) -> int:
        return len(self.parts)

    @property
    def n_heatmaps(self) -> int:
        return self.n_parts + 1  # + background

    @property
    def n_channels(self) -> int:
        return self.n_heatmaps + 2 * len(self.pairs)


# Tables from OpenPose (CMU-Perceptual-Computing-Lab/openpose, src/openpose/pose/poseParameters.cpp):
# POSE_BODY_25_PAIRS / POSE_COCO_PAIRS (getPosePartPairs, the PAF pairs, not the render pairs: they
# include the redundant shoulder-ear limbs) and POSE_BODY_25_MAP_IDX / POSE_COCO_MAP_IDX
# (getPoseMapIndex: the x, y channel of each pair, counted from the first PAF channel). OpenCV's
# samples/dnn/openpose.py has COCO's table offset by 19, the heatmap count (its `mapIdx`).
# Checked number for number against POSE_BODY_PART_PAIRS and POSE_MAP_INDEX of that file (commit
# 0348ce7). The tests build their maps from these same tables, so only this check guards them.
_BODY_25_PAIRS = (
    1, 8, 1, 2, 1, 5, 2, 3, 3, 4, 5, 6, 6, 7, 8, 9, 9, 10, 10, 11, 8, 12, 12, 13, 13, 14, 1, 0, 0, 15,
    15, 17, 0, 16, 16, 18, 2, 17, 5, 18, 14, 19, 19, 20, 14, 21, 11, 22, 22, 23, 11, 24,
)
_BODY_25_MAP_IDX = (
    0, 1, 14, 15, 22, 23, 16, 17, 18, 19, 24, 25, 26, 27, 6, 7, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 30, 31,
    32, 33, 36, 37, 34, 35, 38, 39, 20, 21, 28, 29, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51,
)
COCO_PARTS = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "RHip", "RKnee",
    "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
)
_COCO_PAIRS = (
    1, 2, 1, 5, 2, 3, 3, 4, 5, 6, 6, 7, 1, 8, 8, 9, 9, 10, 1, 11, 11, 12, 12, 13, 1, 0, 0, 14, 14, 16,
    0, 15, 15, 17, 2, 16, 5, 17,
)
_COCO_MAP_IDX = (
    12, 13, 20, 21, 14, 15, 16, 17, 22, 23, 24, 25, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 28, 29, 30, 31,
    34, 35, 32, 33, 36, 37, 18, 19, 26, 27,
)

BODY_25_MODEL = PoseModel("BODY_25", BODY_25, _pairs(_BODY_25_PAIRS), _pairs(_BODY_25_MAP_IDX),
                          frozenset({18, 19}))   # (2, 17) RShoulder-REar, (5, 18) LShoulder-LEar
COCO_MODEL = PoseModel("COCO", COCO_PARTS, _pairs(_COCO_PAIRS), _pairs(_COCO_MAP_IDX),
                       frozenset({17, 18}))      # (2, 16) RShoulder-REar, (5, 17) LShoulder-LEar
POSE_MODELS = {m.name: m for m in (BODY_25_MODEL, COCO_MODEL)}


def find_peaks(heatmap: np.ndarray, threshold: float, refine: bool = True) -> np.ndarray:
    """(H, W) heatmap -> (k, 3) float32 rows of x, y, score: the 3x3 local maxima above threshold."""
    m = np.asarray(heatmap, np.float32)
    h, w = m.shape
    p = np.pad(m, 1, constant_values=-np.inf)
    centre = p[1:h + 1, 1:w + 1]
    mask = centre > threshold
    mask[[0, -1], :] = mask[:, [0, -1]] = False  # as OpenPose: upsampling rings at the border
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            neighbour = p[1 + dy:h + 1 + dy, 1 + dx:w + 1 + dx]
            before = dy < 0 or (dy == 0 and dx < 0)  # raster order: ties go to the last pixel
            mask &= (centre >= neighbour) if before else (centre > neighbour)
    ys, xs = np.nonzero(mask)
    scores = m[ys, xs]
    x, y = xs.astype(np.float32), ys.astype(np.float32)
    if refine and len(xs):  # a parabola through the peak and its 2 neighbours (at -1, +1), per axis
        q = np.pad(m, 1, mode="edge")
        for coord, (minus, plus) in ((x, (q[ys + 1, xs], q[ys + 1, xs + 2])),
                                     (y, (q[ys, xs + 1], q[ys + 2, xs + 1]))):
            curvature = minus - 2 * scores + plus
            shift = np.where(curvature < 0, 0.5 * (minus - plus) / np.where(curvature < 0, curvature, -1), 0)
            coord += np.clip(shift, -0.5, 0.5)
    return np.stack([x, y, scores], -1).astype(np.float32).reshape(-1, 3)


def score_limbs(a: np.ndarray, b: np.ndarray, paf_x: np.ndarray, paf_y: np.ndarray, image_height: float,
                n_samples: int = 10, paf_threshold: float = 0.05, min_above_fraction: float = 0.8) -> np.ndarray:
    """Peaks a (nA, 3) and b (nB, 3) of a limb's parts -> (n, 3) rows i, j, score of the plausible
    connections a[i]-b[j], best first (PAF line integral with OpenPose's distance prior)."""
    if not len(a) or not len(b):
        return np.zeros((0, 3), np.float32)
    d = b[None, :, :2] - a[:, None, :2]                           # (nA, nB, 2)
    length = np.maximum(np.linalg.norm(d, axis=-1), 1e-3)
    unit = d / length[..., None]
    t = np.linspace(0.0, 1.0, n_samples)
    pts = a[:, None, None, :2] + t[None, None, :, None] * d[:, :, None, :]  # (nA, nB, S, 2)
    h, w = paf_x.shape
    xs = np.clip(np.rint(pts[..., 0]).astype(np.int64), 0, w - 1)
    ys = np.clip(np.rint(pts[..., 1]).astype(np.int64), 0, h - 1)
    along = paf_x[ys, xs] * unit[..., None, 0] + paf_y[ys, xs] * unit[..., None, 1]  # (nA, nB, S)
    score = along.mean(-1) + np.minimum(0.5 * image_height / length - 1.0, 0.0)
    ok = ((along > paf_threshold).sum(-1) > min_above_fraction * n_samples) & (score > 0)
    i, j = np.nonzero(ok)
    order = np.argsort(-score[i, j], kind="stable")
    return np.stack([i[order], j[order], score[i, j][order]], -1).astype(np.float32).reshape(-1, 3)


def match_limbs(candidates: np.ndarray, n_a: int, n_b: int) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching of scored connections (best first), as OpenPose does."""
    used_a, used_b, out = set(), set(), []
    for i, j, s in candidates:
        i, j = int(i), int(j)
        if i in used_a or j in used_b:
            continue
        used_a.add(i)
        used_b.add(j)
        out.append((i, j, float(s)))
        if len(out) >= min(n_a, n_b):
            break
    return out


def assemble(model: PoseModel, peaks: list[np.ndarray], connections: list[list[tuple[int, int, float]]],
             min_parts: int = 4, min_mean_score: float = 0.4) -> list[np.ndarray]:
    """Group matched limbs into people -> list of (n_parts, 3) arrays (x, y, score)."""
    n = model.n_parts
    people: list[dict] = []  # {"parts": np.ndarray of peak indices (-1 = none), "score", "count"}

    def holder(part: int, index: int) -> int:
        return next((k for k, p in enumerate(people) if p["parts"][part] == index), -1)

    def add(person: dict, part: int, index: int, limb_score: float) -> None:
        person["parts"][part] = index
        person["count"] += 1
        person["score"] += float(peaks[part][index, 2]) + limb_score

    for k, ((pa, pb), matched) in enumerate(zip(model.pairs, connections)):
        redundant = k in model.redundant
        for i, j, s in matched:
            ka, kb = holder(pa, i), holder(pb, j)
            if ka >= 0 and kb >= 0:
                if ka == kb:
                    continue
                first, second = people[ka], people[kb]
                if np.any((first["parts"] >= 0) & (second["parts"] >= 0)):
                    continue  # both have some part: two people, not one
                taken = second["parts"] >= 0
                first["parts"][taken] = second["parts"][taken]
                first["count"] += second["count"]
                first["score"] += second["score"] + s
                del people[kb]
            elif ka >= 0:
                if people[ka]["parts"][pb] < 0:
                    add(people[ka], pb, j, s)
            elif kb >= 0:
                if people[kb]["parts"][pa] < 0:
                    add(people[kb], pa, i, s)
            elif not redundant:
                person = {"parts": np.full(n, -1, np.int64), "score": 0.0, "count": 0}
                add(person, pa, i, s)
                add(person, pb, j, 0.0)
                people.append(person)

    out = []
    for p in people:
        if p["count"] < min_parts or p["score"] / p["count"] < min_mean_score:
            continue
        pose = np.zeros((n, 3), np.float32)
        for part, index in enumerate(p["parts"]):
            if index >= 0:
                pose[part] = peaks[part][index]
        out.append(pose)
    return out


def decode_people(maps: np.ndarray, model: PoseModel, *, peak_threshold: float = 0.05,
                  smoothing_sigma: float = 0.0, refine_peaks: bool = True, n_samples: int = 10,
                  paf_threshold: float = 0.05, min_above_fraction: float = 0.8, min_parts: int = 4,
                  min_mean_score: float = 0.4) -> list[np.ndarray]:
    """(H, W, n_channels) maps at the network's input resolution -> people, (n_parts, 3) each.

    `smoothing_sigma` > 0 Gaussian-smooths the heatmaps before peak finding (as CMU's python
    code does with sigma 3); the peak's score is read from the unsmoothed heatmap.
    """
    if maps.ndim != 3 or maps.shape[2] != model.n_channels:
        raise ValueError(f"{model.name} maps must be (H, W, {model.n_channels}), got {maps.shape}")
    h = maps.shape[0]
    peaks = []
    for part in range(model.n_parts):
        heat = np.ascontiguousarray(maps[:, :, part], np.float32)
        if smoothing_sigma > 0:
            found = find_peaks(cv2.GaussianBlur(heat, (0, 0), smoothing_sigma), peak_threshold, refine_peaks)
            xi = np.clip(np.rint(found[:, 0]).astype(np.int64), 0, heat.shape[1] - 1)
            yi = np.clip(np.rint(found[:, 1]).astype(np.int64), 0, heat.shape[0] - 1)
            found[:, 2] = heat[yi, xi]
        else:
            found = find_peaks(heat, peak_threshold, refine_peaks)
        peaks.append(found)
    connections = []
    for (pa, pb), (cx, cy) in zip(model.pairs, model.paf_channels):
        paf_x = maps[:, :, model.n_heatmaps + cx]
        paf_y = maps[:, :, model.n_heatmaps + cy]
        scored = score_limbs(peaks[pa], peaks[pb], paf_x, paf_y, h, n_samples, paf_threshold, min_above_fraction)
        connections.append(match_limbs(scored, len(peaks[pa]), len(peaks[pb])))
    return assemble(model, peaks, connections, min_parts, min_mean_score)
