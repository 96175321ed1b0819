"""A video's empty scene (a "clean plate"): what its camera sees without the dancer.

Each pixel is the median over sampled frames in which the dancer is not near it (outside a mask
drawn around her skeleton, `dancer_mask`); frames without the dancer count everywhere. The mask's
limbs are drawn at several girths, thickest first: a pixel takes its median at the thickest girth
that leaves it seen in at least MIN_SEEN frames (clothes and hair reach past the joints, so a thick
mask keeps the dancer out of the plate), else at a thinner one. A dancer who keeps to one spot hides
a thick mask's whole area in every frame, but shows the room between her limbs to a thinner one as
she moves them (the torso, a skirt's flare, the head and the feet, whose shadow lies on the floor,
keep their full margin at every girth). A pixel seen in fewer frames at every girth takes the
thickest girth's median of what there is; only pixels the thickest mask hides in every sampled frame
are filled in from the scene around them (cv2.inpaint), never from the dancer. The plate is a base
model's room (edn.data.reference), and rendering shows it wherever the source has no pose (the
dancer left the frame), instead of what the generator paints from an empty figure.
"""
from __future__ import annotations

import cv2
import numpy as np

from edn.data.reader import video_frames
from edn.errors import DataError
from edn.pose.layout import BODY, BODY_PAIRS, B, has_pose

ROWS_PER_BLOCK = 64  # the median runs a block of rows at a time: bounded memory at any frame size
GIRTHS = (0.2, 0.14, 0.1)  # the mask's limb widths, of the body's size, tried thickest first
# frames a thinner girth must see a pixel in: fewer would let the one frame in which a detector
# missed a limb (or the mask a sleeve) put the dancer into the plate
MIN_SEEN = 8
FEET = {B[k] for k in ("RAnkle", "LAnkle", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel")}


def dancer_mask(pose: np.ndarray, width: int, height: int, girth: float = 0.2) -> np.ndarray:
    """(H, W) bool: where the dancer may be in this frame (nothing without a pose): the skeleton
    drawn with limbs `girth` of the body's size thick (clothes and hair reach past the joints),
    every keypoint as a disc as wide; the torso filled from the shoulders down to the knees, the
    head and the feet, each with the margin of the thickest girth whatever `girth` is (a skirt
    flares, hair falls, a sleeve puffs at the shoulder, a shadow spreads on the floor)."""
    mask = np.zeros((height, width), np.uint8)
    if not has_pose(pose[None])[0]:
        return mask.astype(bool)
    seen = pose[:, 2] > 0
    size = max(float(np.ptp(pose[BODY][seen[BODY], 1])), float(np.ptp(pose[BODY][seen[BODY], 0])), 8.0)
    thick, margin = (max(2, int(round(g * size))) for g in (girth, GIRTHS[0]))
    xy = np.round(pose[:, :2]).astype(np.int32)
    for a, b in BODY_PAIRS:
        if seen[a] and seen[b]:
            cv2.line(mask, tuple(xy[a]), tuple(xy[b]), 1, thick)
    torso = [B[k] for k in ("RShoulder", "LShoulder", "LHip", "RHip", "LKnee", "RKnee")]
    if seen[torso].sum() >= 3:
        hull = cv2.convexHull(xy[torso][seen[torso]])
        cv2.fillConvexPoly(mask, hull, 1)
        cv2.polylines(mask, [hull], True, 1, margin)
    for k in np.flatnonzero(seen):  # a foot's disc as wide as the torso's margin: its shadow spreads on the floor
        cv2.circle(mask, tuple(xy[k]), margin if k in FEET else thick, 1, -1)
    if seen[B["Nose"]]:  # the head: hair and skull around the face's points
        cv2.circle(mask, tuple(xy[B["Nose"]]), int(round(1.3 * margin)) + 1, 1, -1)
    return mask.astype(bool)


def background_plate(dataset_url: str, video_id: str, stop: int, size: tuple[int, int],
                     samples: int = 160) -> np.ndarray:
    """The empty scene of frames [0, stop) of a video, at `size` (W, H): (H, W, 3) uint8."""
    w, h = size
    wanted = set(np.linspace(0, stop - 1, min(samples, stop)).round().astype(int).tolist())
    frames, poses = [], []
    for index, images, frame_poses in video_frames(dataset_url, video_id, stop=stop):
        scale = np.array([w / images.shape[2], h / images.shape[1], 1], np.float32)
        for i, image, pose in zip(index.tolist(), images, frame_poses):
            if i in wanted:
                frames.append(image if image.shape[:2] == (h, w) else cv2.resize(image, (w, h),
                                                                                 interpolation=cv2.INTER_AREA))
                poses.append(pose * scale)
    if not frames:
        raise DataError(f"{dataset_url}: video {video_id!r} has no frames before {stop}")
    frames = np.stack(frames)
    medians = [_unmasked_median(frames, np.stack([dancer_mask(p, w, h, girth) for p in poses])) for girth in GIRTHS]
    enough = min(MIN_SEEN, len(frames))
    plate, hidden = np.zeros((h, w, 3), np.uint8), np.ones((h, w), bool)
    for (median, seen), least in [(m, enough) for m in medians] + [(medians[0], 1)]:
        take = hidden & (seen >= least)
        plate[take], hidden = median[take], hidden & ~take
    if hidden.all():
        raise DataError(f"{dataset_url}: video {video_id!r}: the dancer covers the whole frame in every sampled "
                         "frame; no empty scene can be made")
    if hidden.any():
        plate = cv2.inpaint(plate, hidden.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    return plate


def _unmasked_median(frames: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the median of `frames` (N, H, W, 3) where `masks` (N, H, W) is False (uint8,
    0 where every frame is masked), and in how many frames that was (H, W)."""
    h, w = frames.shape[1:3]
    median, seen = np.zeros((h, w, 3), np.uint8), (~masks).sum(0)
    for r in range(0, h, ROWS_PER_BLOCK):
        block = frames[:, r:r + ROWS_PER_BLOCK].astype(np.float32)
        block[masks[:, r:r + ROWS_PER_BLOCK]] = np.nan
        # a sort puts the masked (NaN) values last: the median of the k seen ones is the middle of
        # the first k (np.nanmedian's answer, at a sort's cost instead of a masked array's)
        ranked, k = np.sort(block, axis=0), seen[None, r:r + ROWS_PER_BLOCK, :, None]
        lower = np.take_along_axis(ranked, np.maximum(k - 1, 0) // 2, 0)[0]
        upper = np.take_along_axis(ranked, (k // 2).clip(max=len(frames) - 1), 0)[0]
        middle = np.where(k[0] > 0, (lower + upper) / 2, 0)
        median[r:r + ROWS_PER_BLOCK] = middle.round().astype(np.uint8)
    return median, seen
