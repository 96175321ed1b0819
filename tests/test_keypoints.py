"""The dancer tracker, keypoint cleanup and face box on poses whose answers are known."""
import numpy as np
import pytest

from edn.pose.cleanup import DETECTED, DROPPED, INTERPOLATED, MISSING, CleanupConfig, clean_keypoints
from edn.pose.face import face_box, face_box_size
from edn.pose.layout import BODY, N_KEYPOINTS, B
from edn.pose.track import DancerTracker, TrackConfig, torso_colour


def person(cx, cy, size, conf=1.0):
    """A pose whose body keypoints spread over a `size`-high box centred at (cx, cy)."""
    p = np.zeros((N_KEYPOINTS, 3), np.float32)
    offsets = np.linspace(-0.5, 0.5, 25)
    p[BODY, 0] = cx + 0.3 * size * np.sin(np.arange(25))
    p[BODY, 1] = cy + size * offsets
    p[BODY, 2] = conf
    return p


def track_dancer(frames, width, height, cfg=None, images=None):
    """The dancer's pose in each frame (None where not found) and the number of acquisitions."""
    tracker = DancerTracker(width, height, cfg)
    looks = [None] * len(frames) if images is None else \
        [[torso_colour(image, p) for p in people] for people, image in zip(frames, images)]
    return [tracker(people, look) for people, look in zip(frames, looks)], tracker.acquisitions


def test_the_dancer_is_followed_not_the_bigger_bystander_walking_in():
    frames = []
    for i in range(60):
        dancer = person(200 + 2 * i, 200, 150)          # central, moving right
        people = [dancer]
        if i >= 20:                                     # a bigger person enters at the left edge
            people.append(person(40 + i, 220, 260))
        if 30 <= i < 33:                                # the dancer is missed for 3 frames
            people = people[1:]
        frames.append(np.stack(people))
    chosen, acquisitions = track_dancer(frames, 400, 400, TrackConfig())
    assert acquisitions == 1
    for i, pose in enumerate(chosen):
        if 30 <= i < 33:
            assert pose is None                         # a gap, not a switch to the bystander
        else:
            assert pose[B["Nose"], 0] == pytest.approx(person(200 + 2 * i, 200, 150)[B["Nose"], 0])


def test_first_frame_prefers_large_and_central():
    small_centre, big_corner, big_centre = person(200, 200, 100), person(30, 60, 120), person(210, 190, 180)
    chosen, _ = track_dancer([np.stack([small_centre, big_corner, big_centre])], 400, 400)
    assert np.array_equal(chosen[0], big_centre)
    chosen, _ = track_dancer([np.stack([small_centre, big_corner])], 400, 400)
    assert np.array_equal(chosen[0], small_centre)    # 120 px in the corner loses to 100 px in the middle


def test_a_lost_dancer_is_acquired_afresh_after_the_limit():
    frames = [np.stack([person(100, 200, 150)])] * 5 + [np.stack([person(300, 200, 150)])] * 30
    chosen, acquisitions = track_dancer(frames, 400, 400, TrackConfig(reacquire_after=10))
    assert acquisitions == 2
    assert all(p is None for p in chosen[5:16]) and chosen[16] is not None


def test_a_dancer_who_leaves_is_not_swapped_for_a_passer_by_of_another_size():
    # the dancer (150 px) leaves for 40 frames while a passer-by (240 px, nearer the camera) is in view
    frames = [np.stack([person(200, 200, 150)])] * 10 + [np.stack([person(100 + 4 * i, 210, 240)]) for i in range(40)]
    frames += [np.stack([person(205, 200, 150)])] * 5
    chosen, acquisitions = track_dancer(frames, 400, 400, TrackConfig(reacquire_after=10))
    assert all(p is None for p in chosen[10:50]) and acquisitions == 2
    assert chosen[50][B["Nose"], 0] == pytest.approx(person(205, 200, 150)[B["Nose"], 0])
    # a cut to another shot: after forget_after frames without the dancer anyone may be taken
    chosen, _ = track_dancer(frames, 400, 400, TrackConfig(reacquire_after=10, forget_after=20))
    assert all(p is None for p in chosen[10:31]) and chosen[31] is not None


def test_a_passer_by_of_the_dancers_size_in_other_clothes_is_not_taken():
    # the dancer (red shirt, left) leaves for 40 frames; a passer-by of the same size in blue stands right
    image = np.zeros((400, 400, 3), np.uint8)
    image[:, :200] = (200, 40, 40)
    image[:, 200:] = (40, 40, 200)
    frames = [np.stack([person(100, 200, 150)])] * 10 + [np.stack([person(300, 200, 150)])] * 40
    frames += [np.stack([person(105, 200, 150), person(300, 200, 150)])] * 5
    chosen, acquisitions = track_dancer(frames, 400, 400, TrackConfig(reacquire_after=10), [image] * len(frames))
    assert all(p is None for p in chosen[10:50]) and acquisitions == 2
    assert chosen[50][B["Nose"], 0] == pytest.approx(person(105, 200, 150)[B["Nose"], 0])
    # without seeing the frames, size alone cannot tell them apart
    chosen, _ = track_dancer(frames, 400, 400, TrackConfig(reacquire_after=10))
    assert chosen[30] is not None


def test_gaps_threshold_and_flags():
    n = 20
    poses = np.zeros((n, N_KEYPOINTS, 3), np.float32)
    poses[:, 0] = [(i * 2.0, 10.0, 0.9) for i in range(n)]       # always there
    poses[:, 1] = [(5.0, i * 3.0, 0.8) for i in range(n)]
    poses[4:7, 1] = 0                                            # a 3-frame gap: filled
    poses[10:18, 1] = 0                                          # an 8-frame gap: too long
    poses[:, 2] = (1.0, 1.0, 0.05)                               # detected, but too unsure
    out, flags = clean_keypoints(poses, np.arange(n) / 30, 100, CleanupConfig(min_confidence=0.1, max_gap=5))
    assert np.all(flags[:, 0] == DETECTED) and np.all(flags[:, 2] == DROPPED) and not out[:, 2].any()
    assert np.all(flags[4:7, 1] == INTERPOLATED) and np.all(flags[10:18, 1] == MISSING)
    assert np.allclose(out[4:7, 1, :2], [(5.0, 12.0), (5.0, 15.0), (5.0, 18.0)])
    assert np.allclose(out[4:7, 1, 2], 0.8) and not out[10:18, 1].any()


def test_one_euro_smooths_jitter_and_follows_motion():
    rng = np.random.default_rng(0)
    n, fps = 300, 30.0
    t = np.arange(n) / fps
    truth = np.zeros((n, N_KEYPOINTS, 3), np.float32)
    truth[:, 0, 0] = 100 + np.where(t < 5, 0.0, 60 * (t - 5))    # still, then moving at 60 px/s
    truth[:, 0, 1] = 100
    truth[:, 0, 2] = 1
    noisy = truth.copy()
    noisy[:, 0, :2] += rng.normal(0, 2.0, (n, 2))
    cfg = CleanupConfig(max_gap=0, smoothing="one-euro")
    out, _ = clean_keypoints(noisy, t, 400, cfg)
    still, moving = slice(30, 150), slice(200, 300)
    raw_err = np.abs(noisy[still, 0, :2] - truth[still, 0, :2]).mean()
    assert np.abs(out[still, 0, :2] - truth[still, 0, :2]).mean() < 0.5 * raw_err  # jitter removed
    assert np.abs(out[moving, 0, 0] - truth[moving, 0, 0]).mean() < 3.0           # little lag when moving
    with pytest.raises(ValueError, match="smoothing"):
        clean_keypoints(noisy, t, 400, CleanupConfig(smoothing="kalman"))


def test_face_box_scales_with_height_and_stays_inside():
    assert face_box_size(512) == 128 and face_box_size(256) == 64 and face_box_size(1024) == 256
    pose = np.zeros((N_KEYPOINTS, 3), np.float32)
    pose[B["Nose"]] = (100, 80, 1)
    assert face_box(pose, 512, 256) == (68, 48, 132, 112)
    pose[B["Nose"]] = (5, 250, 1)                     # near the corner: shifted in, same size
    assert face_box(pose, 512, 256) == (0, 192, 64, 256)
    pose[B["Nose"]] = 0
    assert face_box(pose, 512, 256) is None
