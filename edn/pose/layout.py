"""OpenPose keypoint layout: BODY_25 body, 70 face points, 21 points per hand.

A pose is one float32 array of shape (137, 3): rows are keypoints in the order
body (25) | face (70) | left hand (21) | right hand (21); columns are x, y in pixels
of the image the pose belongs to, and a confidence in [0, 1] (0 = missing).
"Left" and "right" are the person's own, as in OpenPose.
"""
from __future__ import annotations

import numpy as np

BODY_25 = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "MidHip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye",
    "REar", "LEar", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)
B = {name: i for i, name in enumerate(BODY_25)}

N_BODY, N_FACE, N_HAND = 25, 70, 21
BODY = slice(0, N_BODY)
FACE = slice(N_BODY, N_BODY + N_FACE)
LHAND = slice(N_BODY + N_FACE, N_BODY + N_FACE + N_HAND)
RHAND = slice(N_BODY + N_FACE + N_HAND, N_BODY + N_FACE + 2 * N_HAND)
N_KEYPOINTS = N_BODY + N_FACE + 2 * N_HAND  # 137

# OpenPose's render order for BODY_25 limbs; a limb takes the colour of its second keypoint.
BODY_PAIRS = (
    (1, 8), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11),
    (8, 12), (12, 13), (13, 14), (1, 0), (0, 15), (15, 17), (0, 16), (16, 18),
    (14, 19), (19, 20), (14, 21), (11, 22), (22, 23), (11, 24),
)
BODY_COLORS = (  # RGB, per keypoint (OpenPose POSE_BODY_25_COLORS_RENDER)
    (255, 0, 85), (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0),
    (85, 255, 0), (0, 255, 0), (255, 0, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255),
    (0, 170, 255), (0, 85, 255), (0, 0, 255), (255, 0, 170), (170, 0, 255), (255, 0, 255),
    (85, 0, 255), (0, 0, 255), (0, 0, 255), (0, 0, 255), (0, 255, 255), (0, 255, 255),
    (0, 255, 255),
)

# 68-point face (dlib/OpenPose order) plus the two pupils (68 right, 69 left).
FACE_JAW = tuple(range(0, 17))
FACE_RBROW, FACE_LBROW = tuple(range(17, 22)), tuple(range(22, 27))
FACE_NOSE_BRIDGE, FACE_NOSE_BOTTOM = tuple(range(27, 31)), tuple(range(31, 36))
FACE_REYE, FACE_LEYE = tuple(range(36, 42)), tuple(range(42, 48))
FACE_OUTER_LIPS, FACE_INNER_LIPS = tuple(range(48, 60)), tuple(range(60, 68))
FACE_POLYLINES = (  # (points, closed)
    (FACE_JAW, False), (FACE_RBROW, False), (FACE_LBROW, False), (FACE_NOSE_BRIDGE, False),
    (FACE_NOSE_BOTTOM, False), (FACE_REYE, True), (FACE_LEYE, True),
    (FACE_OUTER_LIPS, True), (FACE_INNER_LIPS, True),
)

# Hand: 0 wrist, then 4 joints for each of thumb, index, middle, ring, pinky.
HAND_PAIRS = tuple(
    (0 if j == 0 else 1 + 4 * f + j - 1, 1 + 4 * f + j) for f in range(5) for j in range(4)
)
_FINGER_BASE = ((255, 0, 0), (255, 255, 0), (0, 255, 125), (0, 125, 255), (255, 0, 255))
HAND_COLORS = ((100, 100, 100),) + tuple(
    tuple(int(c * s) for c in base) for base in _FINGER_BASE for s in (0.4, 0.6, 0.8, 1.0)
)


def body_height(pose: np.ndarray, min_conf: float = 0.1) -> float:
    """Nose to ankle-midpoint distance in pixels (the paper's body height); nan if not visible."""
    nose, ra, la = pose[B["Nose"]], pose[B["RAnkle"]], pose[B["LAnkle"]]
    ankles = [a[:2] for a in (ra, la) if a[2] >= min_conf]
    if nose[2] < min_conf or not ankles:
        return float("nan")
    return float(np.linalg.norm(np.mean(ankles, axis=0) - nose[:2]))


def ankle_y(pose: np.ndarray, min_conf: float = 0.1) -> float:
    """Lowest visible ankle's y (the paper's floor position of the body); nan if none."""
    ys = [pose[B[k], 1] for k in ("RAnkle", "LAnkle") if pose[B[k], 2] >= min_conf]
    return float(max(ys)) if ys else float("nan")


MIN_BODY_KEYPOINTS = 2  # fewer body keypoints draw no figure worth training or rendering from


def has_pose(poses: np.ndarray) -> np.ndarray:
    """(N, 137, 3) poses -> (N,) bool: the frame has the dancer's pose (at least
    MIN_BODY_KEYPOINTS body keypoints). Frames without one (the dancer not found, out of the
    frame, turned away from the detector) cannot teach or drive the generator."""
    return (np.asarray(poses)[:, BODY, 2] > 0).sum(1) >= MIN_BODY_KEYPOINTS
