"""The dancer's keypoints over a video, cleaned: a confidence threshold, short gaps filled by
linear interpolation, and optional one-euro smoothing. Every change is recorded in a flag per
keypoint and frame (FLAGS), which the dataset stores beside the keypoints."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edn.errors import ConfigError

# keypoint_flags values
MISSING, DETECTED, INTERPOLATED, DROPPED = 0, 1, 2, 3
FLAGS = {MISSING: "not detected", DETECTED: "detected", INTERPOLATED: "interpolated over a short gap",
         DROPPED: "detected below min_confidence, removed"}


@dataclass
class CleanupConfig:
    min_confidence: float = 0.1     # keypoints below are removed (flag DROPPED)
    max_gap: int = 5                # gaps up to this many frames are interpolated; longer stay missing
    smoothing: str = "none"         # "none" or "one-euro"
    one_euro_min_cutoff: float = 1.0  # Hz: smoothing of a still keypoint
    one_euro_beta: float = 10.0       # cutoff gained per frame-height per second of speed
    one_euro_d_cutoff: float = 1.0    # Hz: smoothing of the speed estimate


def clean_keypoints(poses: np.ndarray, timestamps: np.ndarray, frame_height: int,
                    cfg: CleanupConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, 3) poses in frame order -> (cleaned poses, (N, K) uint8 flags)."""
    cfg = cfg or CleanupConfig()
    if cfg.smoothing not in ("none", "one-euro"):
        raise ConfigError(f"unknown keypoint smoothing {cfg.smoothing!r}; choose 'none' or 'one-euro'")
    out = poses.astype(np.float32, copy=True)
    seen = out[:, :, 2] > 0
    keep = out[:, :, 2] >= cfg.min_confidence
    flags = np.where(keep, DETECTED, np.where(seen, DROPPED, MISSING)).astype(np.uint8)
    out[~keep] = 0.0
    filled = fill_gaps(out, keep, cfg.max_gap)
    flags[filled] = INTERPOLATED
    if cfg.smoothing == "one-euro":
        out = one_euro(out, timestamps, frame_height, cfg)
    return out, flags


def fill_gaps(poses: np.ndarray, present: np.ndarray, max_gap: int) -> np.ndarray:
    """Interpolate, in place, runs of at most `max_gap` missing frames that have a present
    keypoint on both sides (confidence: the lower of the two ends). Returns the filled mask."""
    filled = np.zeros_like(present)
    if max_gap <= 0:
        return filled
    for k in np.flatnonzero(present.any(0)):
        at = np.flatnonzero(present[:, k])
        gaps = np.flatnonzero((np.diff(at) > 1) & (np.diff(at) <= max_gap + 1))
        for g in gaps:
            a, b = at[g], at[g + 1]
            w = (np.arange(a + 1, b) - a)[:, None] / (b - a)
            poses[a + 1:b, k, :2] = poses[a, k, :2] * (1 - w) + poses[b, k, :2] * w
            poses[a + 1:b, k, 2] = min(poses[a, k, 2], poses[b, k, 2])
            filled[a + 1:b, k] = True
    return filled


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray:
    tau = 1.0 / (2 * np.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def one_euro(poses: np.ndarray, timestamps: np.ndarray, frame_height: int, cfg: CleanupConfig) -> np.ndarray:
    """The one-euro filter (Casiez et al. 2012) on x, y of every present keypoint, in units of
    the frame height so the settings do not depend on resolution. A keypoint that goes missing
    restarts its filter when it comes back, rather than being pulled from a stale position."""
    out = poses.copy()
    xy = poses[:, :, :2] / frame_height
    present = poses[:, :, 2] > 0
    est = xy[0].copy()
    speed = np.zeros_like(est)
    was = present[0].copy()
    for i in range(1, len(poses)):
        dt = max(float(timestamps[i] - timestamps[i - 1]), 1e-3)
        now = present[i]
        fresh = now & ~was
        raw_speed = (xy[i] - est) / dt
        speed = np.where(fresh[:, None], 0.0, speed + _alpha(cfg.one_euro_d_cutoff, dt) * (raw_speed - speed))
        cutoff = cfg.one_euro_min_cutoff + cfg.one_euro_beta * np.hypot(*speed.T)[:, None]
        smooth = est + _alpha(cutoff, dt) * (xy[i] - est)
        est = np.where(fresh[:, None] | ~now[:, None], xy[i], smooth)
        out[i, now, :2] = est[now] * frame_height
        was = now
    return out
