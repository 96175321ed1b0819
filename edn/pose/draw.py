"""OpenPose-style stick figures: the pose images the GAN is conditioned on.

Body limbs are filled ellipses in OpenPose's colours (a limb takes its second keypoint's colour),
joints are discs, the face is white polylines and hands use OpenPose's hand colours. All sizes
are fractions of the image height and coordinates are drawn at 1/16 pixel (SHIFT), so a pose
drawn at 64 px and at 512 px is the same picture at two resolutions.
"""
from __future__ import annotations

import cv2
import numpy as np

from edn.pose.layout import (
    BODY_COLORS,
    BODY_PAIRS,
    FACE,
    FACE_POLYLINES,
    HAND_COLORS,
    HAND_PAIRS,
    LHAND,
    N_KEYPOINTS,
    RHAND,
)

SHIFT = 4
ONE = 1 << SHIFT
AA = cv2.LINE_AA
# Sizes at thickness 1.0, as fractions of the image height.
LIMB_HALF_WIDTH = 3.0 / 256
JOINT_RADIUS = 3.5 / 256
HAND_HALF_WIDTH = 1.5 / 256
FACE_LINE = 1.0 / 256
SUPERSAMPLE_BELOW = 200  # px of image height
AA_RIM = 0.5  # px that OpenCV's anti-aliased edge adds around every filled shape
_ELLIPSE = np.linspace(0, 2 * np.pi, 20, endpoint=False)
_COS, _SIN = np.cos(_ELLIPSE)[None, :, None], np.sin(_ELLIPSE)[None, :, None]
# cv2 wants colours as tuples of Python ints
_BODY_COLORS = [tuple(int(v) for v in c) for c in BODY_COLORS]
_HAND_COLORS = [tuple(int(v) for v in c) for c in HAND_COLORS]
_FACE_SEGMENTS = np.array([(pts[i], pts[(i + 1) % len(pts)]) for pts, closed in FACE_POLYLINES
                           for i in range(len(pts) if closed else len(pts) - 1)])


def _fx(points: np.ndarray) -> np.ndarray:
    return np.round(points * ONE).astype(np.int32)


def _limbs(img, pts, ok, pairs, colors, half_width) -> None:
    """Each pair whose ends are both confident as an ellipse spanning the two points."""
    pairs = np.asarray(pairs)
    keep = ok[pairs[:, 0]] & ok[pairs[:, 1]]
    if not keep.any():
        return
    p, q = pts[pairs[keep, 0]], pts[pairs[keep, 1]]
    d = (q - p) / 2  # all ellipses at once: (limbs, 20 points, xy)
    half_width = max(half_width - AA_RIM, 0.25)
    n = np.stack([-d[:, 1], d[:, 0]], 1) / (np.hypot(d[:, 0], d[:, 1])[:, None] + 1e-9) * half_width
    polys = _fx((p + q)[:, None] / 2 + _COS * d[:, None] + _SIN * n[:, None])
    for poly, b in zip(polys, pairs[keep, 1].tolist()):
        cv2.fillConvexPoly(img, poly, colors[b], AA, SHIFT)


def _joints(img, pts, ok, colors, radius) -> None:
    r = max(1, int(round(max(radius - AA_RIM, 0.25) * ONE)))
    for i, (x, y) in zip(np.flatnonzero(ok).tolist(), _fx(pts[ok]).tolist()):
        cv2.circle(img, (x, y), r, colors[i], -1, AA, SHIFT)


def draw_pose(pose: np.ndarray, width: int, height: int, *, min_conf: float = 0.1,
              thickness: float | None = None, body_colors: np.ndarray | None = None) -> np.ndarray:
    """(137, 3) pose in pixels of a (height, width) image -> (height, width, 3) uint8 RGB figure
    on black. `thickness` multiplies the default sizes (which scale with the image height);
    `body_colors` (25, 3), per body keypoint, replaces OpenPose's (an appearance figure)."""
    pose = np.asarray(pose, np.float32)
    if pose.shape != (N_KEYPOINTS, 3):
        raise ValueError(f"pose must have shape ({N_KEYPOINTS}, 3), got {pose.shape}")
    # OpenCV's anti-aliasing draws sub-pixel-wide shapes about a pixel wide, which would make
    # small figures bolder than large ones: draw small images larger and shrink them.
    ss = min(4, max(1, int(np.ceil(SUPERSAMPLE_BELOW / height))))
    if ss > 1:
        big = pose.copy()
        big[:, :2] = (big[:, :2] + 0.5) * ss - 0.5  # pixel centres map to pixel centres
        img = draw_pose(big, width * ss, height * ss, min_conf=min_conf, thickness=thickness, body_colors=body_colors)
        return cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    img = np.zeros((height, width, 3), np.uint8)
    scale = height * (1.0 if thickness is None else float(thickness))
    pts = np.nan_to_num(pose[:, :2].astype(np.float64), nan=-1e4, posinf=-1e4, neginf=-1e4)
    pts = np.clip(pts, -4 * max(width, height), 4 * max(width, height))  # keep int32 safe
    ok = np.nan_to_num(pose[:, 2], nan=0.0) >= min_conf

    body = slice(0, len(BODY_COLORS))
    colors = _BODY_COLORS if body_colors is None else [tuple(int(v) for v in c) for c in body_colors]
    _limbs(img, pts[body], ok[body], BODY_PAIRS, colors, LIMB_HALF_WIDTH * scale)
    _joints(img, pts[body], ok[body], colors, JOINT_RADIUS * scale)

    face_pts, face_ok = pts[FACE], ok[FACE]
    segs = _FACE_SEGMENTS[face_ok[_FACE_SEGMENTS[:, 0]] & face_ok[_FACE_SEGMENTS[:, 1]]]
    if len(segs):
        lines = [_fx(face_pts[s]) for s in segs]  # one call for every face segment
        cv2.polylines(img, lines, False, (255, 255, 255), max(1, int(round(FACE_LINE * scale))), AA, SHIFT)

    for rows in (LHAND, RHAND):
        _limbs(img, pts[rows], ok[rows], HAND_PAIRS, _HAND_COLORS, HAND_HALF_WIDTH * scale)
        _joints(img, pts[rows], ok[rows], _HAND_COLORS, HAND_HALF_WIDTH * 1.2 * scale)
    return img
