"""Evaluation metric building blocks (issue 6): LPIPS weight loading, pose distance, temporal
stability and the nearest-neighbour baseline, each checked against numbers known in advance.

No ImageNet AlexNet weights exist on this machine, so the LPIPS tests save torchvision's real
AlexNet with seeded random weights in torchvision's file format and check that the metric finds
that file where it should, loads exactly those tensors, and computes LPIPS from them (against an
independent re-computation of the LPIPS formula), and that it refuses to run without it.
"""
from __future__ import annotations

import math
import os
import time

import fsspec
import numpy as np
import pytest
import torch
import torchvision
from torch.nn import functional as F

from edn.eval import lpips_metric
from edn.eval import pose_distance as pd
from edn.eval import stability as st
from edn.eval.lpips_metric import LpipsMetric, LpipsUnavailable, LpipsWeightsInvalid, LpipsWeightsMissing
from edn.eval.nearest_neighbour import NearestNeighbour
from edn.eval.promote import decide
from edn.pose.estimator import PoseEstimator, make_estimator
from edn.pose.layout import N_KEYPOINTS, B, body_height

ALEX_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's name; the module derives it from the URL
ALEX_RELUS = (1, 4, 7, 9, 11)            # relu1..relu5 in torchvision's alexnet.features


# ---------------------------------------------------------------- LPIPS

@pytest.fixture(scope="module")
def alexnet_state():
    torch.manual_seed(7)
    state = torchvision.models.alexnet(weights=None).state_dict()
    return {k: v.clone() for k, v in state.items()}


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert torch.hub.get_dir() == str(tmp_path / "torch" / "hub"), "torch.hub.set_dir was called elsewhere"
    return tmp_path / "torch" / "hub" / "checkpoints"


def _images(seed: int, n: int = 3, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _lpips_by_hand(state: dict, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """LPIPS v0.1 (alex) from its definition, with torchvision's AlexNet and lpips' shipped linear
    layers: sum over relu1..5 of the spatial mean of w_l . (unit-normalized feature difference)^2."""
    import lpips
    lins = torch.load(os.path.join(os.path.dirname(lpips.__file__), "weights/v0.1/alex.pth"), map_location="cpu",
                      weights_only=True)
    net = torchvision.models.alexnet(weights=None)
    net.load_state_dict(state)
    shift = torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1)
    scale = torch.tensor([.458, .448, .450]).view(1, 3, 1, 1)

    def feats(x):
        h, out = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1 - shift) / scale, []
        for i, layer in enumerate(net.features[:12]):
            h = layer(h) if not isinstance(layer, torch.nn.ReLU) else F.relu(h)
            if i in ALEX_RELUS:
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    with torch.no_grad():
        total = 0
        for layer, (fa, fb) in enumerate(zip(feats(a), feats(b))):
            total = total + F.conv2d((fa - fb) ** 2, lins[f"lin{layer}.model.1.weight"]).mean((1, 2, 3))
    return total.double().numpy()


def test_backbone_filename_is_torchvisions():
    assert lpips_metric.backbone("alex").filename == ALEX_FILE
    assert lpips_metric.BACKBONE_WEIGHTS["alex"].url.endswith("/" + ALEX_FILE)


def test_missing_weights_make_lpips_unavailable(torch_home, tmp_path):
    expected = str(torch_home / ALEX_FILE)
    with pytest.raises(LpipsWeightsMissing) as err:
        LpipsMetric.load()
    assert isinstance(err.value, LpipsUnavailable) and expected in str(err.value)
    assert lpips_metric.BACKBONE_WEIGHTS["alex"].url in str(err.value)  # how to supply them
    status = lpips_metric.lpips_status()
    assert status["available"] is False and status["source"] == expected and expected in status["reason"]
    url = str(tmp_path / "nowhere" / ALEX_FILE)
    with pytest.raises(LpipsUnavailable, match="nowhere"):
        LpipsMetric.load(url)
    assert lpips_metric.lpips_status(url)["available"] is False


def test_loads_torchvision_cache_and_computes_real_lpips(torch_home, alexnet_state):
    torch_home.mkdir(parents=True)
    torch.save(alexnet_state, torch_home / ALEX_FILE)  # the full file, classifier included
    assert lpips_metric.lpips_status()["available"]
    metric = LpipsMetric.load()
    assert metric.source == str(torch_home / ALEX_FILE)
    loaded = metric.model.net.state_dict()
    assert len(loaded) == 10
    for name, tensor in loaded.items():  # slice<s>.<i>.weight <- features.<i>.weight, exactly
        assert torch.equal(tensor, alexnet_state["features." + name.split(".", 1)[1]]), name
    a, b = _images(1), _images(2)
    same, diff = metric(a, a), metric(a, b)
    assert same.shape == diff.shape == (3,)
    np.testing.assert_allclose(same, 0, atol=1e-7)
    assert (diff > 0.01).all()
    np.testing.assert_allclose(diff, _lpips_by_hand(alexnet_state, a, b), rtol=1e-4)
    assert metric(a[0], b[0]).shape == (1,)
    assert abs(metric(a[:1], b[:1])[0] - diff[0]) < 1e-6  # batching does not change a value


def test_loads_features_only_from_memory_url_and_uses_them(torch_home, alexnet_state):
    torch.manual_seed(8)
    full = torchvision.models.alexnet(weights=None).state_dict()
    other = {k: v for k, v in full.items() if k.startswith("features.")}
    url = "memory://edn-test-lpips/alex-features.pth"
    with fsspec.open(url, "wb") as f:
        torch.save(other, f)
    try:
        status = lpips_metric.lpips_status(url)
        assert status["available"] and status["source"] == url
        metric = LpipsMetric.load(url)
        assert torch.equal(metric.model.net.slice1[0].weight, other["features.0.weight"])
        a, b = _images(1), _images(2)
        value = metric(a, b)
        np.testing.assert_allclose(value, _lpips_by_hand({**alexnet_state, **other}, a, b), rtol=1e-4)
        # different backbone weights, different LPIPS: the file's weights are the ones used
        assert not np.allclose(value, _lpips_by_hand(alexnet_state, a, b), rtol=1e-2)
    finally:
        fsspec.filesystem("memory").rm("/edn-test-lpips", recursive=True)


def test_corrupt_or_wrong_weights_are_errors_naming_the_file(tmp_path, alexnet_state):
    features = {k: v for k, v in alexnet_state.items() if k.startswith("features.")}  # small files
    garbage = tmp_path / ALEX_FILE
    garbage.write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(LpipsWeightsInvalid, match=str(garbage)):
        LpipsMetric.load(str(garbage))
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in features.items() if k != "features.10.weight"}, partial)
    with pytest.raises(LpipsWeightsInvalid, match=r"partial\.pth.*features\.10\.weight"):
        LpipsMetric.load(str(partial))
    wrong = tmp_path / "wrong-shape.pth"
    torch.save({**features, "features.3.weight": torch.zeros(192, 64, 3, 3)}, wrong)
    with pytest.raises(LpipsWeightsInvalid, match=r"wrong-shape\.pth"):
        LpipsMetric.load(str(wrong))
    vgg_like = tmp_path / "vgg-like.pth"
    torch.save({**features, "features.28.weight": torch.zeros(1)}, vgg_like)
    with pytest.raises(LpipsWeightsInvalid, match=r"unexpected \['features\.28\.weight'\]"):
        LpipsMetric.load(str(vgg_like))


# ---------------------------------------------------------------- pose distance

def _standing(height: float = 100.0, x: float = 50.0, top: float = 10.0) -> np.ndarray:
    """Nose at (x, top), ankles `height` below it: body height exactly `height`."""
    p = np.zeros((N_KEYPOINTS, 3), np.float32)
    for name, (dx, dy) in {"Nose": (0, 0), "Neck": (0, .15), "RShoulder": (-.12, .15), "LShoulder": (.12, .15),
                           "MidHip": (0, .5), "RHip": (-.07, .5), "LHip": (.07, .5), "RKnee": (-.07, .75),
                           "LKnee": (.07, .75), "RAnkle": (-.05, 1), "LAnkle": (.05, 1)}.items():
        p[B[name]] = (x + dx * height, top + dy * height, 1)
    return p


def test_pose_distance_exact_values():
    q = _standing()
    assert body_height(q) == pytest.approx(100)
    p = q.copy()
    p[:, :2] += (3, 4)                               # every keypoint 5 px off
    assert pd.pose_distance(p, q) == pytest.approx(0.05)
    assert pd.pose_distance(q, q) == 0
    p = q.copy()
    p[:, 2] = 0
    p[B["Nose"]] = (q[B["Nose"], 0] + 6, q[B["Nose"], 1] + 8, 1)   # 10 px
    p[B["Neck"]] = q[B["Neck"]]                                    # 0 px
    p[B["RHip"]] = (q[B["RHip"], 0] + 5, q[B["RHip"], 1], 0.5)     # 5 px; the rest unseen in p
    assert pd.pose_distance(p, q) == pytest.approx(5 / 100)
    assert pd.pose_distance(p, q, scale=10) == pytest.approx(0.5)
    p[B["RHip"], 2] = 0.05                                          # below min_conf: not seen
    assert pd.pose_distance(p, q) == pytest.approx(5 / 100)         # (10 + 0) / 2
    no_ankles = q.copy()
    no_ankles[[B["RAnkle"], B["LAnkle"]], 2] = 0                    # size: box of seen body points
    shifted = no_ankles.copy()
    shifted[:, :2] += (3, 4)
    assert pd.body_size(no_ankles) == pytest.approx(75)            # nose (y 10) to knees (y 85)
    assert pd.pose_distance(shifted, no_ankles) == pytest.approx(5 / 75)
    assert math.isnan(pd.pose_distance(np.zeros_like(q), q))      # nothing seen in both
    assert math.isnan(pd.pose_distance(q, q, parts="face"))        # no face keypoints


class _ScriptedDetector(PoseEstimator):
    """Returns the people given for each frame, recording what it was asked."""

    def __init__(self, people: list[np.ndarray]):
        self.people, self.calls, self.begun = people, [], []

    def begin(self, video_url: str) -> None:
        self.begun.append(video_url)

    def estimate(self, frame_rgb: np.ndarray, frame_index: int) -> np.ndarray:
        self.calls.append((frame_index, frame_rgb.shape))
        return self.people[frame_index]


def test_detected_pose_distance_takes_the_person_nearest_the_input():
    q = _standing()
    off5, far = q.copy(), _standing(x=300)
    off5[:, :2] += (3, 4)
    people = [q[None], np.stack([far, off5]), np.zeros((0, N_KEYPOINTS, 3), np.float32)]
    detector = _ScriptedDetector(people)
    frames = np.zeros((3, 32, 48, 3), np.uint8)
    d = pd.detected_pose_distance(detector, frames, np.stack([q, q, q]), video_id="gen-1")
    assert detector.begun == ["gen-1"] and detector.calls == [(i, (32, 48, 3)) for i in range(3)]
    assert d[0] == 0 and d[1] == pytest.approx(0.05) and math.isnan(d[2])
    assert pd.nearest_person(people[1], q) == (1, pytest.approx(0.05))
    s = pd.summarize(d)
    assert s["mean"] == pytest.approx(0.025) and s["missed"] == pytest.approx(1 / 3) and s["frames"] == 3
    with pytest.raises(ValueError, match="3 frames but 2"):
        pd.detected_pose_distance(detector, frames, np.stack([q, q]))


def test_mediapipe_on_a_synthetic_dancer():
    """The real detector on rendered frames: near the drawn pose, and far from a displaced one."""
    from edn.synth import make_dancer
    dancer = make_dancer(5, 0, 1, (256, 256))
    frames, poses = map(np.stack, zip(*[dancer.render(a) for a in dancer.poses(3)]))
    rows = [B[k] for k in ("Nose", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
                           "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle")]  # as tests/test_synth.py
    detector = make_estimator("mediapipe")
    try:
        d = pd.detected_pose_distance(detector, frames, poses, parts=rows, min_conf=0.5)
        moved = poses.copy()
        moved[:, :, 0] += 0.3 * np.array([body_height(p) for p in poses])[:, None]
        d_moved = pd.detected_pose_distance(detector, frames, moved, parts=rows, min_conf=0.5)
    finally:
        detector.close()
    print("mediapipe pose distance", d, d_moved)
    assert np.isfinite(d).all() and (d < 0.05).all()
    assert (np.abs(d_moved - 0.3) < 0.05).all()


# ---------------------------------------------------------------- temporal stability

def _ramp(n: int = 6, c: float = 2.0, size: int = 48) -> np.ndarray:
    """A video whose every pixel brightens by exactly c per frame: |real change| = c."""
    base = np.random.default_rng(0).uniform(40, 140, (size, size, 3))
    return np.stack([base + c * t for t in range(n)]).astype(np.float32)


def test_static_and_perfect_videos():
    static = np.repeat(_images(3, 1), 5, axis=0)
    assert (st.frame_changes(static) == 0).all() and st.frame_changes(static).shape == (4,)
    real = _ramp()
    assert st.change_ratio(real, real) == pytest.approx(1)
    assert (st.flicker(real, real) == 0).all()
    frozen = np.repeat(real[:1], len(real), axis=0)                 # no motion at all
    assert st.change_ratio(frozen, real) == 0
    np.testing.assert_allclose(st.flicker(frozen, real), 2.0, rtol=1e-5)  # misses the real motion
    assert math.isnan(st.change_ratio(real, frozen))                # real video never changes
    with pytest.raises(ValueError, match="differ in shape"):
        st.flicker(real, real[:-1])


def test_noise_raises_the_measures_by_the_predicted_amounts():
    sigma, c = 4.0, 2.0
    real = _ramp(c=c)
    gen = real + np.random.default_rng(1).normal(0, sigma, real.shape).astype(np.float32)
    # flicker: |n_{t+1} - n_t| with n ~ N(0, s^2): mean 2s/sqrt(pi), whatever the real motion
    np.testing.assert_allclose(st.flicker(gen, real).mean(), 2 * sigma / math.sqrt(math.pi), rtol=0.02)
    # change ratio: E|c + N(0, 2 s^2)| / c (folded normal)
    s = sigma * math.sqrt(2)
    folded = s * math.sqrt(2 / math.pi) * math.exp(-c * c / (2 * s * s)) + c * math.erf(c / (s * math.sqrt(2)))
    assert folded / c == pytest.approx(2.397, abs=0.01)
    assert st.change_ratio(gen, real) == pytest.approx(folded / c, rel=0.02)
    summary = st.stability(gen, real)
    assert summary["change_ratio"] == pytest.approx(folded / c, rel=0.02)
    assert summary["real_frame_change"] == pytest.approx(c, rel=1e-5)
    # uint8 video in chunks overlapping by one frame: the same values as in one go
    u8 = np.clip(gen, 0, 255).round().astype(np.uint8)
    whole = st.frame_changes(u8)
    np.testing.assert_array_equal(np.concatenate([st.frame_changes(u8[:4]), st.frame_changes(u8[3:])]), whole)


def test_person_mask_box():
    pose = np.zeros((N_KEYPOINTS, 3), np.float32)
    pose[B["Nose"]] = (20, 10, 1)
    pose[B["RAnkle"]] = (30, 50, 1)
    pose[B["LEar"]] = (90, 90, 0.05)        # unseen: not part of the box
    mask = st.person_mask(pose, 100, 100)   # grow 0.25 * 40 = 10 px: x 10..40, y 0..60
    assert mask.sum() == 31 * 61 and mask[0, 10] and mask[60, 40] and not mask[61, 40] and not mask[0, 41]
    assert st.person_mask(np.zeros_like(pose), 8, 8).all()


def test_background_flicker_ignores_the_dancer_and_sees_noise():
    """Rendered synthetic dancer frames (static room, moving dancer): 0 outside the dancer;
    per-frame noise of s everywhere: 2s/sqrt(pi)."""
    from edn.synth import make_dancer
    dancer = make_dancer(2, 0, 1, (128, 128))
    frames, poses = map(np.stack, zip(*[dancer.render(a) for a in dancer.poses(12)[::3]]))
    assert st.frame_changes(frames).min() > 0.1                    # the dancer does move
    b = st.background_flicker(frames, poses)
    assert b.shape == (3,) and np.isfinite(b).all()
    np.testing.assert_array_equal(b, 0)
    sigma = 3.0
    noisy = frames + np.random.default_rng(4).normal(0, sigma, frames.shape)
    np.testing.assert_allclose(st.background_flicker(noisy, poses), 2 * sigma / math.sqrt(math.pi), rtol=0.05)
    assert st.stability(noisy, poses=poses)["background_flicker"] == pytest.approx(2 * sigma / math.sqrt(math.pi),
                                                                                    rel=0.05)


# ---------------------------------------------------------------- nearest neighbour

def _random_poses(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    poses = np.zeros((n, 25, 3), np.float32)
    poses[:, :, :2] = rng.uniform(0, 200, (n, 25, 2))
    poses[:, :, 2] = 1
    poses[:, B["Neck"], :2] = rng.uniform(80, 120, (n, 2))
    poses[:, B["MidHip"], :2] = poses[:, B["Neck"], :2] + rng.uniform(30, 60, (n, 1)) * [0, 1]
    return poses


def _brute_force(train: np.ndarray, queries: np.ndarray, min_shared: float = 0.75):
    def norm(p):
        seen = p[:, 2] >= 0.1
        if not (seen[B["Neck"]] and seen[B["MidHip"]]):
            return None, seen
        c, s = (p[B["Neck"], :2] + p[B["MidHip"], :2]) / 2, np.linalg.norm(p[B["Neck"], :2] - p[B["MidHip"], :2])
        return (p[:25, :2].astype(np.float64) - c) / s, seen[:25]
    out = []
    for q in queries:
        qn, qs = norm(q)
        best = (-1, np.inf)
        for j, t in enumerate(train):
            tn, ts = norm(t)
            both = qs & ts
            if qn is None or tn is None or both.sum() < max(min_shared * qs.sum(), 1):
                continue
            d = np.linalg.norm(qn[both] - tn[both], axis=1).mean()
            best = (j, d) if d < best[1] else best
        out.append(best)
    return np.array([o[0] for o in out]), np.array([o[1] for o in out])


def test_nearest_neighbour_retrieves_shifted_and_scaled_copies():
    train = _random_poses(300, 1)
    nn = NearestNeighbour().fit(train)
    chosen = np.array([0, 17, 123, 299])
    query = train[chosen].copy()
    query[:, :, :2] = query[:, :, :2] * 1.7 + (37, -12)                  # moved and scaled
    index, dist = nn.query_with_distance(query)
    np.testing.assert_array_equal(index, chosen)
    np.testing.assert_allclose(dist, 0, atol=1e-5)
    raw = NearestNeighbour(normalize=False).fit(train)
    shifted = train[chosen] + np.array([3, 4, 0], np.float32)
    index, dist = raw.query_with_distance(shifted)
    np.testing.assert_array_equal(index, chosen)
    np.testing.assert_allclose(dist, 5, rtol=1e-5)                       # in pixels


def test_nearest_neighbour_missing_keypoints():
    train = _random_poses(50, 2)
    train[5, B["Neck"], 2] = 0                                           # cannot be normalized
    query = train[[3, 5]].copy()
    query[0, [0, 4, 7, 11, 14], 2] = 0                                   # keypoints unseen in the query
    query[1, B["Neck"], 2] = 1                                           # frame 5's pose, neck seen
    nn = NearestNeighbour().fit(train)
    index, dist = nn.query_with_distance(query)
    assert index[0] == 3 and dist[0] == pytest.approx(0, abs=1e-5)
    assert index[1] != 5                                                 # never returned
    # a training pose seen only at the torso and one keypoint (matching exactly) must not win
    sparse = train[3].copy()
    sparse[:, 2] = 0
    sparse[[B["Neck"], B["MidHip"], B["RWrist"]], 2] = 1
    near = train[3].copy()
    near[:, :2] += np.random.default_rng(3).normal(0, 1, (25, 2))
    near[[B["Neck"], B["MidHip"]], :2] = train[3, [B["Neck"], B["MidHip"]], :2]
    pair = np.stack([sparse, near])
    assert NearestNeighbour().fit(pair).query(train[3:4])[0] == 1
    assert NearestNeighbour(min_shared=0).fit(pair).query(train[3:4])[0] == 0   # why the guard exists
    nobody = np.zeros((1, 25, 3), np.float32)
    index, dist = nn.query_with_distance(nobody)
    assert index[0] == -1 and dist[0] == np.inf
    with pytest.raises(ValueError, match="none of the 1"):
        NearestNeighbour().fit(nobody)


def test_nearest_neighbour_matches_brute_force():
    rng = np.random.default_rng(5)
    train, queries = _random_poses(60, 6), _random_poses(12, 7)
    for p in (train, queries):
        p[:, :, 2] *= rng.uniform(0, 1, p.shape[:2]) > 0.2               # ~20% of keypoints missing
    queries[:4] = train[[1, 2, 3, 4]]
    full = np.zeros((len(train), N_KEYPOINTS, 3), np.float32)           # the 137-point layout too
    full[:, :25] = train
    index, dist = NearestNeighbour(chunk_elements=3000).fit(full).query_with_distance(queries)
    ref_index, ref_dist = _brute_force(train, queries)
    np.testing.assert_array_equal(index, ref_index)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-4)


def test_nearest_neighbour_scale():
    train = _random_poses(10_000, 8)
    picks = np.random.default_rng(9).choice(len(train), 100, replace=False)
    start = time.perf_counter()
    index = NearestNeighbour().fit(train).query(train[picks])
    print(f"10k training poses x 100 queries: {time.perf_counter() - start:.2f} s")
    np.testing.assert_array_equal(index, picks)


def _gate_metrics(model: dict, nn: dict) -> dict:
    return {"heldout_frames": 50, "precision": "fp32", "methods": {"model": model, "nearest_neighbour": nn}}


def test_promotion_gate_needs_ssim_pose_and_as_many_frames_found():
    nn = {"body_ssim": 0.80, "pose_distance": 0.030, "pose_missed": 0.0}
    good = {"body_ssim": 0.85, "pose_distance": 0.020, "pose_missed": 0.02}
    ok, reason = decide(_gate_metrics(good, nn))
    assert ok and reason.startswith("promoted") and "0.8500" in reason and "missed in 2% vs 0% of frames" in reason
    assert not decide(_gate_metrics({**good, "body_ssim": 0.79}, nn))[0]
    assert not decide(_gate_metrics({**good, "pose_distance": 0.031}, nn))[0]
    assert not decide(_gate_metrics({**good, "pose_distance": float("nan")}, nn))[0]
    # closer on the frames it finds, but the detector misses the dancer in half of them
    ok, reason = decide(_gate_metrics({**good, "pose_missed": 0.5}, nn))
    assert not ok and reason.startswith("not promoted") and "missed in 50% vs 0%" in reason
    assert decide(_gate_metrics({**good, "pose_missed": 0.5}, {**nn, "pose_missed": 0.5}))[0]


def test_onboarding_means_say_over_how_many_dancers_a_pose_distance_was_averaged():
    from edn.eval.onboarding import mean_rows
    nan = float("nan")
    targets = {"a": {"fine-tune 25%": {"body_ssim": 0.9, "pose_distance": 0.02, "steps": 250}},
               "b": {"fine-tune 25%": {"body_ssim": 0.8, "pose_distance": nan, "steps": 250}},
               "c": {"error": "RuntimeError: ..."}}
    row = mean_rows(targets)["fine-tune 25%"]
    assert row["body_ssim"] == pytest.approx(0.85) and row["pose_distance"] == 0.02
    assert row["dancers"] == 2 and row["pose_dancers"] == 1  # b's renders: the detector found nobody
