"""The `openpose` detector on networks made here whose heatmaps and PAFs are known.

No OpenPose weights can be downloaded here, so the networks are OpenPose-shaped stand-ins: one
8x8 stride-8 convolution per output block (heatmaps, PAFs) concatenated into "net_output", with
one-hot weights (2.0), so output channel c of cell (i, j) is 2 * (one input pixel of the cell's
8x8 patch, after the detector's preprocessing). The frame is crafted so that after OpenPose's
preprocessing (RGB -> BGR, resize to the input height, pad to a multiple of 8, x / 256 - 0.5) the
network outputs exactly the OpenPose-style training targets of known people (Gaussian heatmaps at
stride 8, unit-vector PAFs along each limb, background = 1 - max), quantised to 8 bits. The
frame is twice the network's input size, so the detector's own resize and the mapping back to
the frame's pixels are exercised too. Written as Caffe and ONNX files (tests/model_files.py), on
disk and at memory:// URLs.
"""
from __future__ import annotations

import cv2
import fsspec
import numpy as np
import pytest

from edn.pose.estimator import make_estimator
from edn.pose.layout import BODY, BODY_PAIRS, N_KEYPOINTS, B
from edn.pose.openpose_dnn import OpenPoseModelError
from edn.pose.paf import BODY_25_MODEL, COCO_MODEL, POSE_MODELS, decode_people
from model_files import caffe_files, onnx_file

STRIDE, SIGMA = 8, 7.0           # OpenPose's training targets: stride 8, Gaussian sigma 7 px
NET_H, NET_W = 176, 236          # network input (content) size; padded to 240 by the detector
SCALE = 2                        # frame = network input x 2
TOLERANCE = 2.0                  # px, at the frame's scale (1 px at the network's)

_TEMPLATE = {  # a standing person, relative to the neck, in network pixels
    "Nose": (0, -18), "Neck": (0, 0), "RShoulder": (-14, 2), "RElbow": (-22, 24), "RWrist": (-26, 46),
    "LShoulder": (14, 2), "LElbow": (22, 24), "LWrist": (28, 44), "MidHip": (0, 48), "RHip": (-9, 48),
    "RKnee": (-11, 76), "RAnkle": (-12, 104), "LHip": (9, 48), "LKnee": (11, 76), "LAnkle": (13, 104),
    "REye": (-4, -22), "LEye": (4, -22), "REar": (-9, -19), "LEar": (9, -19), "LBigToe": (20, 112),
    "LSmallToe": (24, 110), "LHeel": (12, 109), "RBigToe": (-19, 112), "RSmallToe": (-23, 110), "RHeel": (-11, 109),
}


def _people() -> list[np.ndarray]:
    """Three people as (25, 3) BODY_25 arrays in network pixels (confidence 1 = present).

    A stretches the left arm towards B, and B's left arm crosses its body towards A, so that
    the nearest left wrist to each left elbow belongs to the other person: only the PAFs group
    them right. B has no left leg; C has three parts only and must be dropped (< 4 parts).
    """
    rng = np.random.default_rng(7)
    out = []
    for neck, overrides, missing in (
        ((55.3, 38.6), {"LElbow": (37, 3), "LWrist": (66, 5)}, ()),
        ((140.7, 41.2), {"LElbow": (-9, 25), "LWrist": (-31, 17)},
         ("LKnee", "LAnkle", "LBigToe", "LSmallToe", "LHeel")),
    ):
        pose = np.zeros((25, 3), np.float32)
        for name, xy in {**_TEMPLATE, **overrides}.items():
            if name not in missing:
                pose[B[name]] = (*(np.add(neck, xy) + rng.uniform(-1.5, 1.5, 2)), 1)
        out.append(pose)
    fragment = np.zeros((25, 3), np.float32)
    for name, xy in (("RShoulder", (200.4, 68.2)), ("RElbow", (209.7, 89.1)), ("RWrist", (213.2, 109.6))):
        fragment[B[name]] = (*xy, 1)
    out.append(fragment)
    return out


def _coco(pose: np.ndarray) -> np.ndarray:
    return np.stack([pose[B[name]] for name in COCO_MODEL.parts])


def _target_maps(people: list[np.ndarray], model) -> np.ndarray:
    """OpenPose's training targets for `people` ((n_parts, 3) each): (channels, H/8, W/8)."""
    gh, gw = -(-NET_H // STRIDE), -(-NET_W // STRIDE)
    cy, cx = np.mgrid[0:gh, 0:gw] * STRIDE + (STRIDE / 2 - 0.5)   # cell centres in pixels
    maps = np.zeros((model.n_channels, gh, gw), np.float32)
    for part in range(model.n_parts):
        for p in people:
            if p[part, 2] > 0:
                g = np.exp(-((cx - p[part, 0]) ** 2 + (cy - p[part, 1]) ** 2) / (2 * SIGMA ** 2))
                maps[part] = np.maximum(maps[part], g)
    maps[model.n_parts] = 1 - maps[:model.n_parts].max(0)
    for (a, b), (chx, chy) in zip(model.pairs, model.paf_channels):
        total, count = np.zeros((2, gh, gw)), np.zeros((gh, gw))
        for p in people:
            if p[a, 2] == 0 or p[b, 2] == 0:
                continue
            d = p[b, :2] - p[a, :2]
            u = d / np.linalg.norm(d)
            lo, hi = np.minimum(p[a, :2], p[b, :2]) - STRIDE, np.maximum(p[a, :2], p[b, :2]) + STRIDE
            inside = (cx >= lo[0]) & (cx <= hi[0]) & (cy >= lo[1]) & (cy <= hi[1])
            inside &= np.abs((cx - p[a, 0]) * u[1] - (cy - p[a, 1]) * u[0]) <= STRIDE
            total[:, inside] += u[:, None]
            count[inside] += 1
        avg = total / np.maximum(count, 1)
        maps[model.n_heatmaps + chx], maps[model.n_heatmaps + chy] = avg
    return maps


def _slot(c: int) -> tuple[int, int, int]:
    """Which pixel of an 8x8 BGR patch output channel c reads: (bgr channel, dy, dx)."""
    return c % 3, (c // 3) // STRIDE, (c // 3) % STRIDE


def _convs(model) -> list[tuple[str, np.ndarray, np.ndarray]]:
    w = np.zeros((model.n_channels, 3, STRIDE, STRIDE), np.float32)
    for c in range(model.n_channels):
        k, dy, dx = _slot(c)
        w[c, k, dy, dx] = 2.0
    n = model.n_heatmaps
    return [("heatmaps", w[:n], np.zeros(n, np.float32)), ("pafs", w[n:], np.zeros(len(w) - n, np.float32))]


def _frame(maps: np.ndarray) -> np.ndarray:
    """The RGB frame for which network output = maps: 2 * (x / 256 - 0.5) = v, x = 128 (v + 1)."""
    c, gh, gw = maps.shape
    bgr = np.full((gh * STRIDE, gw * STRIDE, 3), 128, np.uint8)
    for ch in range(c):
        k, dy, dx = _slot(ch)
        bgr[dy::STRIDE, dx::STRIDE, k] = np.clip(np.rint(128 * (maps[ch] + 1)), 0, 255)
    bgr = bgr[:NET_H, :NET_W]                                   # the detector pads it back
    big = bgr.repeat(SCALE, 0).repeat(SCALE, 1)                 # the detector shrinks it back
    return np.ascontiguousarray(big[..., ::-1])


def _write(files: dict[str, bytes], where, tmp_path) -> dict[str, str]:
    if where == "memory":
        fs = fsspec.filesystem("memory")
        for name, data in files.items():
            fs.pipe_file(f"/openpose-test/{tmp_path.name}/{name}", data)
        return {name: f"memory://openpose-test/{tmp_path.name}/{name}" for name in files}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: str(tmp_path / name) for name in files}


def _model_urls(model, fmt, tmp_path, where="file") -> dict:
    if fmt == "onnx":
        urls = _write({"net.onnx": onnx_file(_convs(model), STRIDE)}, where, tmp_path)
        return {"model_url": urls["net.onnx"]}
    proto, weights = caffe_files(_convs(model), STRIDE)
    urls = _write({"pose_deploy.prototxt": proto, "pose.caffemodel": weights}, where, tmp_path)
    return {"model_url": urls["pose.caffemodel"], "prototxt_url": urls["pose_deploy.prototxt"]}


def _assert_found(got: np.ndarray, expected: list[np.ndarray]) -> None:
    """Every expected person found once, every part within TOLERANCE, nothing extra."""
    assert got.shape == (len(expected), N_KEYPOINTS, 3)
    assert not got[:, BODY.stop:].any()                          # body only: face and hands zero
    for want in expected:
        seen = want[:, 2] > 0
        at = np.array([np.nanmean(np.where(seen[:, None], np.abs(g[BODY, :2] - want[:, :2]), np.nan))
                       for g in got])
        g = got[int(np.argmin(at))][BODY]
        assert np.array_equal(g[:, 2] > 0, seen), (g[:, 2], seen)
        err = np.linalg.norm(g[seen, :2] - want[seen, :2], axis=1)
        assert err.max() <= TOLERANCE and np.median(err) <= TOLERANCE / 2, dict(zip(np.flatnonzero(seen), err.round(2)))
        assert g[seen, 2].min() > 0.5


def _in_frame(pose: np.ndarray) -> np.ndarray:
    out = pose.copy()
    out[:, :2] = out[:, :2] * SCALE + (SCALE - 1) / 2   # network pixel centres -> frame pixels
    return out


@pytest.mark.parametrize("where", ["file", "memory"])
@pytest.mark.parametrize("fmt", ["caffe", "onnx"])
def test_body_25_people_are_recovered(fmt, where, tmp_path):
    people = _people()
    frame = _frame(_target_maps(people, BODY_25_MODEL))
    detector = make_estimator("openpose", input_height=NET_H, **_model_urls(BODY_25_MODEL, fmt, tmp_path, where))
    got = detector.estimate(frame, 0)
    _assert_found(got, [_in_frame(p) for p in people[:2]])      # the 3-part fragment is dropped
    assert got.dtype == np.float32


@pytest.mark.parametrize("fmt", ["caffe", "onnx"])
def test_coco_people_are_recovered_in_body_25_rows(fmt, tmp_path):
    people = _people()
    frame = _frame(_target_maps([_coco(p) for p in people], COCO_MODEL))
    detector = make_estimator("openpose", model="COCO", input_height=NET_H, **_model_urls(COCO_MODEL, fmt, tmp_path))
    expected = []
    for p in people[:2]:
        want = _in_frame(p)
        want[B["LBigToe"]:, :] = 0                               # COCO has no feet
        r, left = want[B["RHip"]], want[B["LHip"]]
        want[B["MidHip"]] = ((r[0] + left[0]) / 2, (r[1] + left[1]) / 2, 1)  # nor MidHip: the hips' midpoint
        expected.append(want)
    _assert_found(detector.estimate(frame, 0), expected)


def test_nobody_gives_no_people_at_any_frame_size(tmp_path):
    detector = make_estimator("openpose", input_height=NET_H, **_model_urls(BODY_25_MODEL, "onnx", tmp_path))
    for shape in ((NET_H * SCALE, NET_W * SCALE, 3), (97, 61, 3), (40, 300, 3)):
        got = detector.estimate(np.full(shape, 128, np.uint8), 0)
        assert got.shape == (0, N_KEYPOINTS, 3) and got.dtype == np.float32


def test_environment_variables_name_the_default_model(tmp_path, monkeypatch):
    urls = _model_urls(BODY_25_MODEL, "caffe", tmp_path)
    monkeypatch.setenv("EDN_OPENPOSE_MODEL", urls["model_url"])
    monkeypatch.setenv("EDN_OPENPOSE_PROTOTXT", urls["prototxt_url"])
    detector = make_estimator("openpose", input_height=NET_H)
    _assert_found(detector.estimate(_frame(_target_maps(_people(), BODY_25_MODEL)), 0),
                  [_in_frame(p) for p in _people()[:2]])


def test_missing_model_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("EDN_OPENPOSE_MODEL", raising=False)
    monkeypatch.delenv("EDN_OPENPOSE_PROTOTXT", raising=False)
    with pytest.raises(OpenPoseModelError, match="not bundled"):
        make_estimator("openpose")
    for url in (str(tmp_path / "nowhere" / "pose.onnx"), "memory://openpose-test/absent.onnx"):
        with pytest.raises(OpenPoseModelError, match="does not exist") as e:
            make_estimator("openpose", model_url=url)
        assert url in str(e.value) and "not bundled" in str(e.value)
    urls = _model_urls(BODY_25_MODEL, "caffe", tmp_path)
    missing = str(tmp_path / "pose_deploy_missing.prototxt")
    with pytest.raises(OpenPoseModelError, match="does not exist") as e:
        make_estimator("openpose", model_url=urls["model_url"], prototxt_url=missing)
    assert missing in str(e.value)
    with pytest.raises(OpenPoseModelError, match="prototxt") as e:
        make_estimator("openpose", model_url=urls["model_url"])    # a caffemodel alone
    assert urls["model_url"] in str(e.value)


def test_corrupt_model_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "onnx").mkdir()
    onnx = _model_urls(BODY_25_MODEL, "onnx", tmp_path / "onnx")
    caffe = _model_urls(BODY_25_MODEL, "caffe", tmp_path)
    with open(onnx["model_url"], "r+b") as f:
        f.truncate(len(f.read()) // 2)
    with open(caffe["model_url"], "r+b") as f:
        f.truncate(len(f.read()) // 2)
    bad_proto = tmp_path / "bad.prototxt"
    bad_proto.write_text('layer { name: "x" type: ')
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    for options, culprit in ((onnx, onnx["model_url"]), (caffe, caffe["model_url"]),
                             ({**caffe, "prototxt_url": str(bad_proto)}, str(bad_proto)),
                             ({"model_url": str(empty)}, str(empty))):
        with pytest.raises(OpenPoseModelError) as e:
            make_estimator("openpose", **options)
        assert culprit in str(e.value)


def test_a_network_of_the_other_kind_is_named(tmp_path):
    detector = make_estimator("openpose", model="COCO", input_height=NET_H,
                              **_model_urls(BODY_25_MODEL, "onnx", tmp_path))
    with pytest.raises(OpenPoseModelError, match="model='BODY_25'"):
        detector.estimate(np.full((64, 64, 3), 128, np.uint8), 0)


def test_cuda_backend_without_cuda_is_an_error_unless_fallback_is_asked(tmp_path, caplog):
    if cv2.dnn.getAvailableTargets(cv2.dnn.DNN_BACKEND_CUDA):
        pytest.skip("this OpenCV has CUDA")
    urls = _model_urls(BODY_25_MODEL, "onnx", tmp_path)
    with pytest.raises(RuntimeError, match="CUDA"):
        make_estimator("openpose", backend="cuda", **urls)
    detector = make_estimator("openpose", backend="cuda", allow_cpu_fallback=True, input_height=NET_H, **urls)
    assert detector.backend == "cpu" and "CPU" in caplog.text
    assert detector.estimate(np.full((64, 64, 3), 128, np.uint8), 0).shape == (0, N_KEYPOINTS, 3)


@pytest.mark.parametrize("model", list(POSE_MODELS.values()), ids=list(POSE_MODELS))
def test_limb_tables_are_openpose_shaped(model):
    """Every PAF channel used once; the non-redundant limbs form a tree over all parts, in an
    order where each limb's first part is already reached (OpenPose's assembly order)."""
    flat = sorted(c for pair in model.paf_channels for c in pair)
    assert flat == list(range(2 * len(model.pairs))) and model.n_channels == {"BODY_25": 78, "COCO": 57}[model.name]
    reached = {model.pairs[0][0]}
    for k, (a, b) in enumerate(model.pairs):
        if k in model.redundant:
            assert a in reached and b in reached
        else:
            assert a in reached and b not in reached
            reached.add(b)
    assert reached == set(range(model.n_parts))
    if model.name == "BODY_25":   # the render pairs are the PAF pairs minus the shoulder-ear ones
        assert [p for k, p in enumerate(model.pairs) if k not in model.redundant] == list(BODY_PAIRS)


def test_paf_decoding_joins_a_person_without_neck_through_the_shoulder_ear_limbs():
    """No network: the maps upsampled as the detector does, decoded by edn.pose.paf alone. With
    the neck hidden, the arms and the head start as separate pieces (3, 3 and 5 parts); only the
    redundant shoulder-ear limbs join them into one person."""
    person = _people()[0].copy()
    keep = [B[n] for n in ("Nose", "REye", "LEye", "REar", "LEar", "RShoulder", "RElbow", "RWrist",
                           "LShoulder", "LElbow", "LWrist")]
    person[np.setdiff1d(np.arange(25), keep)] = 0
    grid = _target_maps([person], BODY_25_MODEL)
    maps = cv2.resize(np.ascontiguousarray(grid.transpose(1, 2, 0)), (grid.shape[2] * STRIDE, grid.shape[1] * STRIDE),
                      interpolation=cv2.INTER_CUBIC)[:NET_H, :NET_W]
    found = decode_people(maps, BODY_25_MODEL)
    assert len(found) == 1
    assert np.array_equal(found[0][:, 2] > 0, person[:, 2] > 0)
    assert np.abs(found[0][keep, :2] - person[keep, :2]).max() < TOLERANCE / SCALE
