import numpy as np
import pytest

from edn.pose.layout import N_KEYPOINTS, B, ankle_y, body_height
from edn.pose.normalize import FloorStats, floor_stats, floor_stats_or_reason, normalize_poses


def stick(x, ankle, height):
    """A pose with nose and both ankles: body height `height`, feet at y=`ankle`."""
    p = np.zeros((N_KEYPOINTS, 3), np.float32)
    p[B["Nose"]] = (x, ankle - height, 1)
    p[B["RAnkle"]] = (x - 5, ankle, 1)
    p[B["LAnkle"]] = (x + 5, ankle, 1)
    p[B["Neck"]] = (x, ankle - 0.85 * height, 1)
    return p


def walk(width, far, close, h_far, h_close, n=200, x=100.0):
    """A dancer moving between far and close with perspective (height linear in floor y), most of
    the time towards the back, so that the paper's far rule (within alpha of the median) keeps
    the true far end."""
    ys = far + (close - far) * (0.5 - 0.5 * np.cos(np.linspace(0, 6 * np.pi, n))) ** 2
    hs = h_far + (ys - far) / (close - far) * (h_close - h_far)
    return np.stack([stick(x, y, h) for y, h in zip(ys, hs)])


def test_stats_are_robust_to_outlier_frames():
    poses = walk(400, far=250, close=350, h_far=120, h_close=200)
    poses[10] = stick(100, 395, 230)   # one mis-detection below the floor
    poses[11, :, 2] = 0                # one frame with nothing detected
    s = floor_stats(poses, 400, 400)
    assert s.close == pytest.approx(350, abs=2) and s.far == pytest.approx(250, abs=2)
    assert s.height_close == pytest.approx(200, rel=0.02) and s.height_far == pytest.approx(120, rel=0.03)
    assert floor_stats_or_reason(poses, 400, 400) == (s, None)
    poses[:, B["RAnkle"], 2] = poses[:, B["LAnkle"], 2] = 0  # feet never seen: no statistics, and why
    assert floor_stats_or_reason(poses, 400, 400) == (None, "no frame has both a visible nose and a visible ankle")


def test_source_maps_onto_target_floor_and_scale():
    src = walk(400, far=200, close=380, h_far=100, h_close=180)
    tgt = walk(400, far=250, close=330, h_far=150, h_close=210, n=150)
    s, t = floor_stats(src, 400, 400), floor_stats(tgt, 400, 400)
    out = normalize_poses(src, s, t)
    # the source's extremes land on the target's, at the target's heights (within 3%)
    i_close, i_far = np.argmax([ankle_y(p) for p in src]), np.argmin([ankle_y(p) for p in src])
    assert ankle_y(out[i_close]) == pytest.approx(t.close, rel=0.03)
    assert ankle_y(out[i_far]) == pytest.approx(t.far, rel=0.03)
    assert body_height(out[i_close]) == pytest.approx(t.height_close, rel=0.03)
    assert body_height(out[i_far]) == pytest.approx(t.height_far, rel=0.03)
    # every frame: scale and floor position interpolate linearly in the source's floor position
    r = (np.array([ankle_y(p) for p in src]) - s.far) / (s.close - s.far)
    c = t.height_far / s.height_far + r * (t.height_close / s.height_close - t.height_far / s.height_far)
    assert np.allclose([ankle_y(p) for p in out], t.far + r * (t.close - t.far), atol=0.01)
    assert np.allclose([body_height(p) for p in out], c * [body_height(p) for p in src], rtol=1e-4)


def test_widths_and_missing_points():
    src = walk(200, far=100, close=180, h_far=50, h_close=90)
    src[:, B["Neck"], 2] = 0
    t = FloorStats(close=300, far=250, height_close=160, height_far=120, width=400, height=400)
    out = normalize_poses(src, floor_stats(src, 200, 200), t)
    assert np.all(out[:, B["Neck"]] == 0)               # missing stays missing
    assert out[0, B["Nose"], 0] == pytest.approx(200, abs=1)  # x=100 of 200 -> 200 of 400
