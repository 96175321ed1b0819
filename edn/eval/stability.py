"""Temporal stability of generated videos: how much they flicker from frame to frame.

Frames are (N, H, W, C) arrays of one video in order (uint8 or float, same units for every
video compared: gray levels 0-255 for uint8). Definitions, all means over pixels and channels:

- frame change  c_t = mean |x_{t+1} - x_t|                                       (N-1 values)
- change ratio  R = sum_t c_t(generated) / sum_t c_t(real)
      1.0: the generated video changes as much as the real one; > 1: extra change (flicker);
      < 1: too static. Simple, but motion and flicker add up in it, so it only reads as flicker
      when the motion is the same (self-transfer on held-out frames).
- flicker       f_t = mean |(g_{t+1} - g_t) - (r_{t+1} - r_t)| = mean |e_{t+1} - e_t|, e = g - r
      The temporal change of the error image: the real video's own motion cancels, and an error
      that stays put (a constant colour shift, a blurry sleeve) costs nothing; an error that
      changes from frame to frame (flicker, jitter, texture popping) does. 0 = as steady as the
      real video. A generator that froze would score the real motion, so read it beside R.
      For per-frame i.i.d. noise of standard deviation s added to the real frames, f = 2s/sqrt(pi).
      (The pixel analogue of TecoGAN's temporal metrics, which compare generated and real
      frame-to-frame differences.)
- background flicker (no real frames needed: cross-person transfers)
      b_t = mean |g_{t+1} - g_t| over the pixels outside both frames' person boxes, a box being
      the bounding box of the seen body keypoints of the input pose, grown on every side by
      `margin` (0.25) times its larger side (loose clothes, hair, limbs' width). The paper
      assumes a fixed camera and a static scene, so the real background does not change:
      everything measured there is the generator's flicker, and the dancer's motion (however
      large) is excluded by construction.
      0 = steady; i.i.d. noise of s gives 2s/sqrt(pi). Run it on the real video for its floor
      (compression noise, lighting).

Per-transition arrays are returned (besides summaries) so a long video can be processed in
chunks that overlap by one frame, with the values concatenated.
"""
from __future__ import annotations

import numpy as np

from edn.pose.layout import BODY


def _check(frames: np.ndarray) -> np.ndarray:
    """The video as an (N, H, W, C) array, not copied: frames are cast to float one pair at a time,
    so memory stays at the caller's uint8 video."""
    frames = np.asarray(frames)
    frames = frames[..., None] if frames.ndim == 3 else frames
    if frames.ndim != 4:
        raise ValueError(f"frames must be (N, H, W[, C]), got shape {frames.shape}")
    return frames


def _f(frame: np.ndarray) -> np.ndarray:
    return frame.astype(np.float32)


def frame_changes(frames: np.ndarray) -> np.ndarray:
    """(N-1,) mean absolute difference between consecutive frames."""
    x = _check(frames)
    return np.array([np.abs(_f(x[t + 1]) - _f(x[t])).mean(dtype=np.float64) for t in range(len(x) - 1)])


def change_ratio(generated: np.ndarray, real: np.ndarray) -> float:
    """R above; nan when the real video does not change at all (the ratio has no meaning)."""
    _same_shape(generated, real)
    real_total = frame_changes(real).sum()
    return float(frame_changes(generated).sum() / real_total) if real_total > 0 else float("nan")


def flicker(generated: np.ndarray, real: np.ndarray) -> np.ndarray:
    """(N-1,) f_t above: the frame-to-frame change of the error image."""
    _same_shape(generated, real)
    g, r = _check(generated), _check(real)
    return np.array([np.abs((_f(g[t + 1]) - _f(r[t + 1])) - (_f(g[t]) - _f(r[t]))).mean(dtype=np.float64)
                     for t in range(len(g) - 1)])


def person_mask(pose: np.ndarray, height: int, width: int, margin: float = 0.25,
                min_conf: float = 0.1) -> np.ndarray:
    """(H, W) bool: inside the pose's body-keypoint box grown by `margin` times its larger side.
    A pose with no seen body keypoint masks the whole frame (no person located, so no pixel can
    be called background)."""
    mask = np.zeros((height, width), bool)
    seen = pose[BODY][pose[BODY, 2] >= min_conf]
    if not len(seen):
        mask[:] = True
        return mask
    (x0, y0), (x1, y1) = seen[:, :2].min(0), seen[:, :2].max(0)
    grow = margin * max(y1 - y0, x1 - x0, 1.0)
    xa, xb = int(np.floor(x0 - grow)), int(np.ceil(x1 + grow)) + 1
    ya, yb = int(np.floor(y0 - grow)), int(np.ceil(y1 + grow)) + 1
    mask[max(ya, 0):max(yb, 0), max(xa, 0):max(xb, 0)] = True
    return mask


def background_flicker(frames: np.ndarray, poses: np.ndarray, margin: float = 0.25,
                       min_conf: float = 0.1) -> np.ndarray:
    """(N-1,) b_t above, from the generated frames and the poses they were generated from
    ((N, 137, 3) in the frames' pixels); nan for a transition with no background pixel left."""
    x, poses = _check(frames), np.asarray(poses)
    if len(poses) != len(x):
        raise ValueError(f"{len(x)} frames but {len(poses)} poses")
    h, w = x.shape[1:3]
    out = np.full(max(len(x) - 1, 0), np.nan)
    masks = [person_mask(p, h, w, margin, min_conf) for p in poses[:1]]
    for t in range(len(x) - 1):
        masks.append(person_mask(poses[t + 1], h, w, margin, min_conf))
        background = ~(masks[-2] | masks[-1])
        if background.any():
            out[t] = np.abs(_f(x[t + 1]) - _f(x[t]))[background].mean(dtype=np.float64)
        masks.pop(0)
    return out


def stability(generated: np.ndarray, real: np.ndarray | None = None,
              poses: np.ndarray | None = None) -> dict:
    """The summary for a report: every measure the inputs allow (nan-aware means over transitions)."""
    out: dict[str, float] = {"frame_change": float(np.mean(frame_changes(generated))) if len(generated) > 1
                             else float("nan")}
    if real is not None:
        out["real_frame_change"] = float(np.mean(frame_changes(real))) if len(real) > 1 else float("nan")
        out["change_ratio"] = change_ratio(generated, real)
        out["flicker"] = float(np.mean(flicker(generated, real))) if len(real) > 1 else float("nan")
    if poses is not None:
        b = background_flicker(generated, poses)
        out["background_flicker"] = float(np.nanmean(b)) if np.isfinite(b).any() else float("nan")
    return out


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if np.shape(a) != np.shape(b):
        raise ValueError(f"generated and real videos differ in shape: {np.shape(a)} and {np.shape(b)}")
