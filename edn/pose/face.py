"""The face crop box of the face GAN: a square around the nose, 128 px at the paper's 512-high
frames and scaled with the frame height, shifted to lie inside the frame."""
from __future__ import annotations

import numpy as np

from edn.pose.layout import FACE, B

FACE_BOX_AT_512 = 128
NOSE_TIP = 30  # in the 70-point face: used when the body's nose keypoint is missing


def face_box_size(frame_height: int) -> int:
    return max(8, int(round(FACE_BOX_AT_512 * frame_height / 512)))


def face_box_side(width: int, height: int) -> int:
    """The side of every face box of a width x height frame: face_box_size, or the frame's shorter side if smaller."""
    return min(face_box_size(height), width, height)


def face_box(pose: np.ndarray, width: int, height: int, min_conf: float = 0.1) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), x1 - x0 = y1 - y0 = the box size (or the frame's shorter side, if
    smaller); None when neither the nose nor the face's nose tip is seen."""
    nose = pose[B["Nose"]]
    if nose[2] < min_conf:
        nose = pose[FACE][NOSE_TIP]
        if nose[2] < min_conf:
            return None
    size = face_box_side(width, height)
    x0 = int(np.clip(round(nose[0] - size / 2), 0, width - size))
    y0 = int(np.clip(round(nose[1] - size / 2), 0, height - size))
    return x0, y0, x0 + size, y0 + size


def boxes_array(boxes) -> np.ndarray:
    """Face boxes as stored (each x0, y0, x1, y1 or None: the dataset's nullable face_box) ->
    (N, 4) int32 with -1 rows where there is no box: the one encoding of a missing box."""
    return np.array([[-1] * 4 if b is None else list(b) for b in boxes], np.int32).reshape(-1, 4)
