"""OpenPose-style stick figures."""

import cv2
import numpy as np
import pytest

from edn.pose.draw import draw_pose
from edn.pose.layout import (
    BODY_COLORS,
    BODY_PAIRS,
    FACE,
    HAND_COLORS,
    HAND_PAIRS,
    LHAND,
    N_KEYPOINTS,
    RHAND,
    B,
)


def star_pose(scale: float = 1.0) -> np.ndarray:
    """A dancer with arms and legs spread wide in a 128 x 128 image (times `scale`): every limb
    stands apart from the others. Body only."""
    pose = np.zeros((N_KEYPOINTS, 3), np.float32)
    points = {
        "Nose": (64, 22), "Neck": (64, 38), "RShoulder": (50, 40), "RElbow": (34, 30), "RWrist": (20, 16),
        "LShoulder": (78, 40), "LElbow": (94, 30), "LWrist": (108, 16), "MidHip": (64, 72),
        "RHip": (56, 72), "RKnee": (44, 92), "RAnkle": (34, 114), "LHip": (72, 72), "LKnee": (84, 92),
        "LAnkle": (94, 114), "REye": (59, 18), "LEye": (69, 18), "REar": (53, 21), "LEar": (75, 21),
        "LBigToe": (106, 119), "LSmallToe": (110, 116), "LHeel": (92, 122), "RBigToe": (22, 119),
        "RSmallToe": (18, 116), "RHeel": (36, 122),
    }
    for name, xy in points.items():
        pose[B[name]] = (*np.multiply(xy, scale), 1.0)
    return pose


def _segment_distance(pts, p, q):
    d = q - p
    t = np.clip(((pts - p) @ d) / (d @ d), 0, 1)
    return np.hypot(*(pts - (p + t[:, None] * d)).T)


def test_limbs_take_their_second_keypoints_openpose_colour():
    pose = star_pose(4.0)  # 512 x 512
    img = draw_pose(pose, 512, 512)
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8
    checked = 0
    for a, b in BODY_PAIRS:
        p, q = pose[a, :2], pose[b, :2]
        mid = (p + q) / 2
        # skip limbs whose middle another limb or a joint disc covers
        others = [_segment_distance(mid[None], pose[c, :2], pose[d, :2])[0] for c, d in BODY_PAIRS if (c, d) != (a, b)]
        joints = np.hypot(*(pose[:25, :2] - mid).T)
        if min(others) < 20 or joints.min() < 20:
            continue
        assert tuple(img[int(round(mid[1])), int(round(mid[0]))]) == BODY_COLORS[b], (a, b)
        checked += 1
    assert checked >= 12  # arms, legs, spine, shoulders, hips
    # joints are discs of their own colour
    for name in ("RWrist", "LKnee", "Neck"):
        x, y = pose[B[name], :2].astype(int)
        assert tuple(img[y, x]) == BODY_COLORS[B[name]]
    assert not img[5, 5].any() and not img[300, 250].any()  # black elsewhere


def test_face_is_white_and_hands_use_hand_colours():
    pose = star_pose(4.0)
    # a face: a 70-point ring around the nose; hands: straight fingers fanning from each wrist
    angles = np.linspace(0, 2 * np.pi, 70, endpoint=False)
    pose[FACE] = np.stack([256 + 40 * np.cos(angles), 90 + 50 * np.sin(angles), np.ones(70)], 1)
    for rows, wrist, side in ((LHAND, pose[B["LWrist"], :2], 1), (RHAND, pose[B["RWrist"], :2], -1)):
        hand = np.zeros((21, 3), np.float32)
        hand[0] = (*wrist, 1)
        for f in range(5):  # fanning down and away from the body, clear of the forearm
            angle = 1.6 + 0.3 * f
            direction = np.array([-side * np.cos(angle), np.sin(angle)])
            for j in range(4):
                hand[1 + 4 * f + j] = (*(wrist + direction * 16 * (j + 1)), 1)
        pose[rows] = hand
    img = draw_pose(pose, 512, 512)
    jaw_mid = (pose[FACE][0, :2] + pose[FACE][1, :2]) / 2
    assert img[int(round(jaw_mid[1])), int(round(jaw_mid[0]))].min() > 200  # white line
    for rows in (LHAND, RHAND):
        hand = pose[rows, :2]
        for a, b in HAND_PAIRS:
            if a == 0:  # bones from the wrist overlap where the fingers fan out
                continue
            mid = (hand[a] + hand[b]) / 2
            assert tuple(img[int(round(mid[1])), int(round(mid[0]))]) == HAND_COLORS[b]


def test_low_confidence_points_are_not_drawn():
    assert not draw_pose(np.zeros((N_KEYPOINTS, 3), np.float32), 64, 64).any()
    pose = star_pose()
    pose[B["RElbow"], 2] = 0.05  # below min_conf=0.1: the elbow and both its limbs vanish
    img = draw_pose(pose, 128, 128)
    elbow, shoulder, wrist = (pose[B[k], :2] for k in ("RElbow", "RShoulder", "RWrist"))
    for x, y in (elbow, (elbow + shoulder) / 2, (elbow + wrist) / 2):
        assert not img[int(round(y)), int(round(x))].any()
    assert draw_pose(pose, 128, 128, min_conf=0.01)[int(elbow[1]), int(elbow[0])].any()
    nan_pose = star_pose()
    nan_pose[B["LKnee"]] = np.nan
    assert draw_pose(nan_pose, 128, 128).shape == (128, 128, 3)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_the_figure_is_the_same_at_every_resolution(size):
    """Drawn at `size`, the figure matches the one drawn at 1024 px and shrunk to `size`."""
    pose = star_pose(size / 128)
    img = draw_pose(pose, size, size).astype(float)
    k = 1024 / size
    big_pose = pose.copy()
    big_pose[:, :2] = (pose[:, :2] + 0.5) * k - 0.5  # the same pixel centres at 1024 px
    big = draw_pose(big_pose, 1024, 1024)
    reference = cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA).astype(float)
    assert img.mean() == pytest.approx(reference.mean(), rel=0.12)  # the same amount of ink
    assert np.abs(img - reference).mean() < 0.25 * reference.mean()  # in the same places
    # limb width grows with the height: the spine's width across its middle
    row = img[int(round(55 * size / 128))]
    spine = np.flatnonzero(np.abs(row - BODY_COLORS[B["MidHip"]]).max(1) < 80)
    assert abs(len(spine) - 6 * size / 256) <= 1.5


def test_thickness_and_non_square_images():
    pose = star_pose()
    pose[:, 0] += 64  # into a 256 x 128 (W x H) image
    thin, thick = draw_pose(pose, 256, 128), draw_pose(pose, 256, 128, thickness=3.0)
    assert thin.shape == (128, 256, 3)
    assert (thick.max(2) > 0).sum() > 2 * (thin.max(2) > 0).sum()


def test_draw_pose_draws_face_and_hands():
    # (its speed, ~1 ms a frame, is the render benchmark's business: edn bench render)
    pose = star_pose(2.0)
    pose[FACE] = np.stack([128 + 20 * np.cos(np.arange(70)), 40 + 25 * np.sin(np.arange(70)), np.ones(70)], 1)
    pose[LHAND] = pose[RHAND] = np.stack([np.full(21, 128.0), np.linspace(60, 100, 21), np.ones(21)], 1)
    image = draw_pose(pose, 256, 256)
    for x, y in np.round(np.concatenate([pose[FACE, :2], pose[LHAND, :2]])).astype(int):
        assert image[y - 1:y + 2, x - 1:x + 2].max() > 0, (x, y)
