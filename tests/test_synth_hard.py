"""Hard synthetic footage (edn.synth.hard): each option does what it says, the ground truth is
what the picture shows, and the default footage is untouched."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from edn.pose.estimator import make_estimator
from edn.pose.layout import FACE, N_KEYPOINTS, B
from edn.synth import HardOptions, make_dancer, synthesize
from edn.synth.hard import HardScene
from edn.video import read_frames

SIZE = (128, 128)
NOT_FACE = np.setdiff1d(np.arange(N_KEYPOINTS), np.r_[FACE.start:FACE.stop, B["Nose"], B["REye"], B["LEye"],
                                                       B["REar"], B["LEar"]])


def _scene(seed: int, frames: int, **options) -> tuple[HardScene, list]:
    dancer = make_dancer(seed, 0, 1, SIZE, hard=HardOptions(**options))
    scene = HardScene(dancer, dancer.hard, frames)
    return scene, [scene.shot(i) for i in range(frames)]


def _plain(seed: int, frames: int) -> list:
    return list(make_dancer(seed, 0, 1, SIZE).frames(frames))


def _table(folder) -> dict:
    table = pq.read_table(folder / "dancer_00.keypoints.parquet")
    return {name: table[name].to_pylist() for name in table.column_names}


def test_default_footage_is_todays():
    # Sum of dancer 0 of 1's keypoints, seed 5, 96x96, 10 frames, as rendered before hard options existed.
    poses = np.stack([p for _, p in make_dancer(5, 0, 1, (96, 96)).frames(10)])
    assert abs(float(poses.astype(np.float64).sum()) - 97047.09) < 0.05
    light = [p for _, p in make_dancer(5, 0, 1, (96, 96), hard=HardOptions(light=True)).frames(10)]
    assert np.array_equal(np.stack(light), poses)  # light changes the picture, not where anyone is


def test_no_options_writes_the_same_files(tmp_path):
    plain = synthesize(str(tmp_path / "a"), 1, 12, SIZE, seed=2)
    none = synthesize(str(tmp_path / "b"), 1, 12, SIZE, seed=2, hard=HardOptions())
    for x, y in zip(plain, none):
        assert open(x, "rb").read() == open(y, "rb").read(), x


def test_same_seed_same_hard_footage(tmp_path):
    runs = [synthesize(str(tmp_path / name), 1, 45, SIZE, seed=seed, hard=HardOptions.parse("all"))
            for name, seed in (("a", 3), ("b", 3), ("c", 4))]
    tables = [_table(tmp_path / name) for name in "abc"]
    assert tables[0] == tables[1] and tables[0]["keypoints"] != tables[2]["keypoints"]
    firsts = [np.stack([rgb for i, _, rgb in read_frames(run[0]) if i < 3]) for run in runs]
    assert np.array_equal(firsts[0], firsts[1]) and not np.array_equal(firsts[0], firsts[2])
    assert json.loads(open(runs[0][-1]).read())["dancers"][0]["hard"] == list(HardOptions.names())


def test_back_view_has_no_face_and_the_right_side_on_the_right():
    scene, shots = _scene(1, 120, turn=True)
    back = [s for s in shots if s.back_view]
    front = [s for s in shots if not s.back_view]
    assert 20 < len(back) < 100 and front
    hair = np.array(scene.dancer.appearance.hair, float)
    for s in back:
        kp = s.keypoints
        assert not kp[FACE, 2].any() and not kp[[B["Nose"], B["REye"], B["LEye"]]].any()
        assert kp[B["RShoulder"], 0] > kp[B["LShoulder"], 0] and kp[B["RHip"], 0] > kp[B["LHip"], 0]
    for s in front:
        assert s.keypoints[B["RShoulder"], 0] < s.keypoints[B["LShoulder"], 0]
    # Where the face would be, the back of the head shows hair.
    mid = [i for i, s in enumerate(shots) if s.back_view][len(back) // 2]
    x, y = np.round(scene.dancer_geometry(mid / scene.fps).head_center).astype(int)
    assert np.abs(shots[mid].rgb[y, x] - hair).max() < 40


def test_exit_leaves_the_frame_wholly_and_comes_back():
    scene, shots = _scene(2, 150, exit=True)
    visible = np.array([(s.keypoints[:, 2] > 0).sum() for s in shots])
    inside = np.array([s.in_frame for s in shots])
    assert np.array_equal(inside, visible > 0)
    gone = np.flatnonzero(~inside)
    assert len(gone) >= 10 and inside[gone[-1] + 1:].any() and inside[:gone[0]].any()
    assert ((visible > 0) & (visible < 80)).sum() >= 3  # on the way: partly out of the frame
    drawn = [(np.abs(shots[i].rgb.astype(int) - scene.dancer.background).max(2) > 1).sum() for i in gone]
    assert not any(shots[i].keypoints.any() for i in gone)
    assert max(drawn) < 20 and drawn.count(0) >= 10  # at most a fingertip past its keypoint; mostly nothing


@pytest.mark.parametrize("seed,kind", [(3, "plant"), (4, "pillar")])
def test_occluder_hides_the_keypoints_behind_it(seed, kind):
    scene, shots = _scene(seed, 120, occluder=True)
    plain = _plain(seed, 120)
    assert scene.occluder.kind == kind
    under = 0
    for s, (_, full) in zip(shots, plain):
        seen = full[:, 2] > 0
        x, y = np.round(full[seen, :2]).astype(int).T
        covered = scene.prop.alpha[y, x] > 0.5
        under += covered.sum()
        assert not s.keypoints[np.flatnonzero(seen)[covered], 2].any()
        assert np.array_equal(s.keypoints[np.flatnonzero(seen)[~covered]], full[seen][~covered])
    assert under > 300


def test_passerby_hides_and_is_hidden():
    scene, shots = _scene(2, 150, passerby=True)
    plain = _plain(2, 150)
    hidden = {True: 0, False: 0}
    for i, (s, (_, full)) in enumerate(zip(shots, plain)):
        walking = scene.passer.geometry(i / scene.fps)
        assert s.passerby == (len(s.others) == 1) and (walking is not None or not s.passerby)
        if not s.passerby:
            assert np.array_equal(s.keypoints, full)
            continue
        gone = (full[:, 2] > 0) & (s.keypoints[:, 2] == 0)
        front = walking[2]
        hidden[front] += gone.sum()
        if not front:  # behind the dancer: the dancer is whole, the passer loses what the dancer covers
            assert not gone.any()
            pgeo = walking[0].keypoints
            lost = (s.others[0][NOT_FACE, 2] == 0) & (pgeo[NOT_FACE, 0] >= 0) & (pgeo[NOT_FACE, 0] <= SIZE[0] - 1) \
                & (pgeo[NOT_FACE, 1] >= 0) & (pgeo[NOT_FACE, 1] <= SIZE[1] - 1)
            hidden[False] += lost.sum()
    assert hidden[True] > 20 and hidden[False] > 5


def test_shake_moves_frame_and_keypoints_alike():
    scene, shots = _scene(4, 60, shake=True)
    plain = _plain(4, 60)
    room = scene.dancer.background.astype(int)
    assert max(np.abs(s.rgb.astype(int) - room)[:, :12].mean() for s in shots) > 1.0  # the room moves
    moved = []
    for i, (s, (rgb, full)) in enumerate(zip(shots, plain)):
        m = scene.shake.matrix(i / scene.fps)
        warped = cv2.warpAffine(rgb, m, SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        assert np.abs(warped.astype(int) - s.rgb)[8:-8, 8:-8].mean() < 1.5
        both = (s.keypoints[:, 2] > 0) & (full[:, 2] > 0)
        expected = full[both, :2] @ m[:, :2].T + m[:, 2]
        assert np.allclose(s.keypoints[both, :2], expected, atol=1e-3)
        moved.append(np.abs(s.keypoints[both, :2] - full[both, :2]).max())
    assert 0.5 < max(moved) < 0.05 * SIZE[0]


def test_light_blur_and_compression_change_the_picture_only(tmp_path):
    _, lit = _scene(4, 60, light=True)
    means = np.array([s.rgb.mean() for s in lit])
    assert means.max() / means.min() > 1.15
    scene, blurred = _scene(4, 30, blur=True)
    plain = _plain(4, 30)
    sharp = np.zeros(2)
    for s, (rgb, _) in zip(blurred, plain):  # edges on and around the dancer, not the room's texture
        near = cv2.dilate((np.abs(rgb.astype(int) - scene.dancer.background).max(2) > 0).astype(np.uint8),
                          np.ones((5, 5), np.uint8)) > 0
        for k, x in enumerate((s.rgb, rgb)):
            sharp[k] += np.abs(cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.CV_32F))[near].sum()
        assert np.abs(s.rgb.astype(int) - rgb)[~near].max() <= 1  # the room stands still
    assert sharp[0] < 0.97 * sharp[1]
    assert all(np.array_equal(s.keypoints, p) for s, (_, p) in zip(blurred, plain))
    heavy = synthesize(str(tmp_path / "h"), 1, 30, SIZE, seed=4, hard=HardOptions(compression=True))
    light = synthesize(str(tmp_path / "l"), 1, 30, SIZE, seed=4)
    assert len(open(heavy[0], "rb").read()) < 0.6 * len(open(light[0], "rb").read())
    assert _table(tmp_path / "h")["keypoints"] == _table(tmp_path / "l")["keypoints"]


def test_groundtruth_reports_everyone_and_not_always_the_dancer_first(tmp_path):
    video = synthesize(str(tmp_path), 1, 150, SIZE, seed=2, hard=HardOptions(passerby=True))[0]
    truth = _table(tmp_path)
    est = make_estimator("groundtruth")
    est.begin(video)
    frame = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    first = []
    for i, (dancer, others, passing) in enumerate(zip(truth["keypoints"], truth["others"], truth["passerby"])):
        people = est.estimate(frame, i)
        seen = [p for p in [dancer] + others if max(p[2::3]) > 0]
        assert len(people) == len(seen) and len(others) == passing
        if len(people) == 2:
            first.append(np.allclose(people[0].ravel(), dancer))
    assert len(first) > 10 and 0 < sum(first) < len(first)
    half = est.estimate(np.zeros((64, 64, 3), np.uint8), int(np.flatnonzero(truth["passerby"])[0]))
    assert all(p[:, :2].max() <= 64 for p in half)


def test_cli_hard_all(tmp_path):
    out = tmp_path / "cli"
    subprocess.run([sys.executable, "-m", "edn.cli", "synth", str(out), "--dancers", "1", "--frames", "60",
                    "--size", "128x128", "--seed", "1", "--hard", "all"], check=True, capture_output=True)
    truth = _table(out)
    assert len(truth["keypoints"]) == 60 and {"others", "back_view", "in_frame", "passerby"} <= set(truth)
    assert any(truth["back_view"]) and any(truth["passerby"]) and not all(truth["in_frame"])
    assert json.loads((out / "dancers.json").read_text())["dancers"][0]["hard"] == list(HardOptions.names())
    bad = subprocess.run([sys.executable, "-m", "edn.cli", "synth", str(out), "--hard", "turn,spin"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "spin" in bad.stderr


def test_parse_options():
    assert HardOptions.parse("turn, blur") == HardOptions(turn=True, blur=True)
    assert HardOptions.parse("all").enabled() == list(HardOptions.names()) and not HardOptions.parse("")
    with pytest.raises(ValueError, match="spin"):
        HardOptions.parse("spin")
