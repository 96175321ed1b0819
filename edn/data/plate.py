"""A video's empty scene (a "clean plate"): what its camera sees without the dancer.

Each pixel is the median over sampled frames in which the dancer is not near it (outside the
box around the dancer's keypoints, widened by `margin` of its size, since clothes and hair reach
past the joints); frames without the dancer count everywhere. Pixels the dancer covers in every
sampled frame (a dancer who keeps to one spot) are filled in from the scene around them
(cv2.inpaint), never from the dancer. Rendering shows the plate wherever the source has no pose
(the dancer left the frame), instead of what the generator paints from an empty figure.
"""
from __future__ import annotations

import warnings

import cv2
import numpy as np

from edn.data.reader import video_frames
from edn.errors import DataError
from edn.pose.layout import BODY, BODY_PAIRS, B, has_pose

ROWS_PER_BLOCK = 64  # the median runs a block of rows at a time: bounded memory at any frame size


def dancer_mask(pose: np.ndarray, width: int, height: int, girth: float = 0.2) -> np.ndarray:
    """(H, W) bool: where the dancer may be in this frame (nothing without a pose): the skeleton
    drawn with limbs `girth` of the body's size thick (clothes and hair reach past the joints),
    the torso filled from the shoulders down to the knees (a skirt flares), every other keypoint
    as a disc."""
    mask = np.zeros((height, width), np.uint8)
    if not has_pose(pose[None])[0]:
        return mask.astype(bool)
    seen = pose[:, 2] > 0
    pts = pose[seen, :2]
    size = max(float(np.ptp(pose[BODY][seen[BODY], 1])), float(np.ptp(pose[BODY][seen[BODY], 0])), 8.0)
    thick = max(2, int(round(girth * size)))
    xy = np.round(pose[:, :2]).astype(np.int32)
    for a, b in BODY_PAIRS:
        if seen[a] and seen[b]:
            cv2.line(mask, tuple(xy[a]), tuple(xy[b]), 1, thick)
    torso = [B[k] for k in ("RShoulder", "LShoulder", "LHip", "RHip", "LKnee", "RKnee")]
    if seen[torso].sum() >= 3:
        cv2.fillConvexPoly(mask, cv2.convexHull(xy[torso][seen[torso]]), 1)
    for x, y in np.round(pts).astype(int):
        cv2.circle(mask, (int(x), int(y)), thick, 1, -1)
    if seen[B["Nose"]]:  # the head: hair and skull around the face's points
        cv2.circle(mask, tuple(xy[B["Nose"]]), int(round(1.3 * thick)) + 1, 1, -1)
    return mask.astype(bool)


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
        raise DataError(f"{dataset_url}: video {video_id!r} has no frames before {stop}")
    frames, masks = np.stack(frames), np.stack(masks)
    plate = np.zeros((h, w, 3), np.uint8)
    for r in range(0, h, ROWS_PER_BLOCK):
        block = frames[:, r:r + ROWS_PER_BLOCK].astype(np.float32)
        block[masks[:, r:r + ROWS_PER_BLOCK]] = np.nan
        with warnings.catch_warnings():  # a pixel hidden in every frame: "All-NaN slice", filled below
            warnings.simplefilter("ignore", RuntimeWarning)
            seen = np.nanmedian(block, axis=0)
        plate[r:r + ROWS_PER_BLOCK] = np.nan_to_num(seen).round().astype(np.uint8)
    never_seen = masks.all(0)
    if never_seen.all():
        raise DataError(f"{dataset_url}: video {video_id!r}: the dancer covers the whole frame in every sampled "
                         "frame; no empty scene can be made")
    if never_seen.any():
        plate = cv2.inpaint(plate, never_seen.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    return plate
