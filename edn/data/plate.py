"""A video's empty scene (a "clean plate"): what its camera sees without the dancer.

Each pixel is the median over sampled frames in which the dancer is not near it (outside the
box around the dancer's keypoints, widened by `margin` of its size, since clothes and hair reach
past the joints); frames without the dancer count everywhere. A pixel the dancer covers in every
sampled frame takes the median of all of them. Rendering shows the plate wherever the source has
no pose (the dancer left the frame), instead of what the generator paints from an empty figure.
"""
from __future__ import annotations

import warnings

import cv2
import numpy as np

from edn.data.reader import video_frames
from edn.pose.layout import has_pose

ROWS_PER_BLOCK = 64  # the median runs a block of rows at a time: bounded memory at any frame size


def dancer_mask(pose: np.ndarray, width: int, height: int, margin: float = 0.25) -> np.ndarray:
    """(H, W) bool: where the dancer may be in this frame (nothing without a pose)."""
    mask = np.zeros((height, width), bool)
    if not has_pose(pose[None])[0]:
        return mask
    pts = pose[pose[:, 2] > 0, :2]
    lo, hi = pts.min(0), pts.max(0)
    grow = margin * (hi - lo).max() + 2
    x0, y0 = np.maximum(np.floor(lo - grow), 0).astype(int)
    x1, y1 = np.ceil(hi + grow).astype(int) + 1
    mask[y0:y1, x0:x1] = True
    return mask


def background_plate(dataset_url: str, video_id: str, stop: int, size: tuple[int, int],
                     samples: int = 48) -> np.ndarray:
    """The empty scene of frames [0, stop) of a video, at `size` (W, H): (H, W, 3) uint8."""
    w, h = size
    wanted = set(np.linspace(0, stop - 1, min(samples, stop)).round().astype(int).tolist())
    frames, masks = [], []
    for index, images, poses in video_frames(dataset_url, video_id, stop=stop):
        scale = np.array([w / images.shape[2], h / images.shape[1], 1], np.float32)
        for i, image, pose in zip(index.tolist(), images, poses):
            if i in wanted:
                frames.append(image if image.shape[:2] == (h, w) else cv2.resize(image, (w, h),
                                                                                 interpolation=cv2.INTER_AREA))
                masks.append(dancer_mask(pose * scale, w, h))
    if not frames:
        raise ValueError(f"{dataset_url}: video {video_id!r} has no frames before {stop}")
    frames, masks = np.stack(frames), np.stack(masks)
    plate = np.empty((h, w, 3), np.uint8)
    for r in range(0, h, ROWS_PER_BLOCK):
        block = frames[:, r:r + ROWS_PER_BLOCK].astype(np.float32)
        hidden = masks[:, r:r + ROWS_PER_BLOCK]
        everywhere = np.median(block, axis=0)
        block[hidden] = np.nan
        with warnings.catch_warnings():  # a pixel hidden in every frame: "All-NaN slice", handled below
            warnings.simplefilter("ignore", RuntimeWarning)
            seen = np.nanmedian(block, axis=0)
        plate[r:r + ROWS_PER_BLOCK] = np.where(np.isnan(seen), everywhere, seen).round().astype(np.uint8)
    return plate
