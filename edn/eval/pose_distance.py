"""Pose distance (the paper's evaluation of pose fidelity): run a detector on generated frames
and compare what it finds with the pose the frames were generated from.

    d(p, q) = mean over keypoints k seen in both p and q of ||p_k - q_k||_2  /  size(q)

`q` is the reference: the input pose the generator was given. Dividing by its body size makes
the number independent of the frame resolution and of how large the dancer appears (0.05 = an
error of 5% of the body's height). size(q) is `edn.pose.layout.body_height(q)` (nose to the
ankle midpoint, the paper's body height, which global pose normalization also uses); when the
nose or both ankles are not seen, it is the height of the bounding box of q's seen body
keypoints. Both come from the reference only, so every method compared on the same input poses
(model, nearest-neighbour baseline, ablations) is divided by the same numbers. A caller with a
steadier size (e.g. the target's floor statistics) can pass `scale=` instead.

A keypoint is "seen" when its confidence is at least `min_conf` (0.1, as in layout.py); a pose
pair with no keypoint seen in both has no distance: nan, which summaries count as misses rather
than silently dropping.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edn.pose.estimator import PoseEstimator
from edn.pose.layout import BODY, FACE, LHAND, N_KEYPOINTS, RHAND, body_height

PARTS: dict[str, np.ndarray] = {
    "body": np.arange(N_KEYPOINTS)[BODY],
    "face": np.arange(N_KEYPOINTS)[FACE],
    "hands": np.r_[np.arange(N_KEYPOINTS)[LHAND], np.arange(N_KEYPOINTS)[RHAND]],
    "all": np.arange(N_KEYPOINTS),
}


def _rows(parts: str | Sequence[int]) -> np.ndarray:
    if isinstance(parts, str):
        if parts not in PARTS:
            raise ValueError(f"unknown parts {parts!r}; choose one of {sorted(PARTS)} or give keypoint indices")
        return PARTS[parts]
    return np.asarray(parts, dtype=int)


def body_size(pose: np.ndarray, min_conf: float = 0.1) -> float:
    """Nose-to-ankles body height, else the height of the seen body keypoints' box; nan if < 2 seen."""
    height = body_height(pose, min_conf)
    if np.isfinite(height) and height > 0:
        return height
    seen = pose[BODY][pose[BODY, 2] >= min_conf]
    if len(seen) < 2:
        return float("nan")
    extent = float(seen[:, 1].max() - seen[:, 1].min())
    return extent if extent > 0 else float("nan")


def pose_distance(p: np.ndarray, q: np.ndarray, parts: str | Sequence[int] = "body",
                  min_conf: float = 0.1, scale: float | None = None) -> float:
    """Normalized mean keypoint distance of pose `p` from the reference pose `q` ((137, 3) each);
    nan when no keypoint of `parts` is seen in both or q has no size."""
    rows = _rows(parts)
    both = (p[rows, 2] >= min_conf) & (q[rows, 2] >= min_conf)
    size = body_size(q, min_conf) if scale is None else float(scale)
    if not both.any() or not np.isfinite(size) or size <= 0:
        return float("nan")
    diff = p[rows[both], :2].astype(np.float64) - q[rows[both], :2]
    return float(np.linalg.norm(diff, axis=1).mean() / size)


def nearest_person(people: np.ndarray, reference: np.ndarray, parts: str | Sequence[int] = "body",
                   min_conf: float = 0.1) -> tuple[int, float]:
    """(index, distance) of the detected person nearest the reference pose; (-1, nan) if none is
    comparable. A detector may find several people (a background figure, a ghost of the dancer):
    the one meant is the one at the reference's place."""
    dists = np.array([pose_distance(person, reference, parts, min_conf) for person in people], np.float64)
    if not np.isfinite(dists).any():
        return -1, float("nan")
    best = int(np.nanargmin(dists))
    return best, float(dists[best])


def detected_pose_distance(estimator: PoseEstimator, frames: np.ndarray, input_poses: np.ndarray,
                           parts: str | Sequence[int] = "body", min_conf: float = 0.1,
                           video_id: str = "generated") -> np.ndarray:
    """Per-frame pose distance of generated frames from the poses they were generated from.

    `frames` (N, H, W, 3) uint8 RGB, one generated video in order; `input_poses` (N, 137, 3) in
    the same frames' pixels. The estimator starts a fresh video (`begin(video_id)`, so tracking
    detectors carry nothing over from another video) and sees every frame in order. Returns (N,)
    float64: nan where the detector found nobody comparable (count those: see `summarize`).
    Does not close the estimator (the caller owns it).
    """
    if len(frames) != len(input_poses):
        raise ValueError(f"{len(frames)} frames but {len(input_poses)} input poses")
    estimator.begin(video_id)
    out = np.full(len(frames), np.nan)
    for i, (frame, reference) in enumerate(zip(frames, input_poses)):
        people = estimator.estimate(np.ascontiguousarray(frame), i)
        if len(people):
            out[i] = nearest_person(people, reference, parts, min_conf)[1]
    return out


def summarize(distances: np.ndarray) -> dict:
    """{"mean": over frames with a distance, "missed": fraction of frames without, "frames": N}."""
    d = np.asarray(distances, np.float64)
    ok = np.isfinite(d)
    return {"mean": float(d[ok].mean()) if ok.any() else float("nan"),
            "missed": float(1 - ok.mean()) if len(d) else float("nan"), "frames": int(len(d))}


def per_frame(distances: np.ndarray) -> list[float | None]:
    """Each frame's distance as metrics.json holds it: None where the detector found nobody (JSON has no nan)."""
    return [None if np.isnan(d) else round(float(d), 4) for d in distances]
