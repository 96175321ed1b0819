"""The paper's nearest-neighbour baseline: for each query pose, the target's training frame whose
pose is nearest. A model that cannot beat "show the most similar frame you were trained on" has
not learned to generate.

Only the 25 body keypoints take part (face and hands are too small, and too often missing, to
decide between whole frames). Each pose is normalized before comparing:

    x' = (x - c) / s,  c = midpoint of Neck and MidHip,  s = |Neck - MidHip| (torso length)

so that a pose matches the same pose anywhere in the frame and at any size: the torso length
hardly changes with the pose (body height does: crouching, arms up) and the neck and mid-hip are
seen whenever the dancer is. A pose without both cannot be normalized: as a training frame it is
never returned; as a query it gets index -1 (and distance inf). With `normalize=False` the raw
pixels are compared instead (for queries already in the target's frame, where the position of
the dancer in the returned frame matters too).

Distance between a query q and a training pose t (the paper's, over keypoints seen in both):

    D(q, t) = mean over k seen in q and t of ||q'_k - t'_k||

A training pose sharing fewer than `min_shared` (0.75) of the query's seen keypoints is not a
candidate: a mean over two or three keypoints would be small by chance and win against frames
that match the whole body.
"""
from __future__ import annotations

import numpy as np

from edn.errors import DataError
from edn.pose.layout import N_BODY, B

_NECK, _MIDHIP = B["Neck"], B["MidHip"]


def normalize_body(poses: np.ndarray, min_conf: float = 0.1,
                   normalize: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, >=25, 3) poses -> (coords (N, 25, 2) float32, seen (N, 25) bool, usable (N,) bool).
    Coordinates of unseen keypoints, and of whole unusable poses, are 0 (never nan)."""
    poses = np.asarray(poses, np.float32)
    if poses.ndim != 3 or poses.shape[1] < N_BODY or poses.shape[2] != 3:
        raise ValueError(f"poses must be (N, 25 or 137, 3), got {poses.shape}")
    body = poses[:, :N_BODY]
    seen = body[:, :, 2] >= min_conf
    xy = body[:, :, :2].astype(np.float64)
    if normalize:
        centre = (xy[:, _NECK] + xy[:, _MIDHIP]) / 2
        scale = np.linalg.norm(xy[:, _NECK] - xy[:, _MIDHIP], axis=1)
        usable = seen[:, _NECK] & seen[:, _MIDHIP] & (scale > 1e-6)
        xy = (xy - centre[:, None]) / np.where(usable, scale, 1.0)[:, None, None]
    else:
        usable = seen.any(axis=1)
    seen &= usable[:, None]
    xy[~seen] = 0.0
    return xy.astype(np.float32), seen, usable


class NearestNeighbour:
    """Index of training poses; `query` returns, per query pose, the nearest training frame's
    position in the array given to `fit` (map it to frame indices with the caller's own array)."""

    def __init__(self, normalize: bool = True, min_shared: float = 0.75, min_conf: float = 0.1,
                 chunk_elements: int = 4_000_000):
        self.normalize, self.min_shared, self.min_conf = normalize, min_shared, min_conf
        self.chunk_elements = chunk_elements  # bounds the (queries, train, 25) temporaries
        self._xy = np.zeros((0, N_BODY, 2), np.float32)
        self._seen = np.zeros((0, N_BODY), np.float32)

    def fit(self, poses: np.ndarray) -> NearestNeighbour:
        """`poses` (N, 137 or 25, 3): the target's training frames (before the held-out split)."""
        xy, seen, usable = normalize_body(poses, self.min_conf, self.normalize)
        if not usable.any():
            raise DataError(f"none of the {len(xy)} training poses can be normalized (Neck and MidHip seen)")
        self._xy, self._seen = xy, seen.astype(np.float32)
        return self

    def __len__(self) -> int:
        return len(self._xy)

    def query(self, poses: np.ndarray) -> np.ndarray:
        """(M, 137 or 25, 3) -> (M,) int64 indices into the fitted poses; -1 where no candidate."""
        return self.query_with_distance(poses)[0]

    def query_with_distance(self, poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices (M,), distances (M,)): the mean keypoint distance, in torso lengths when
        normalizing (pixels otherwise); inf where no candidate."""
        if not len(self._xy):
            raise RuntimeError("NearestNeighbour.query before fit")
        qxy, qseen, _ = normalize_body(poses, self.min_conf, self.normalize)
        qs = qseen.astype(np.float32)
        index = np.full(len(qxy), -1, np.int64)
        dist = np.full(len(qxy), np.inf)
        n = len(self._xy)
        step = max(1, self.chunk_elements // (n * N_BODY))
        tx, ty = self._xy[None, :, :, 0], self._xy[None, :, :, 1]          # (1, N, 25)
        for a in range(0, len(qxy), step):
            q, w = qxy[a:a + step], qs[a:a + step]                         # (c, 25, 2), (c, 25)
            d = np.hypot(q[:, None, :, 0] - tx, q[:, None, :, 1] - ty)      # (c, N, 25)
            d *= self._seen[None]                                          # only train-seen keypoints
            total = np.einsum("cnk,ck->cn", d, w)                           # ... and query-seen ones
            shared = w @ self._seen.T                                      # (c, N) keypoints in both
            need = np.maximum(self.min_shared * w.sum(1, keepdims=True), 1.0)
            mean = np.where(shared >= need - 1e-6, total / np.maximum(shared, 1.0), np.inf)
            best = mean.argmin(1)
            best_d = mean[np.arange(len(q)), best]
            found = np.isfinite(best_d)
            index[a:a + step] = np.where(found, best, -1)
            dist[a:a + step] = best_d
        return index, dist
