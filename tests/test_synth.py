"""Synthetic dancers: what is drawn, the ground truth written beside it, and the detectors on it."""
import colorsys
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from edn.errors import ConfigError
from edn.pose.estimator import make_estimator
from edn.pose.layout import FACE, LHAND, N_KEYPOINTS, RHAND, B, body_height
from edn.synth import make_dancer, synthesize
from edn.synth.body import (
    BAND_WIDTH,
    BASE_TROUSERS,
    HELDOUT_TROUSERS,
    HUE_BANDS,
    TROUSER_COLORS,
    random_appearance,
    shade,
)
from edn.video import probe, read_frames

# The body joints BlazePose and the drawing both define the same way: mediapipe's eyes, ears
# and feet mark slightly different anatomy from OpenPose's and are left out of the error.
COMPARED = ["Nose", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
            "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle"]


@pytest.fixture(scope="module")
def three_dancers(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    files = synthesize(str(out), dancers=3, frames=60, size=(256, 256), seed=11)
    return out, files


def _gt(url: str) -> np.ndarray:
    table = pq.read_table(url.replace(".mp4", ".keypoints.parquet"))
    return np.asarray(table["keypoints"].to_pylist(), np.float32).reshape(len(table), N_KEYPOINTS, 3)


def test_files_schema_and_metadata(three_dancers):
    out, files = three_dancers
    names = [f.split("/")[-1] for f in files]
    assert names == ["dancer_00.mp4", "dancer_00.keypoints.parquet", "dancer_01.mp4",
                     "dancer_01.keypoints.parquet", "dancer_02.mp4", "dancer_02.keypoints.parquet",
                     "dancers.json"]
    table = pq.read_table(files[1])
    assert table.schema.field("frame_index").type == pa.int32()
    assert table.schema.field("keypoints").type == pa.list_(pa.float32())
    assert table["frame_index"].to_pylist() == list(range(60))
    assert {len(k) for k in table["keypoints"].to_pylist()} == {N_KEYPOINTS * 3}
    top = json.loads((out / "dancers.json").read_text())
    assert "palette" not in top  # only a base or held-out set records its palette
    meta = top["dancers"]
    assert [m["id"] for m in meta] == ["dancer_00", "dancer_01", "dancer_02"]
    for m, video in zip(meta, files[::2]):
        assert 0.5 * 256 < m["stature_px"] < 0.95 * 256 and m["body_height_px"] < m["stature_px"]
        assert {"skin", "shirt", "hair", "bottom", "shoes", "hair_style", "seed", "center_x_px"} <= set(m)
        # the recorded body height is the dancer's standing nose-to-ankles height in the video
        measured = np.nanmax([body_height(p) for p in _gt(video)])
        assert 0.93 * m["body_height_px"] < measured < 1.01 * m["body_height_px"]


def test_video_decodes_to_the_rendered_frames(three_dancers):
    _, files = three_dancers
    info = probe(files[0])
    assert (info.width, info.height, info.fps) == (256, 256, 30.0)
    decoded = [rgb for _, _, rgb in read_frames(files[0])]
    assert len(decoded) == 60 and decoded[0].shape == (256, 256, 3)
    dancer = make_dancer(11, 0, 3, (256, 256))
    for i, (rendered, pose) in enumerate(dancer.frames(60)):
        if i in (0, 31, 59):  # the video shows what the keypoints describe (crf 18: near lossless)
            mse = np.mean((decoded[i].astype(float) - rendered) ** 2)
            assert 10 * np.log10(255 ** 2 / mse) > 30
            assert np.array_equal(pose, _gt(files[0])[i])


def test_mediapipe_finds_the_dancers_within_5_percent_of_body_height(three_dancers):
    """The detector wiring (BlazePose -> BODY_25, mesh -> 68 face points, hands, left/right) on
    dancers of different sizes and places, compared with the ground truth drawn."""
    _, files = three_dancers
    videos = [f for f in files if f.endswith(".mp4")]
    heights = [np.nanmedian([body_height(p) for p in _gt(v)]) for v in videos]
    assert min(abs(a - b) for i, a in enumerate(heights) for b in heights[i + 1:]) > 5  # px
    detector = make_estimator("mediapipe")
    rows = [B[k] for k in COMPARED]
    report = []
    try:
        for video in videos:
            detector.begin(video)
            gt = _gt(video)
            found, errors, face_err, hand_err = 0, [], [], []
            for i, _, rgb in read_frames(video):
                people = detector.estimate(rgb, i)
                assert people.shape[1:] == (N_KEYPOINTS, 3) and len(people) <= 1 and people.dtype == np.float32
                pose = people[0] if len(people) else np.zeros((N_KEYPOINTS, 3), np.float32)
                height = body_height(gt[i])
                if pose[B["Neck"], 2] >= 0.5:
                    found += 1
                both = (pose[rows, 2] >= 0.5) & (gt[i, rows, 2] > 0)
                errors += list(np.hypot(*(pose[rows, :2] - gt[i, rows, :2])[both].T) / height)
                for part in (FACE, LHAND, RHAND):
                    both = (pose[part, 2] > 0) & (gt[i, part, 2] > 0)
                    if both.sum() > 10:
                        err = np.hypot(*(pose[part, :2] - gt[i, part, :2])[both].T).mean() / height
                        (face_err if part == FACE else hand_err).append(err)
            report.append((video, found / len(gt), float(np.mean(errors)), len(face_err) / len(gt),
                           float(np.mean(face_err)), float(np.median(hand_err))))
    finally:
        detector.close()
    for video, rate, err, face_rate, face, hand in report:
        print(f"{video}: found {rate:.0%}, body error {err:.1%}, face found {face_rate:.0%} error {face:.1%},"
              f" hand median error {hand:.1%} of body height")
        assert rate >= 0.95 and err <= 0.05
        # The face and hands land on the right person's right parts (a left/right swap or a bad
        # mesh index would be 10% or more). Faces of ~20 px, as the farthest dancer's, are
        # sometimes missed after compression, so their detection rate is only checked overall.
        assert face <= 0.03 and hand <= 0.04
    assert np.mean([r[3] for r in report]) >= 0.75


def test_mediapipe_sees_nobody_in_an_empty_room():
    detector = make_estimator("mediapipe")
    detector.begin("empty")
    room = make_dancer(1, 0, 1, (192, 160)).background
    people = detector.estimate(room, 0)
    detector.close()
    assert people.shape == (0, N_KEYPOINTS, 3)


def test_same_seed_same_dancers_other_seed_other_dancers(tmp_path):
    a = synthesize(str(tmp_path / "a"), 2, 8, (128, 128), seed=5)
    b = synthesize(str(tmp_path / "b"), 2, 8, (128, 128), seed=5)
    c = synthesize(str(tmp_path / "c"), 2, 8, (128, 128), seed=6)
    for x, y, z in zip(a[:4:2], b[:4:2], c[:4:2]):
        assert np.array_equal(_gt(x), _gt(y)) and not np.allclose(_gt(x), _gt(z))
        frames_x = np.stack([f for _, _, f in read_frames(x)])
        assert np.array_equal(frames_x, np.stack([f for _, _, f in read_frames(y)]))
    assert json.loads(open(a[-1]).read()) == json.loads(open(b[-1]).read())


def test_dancers_differ_in_size_place_and_looks():
    dancers = [make_dancer(2, i, 4, (256, 256)) for i in range(4)]
    looks = [d.appearance for d in dancers]
    statures = sorted(a.stature_px for a in looks)
    assert np.min(np.diff(statures)) > 3 and statures[-1] / statures[0] > 1.1
    assert len({round(a.floor_y_px) for a in looks}) == 4 and len({round(a.center_x_px) for a in looks}) == 4
    assert len({a.shirt for a in looks}) == 4 and len({a.skin for a in looks}) == 4
    assert len({(a.head, a.torso, a.thigh, a.shoulder_width) for a in looks}) == 4
    backgrounds = np.stack([d.background for d in dancers]).astype(float)
    assert all(np.abs(backgrounds[i] - backgrounds[0]).mean() > 5 for i in range(1, 4))


def test_sizes_scale_everything():
    small, big = make_dancer(4, 1, 2, (128, 128)), make_dancer(4, 1, 2, (512, 512))
    for (_, p), (_, q) in zip(small.frames(5), big.frames(5)):
        seen = (p[:, 2] > 0) & (q[:, 2] > 0)
        assert seen.sum() > 100 and np.allclose(q[seen, :2], 4 * p[seen, :2], atol=1e-2)
    wide = make_dancer(4, 1, 2, (384, 192))
    img, pose = next(wide.frames(1))
    assert img.shape == (192, 384, 3)
    assert (pose[:25, 0] > 0).all() and (pose[:25, 1] < 192).all()


def test_motion_is_varied_and_not_a_loop():
    dancer = make_dancer(7, 0, 1, (256, 256))
    poses = np.stack([p for _, p in dancer.frames(240)])
    height = np.median([body_height(p) for p in poses])
    body = poses[:, :25, :2] - poses[:, B["MidHip"], None, :2]  # shape of the pose, not its place
    # Wrists travel over a large part of the body; the hips squat and the dancer moves about.
    for wrist in ("RWrist", "LWrist"):
        assert np.ptp(body[:, B[wrist], 1]) > 0.4 * height
    assert np.ptp(poses[:, B["MidHip"], 1]) > 0.03 * height
    assert np.ptp(poses[:, B["MidHip"], 0]) > 0.1 * height
    # No lag repeats the dance: a looped pose sequence would match itself at its period.
    for lag in range(10, 120):
        d = np.linalg.norm(body[lag:] - body[:-lag], axis=2).mean()
        assert d > 0.03 * height, lag
    # Consecutive frames are close: smooth motion, not noise.
    seen = (poses[1:, :25, 2] > 0) & (poses[:-1, :25, 2] > 0)
    step = np.where(seen, np.linalg.norm(np.diff(body, axis=0), axis=2), 0).max(axis=1)
    assert np.percentile(step, 99) < 0.06 * height


def test_keypoints_lie_on_what_is_drawn():
    for index in range(3):
        dancer = make_dancer(3, index, 3, (320, 320))
        app = dancer.appearance
        for f, (img, pose) in enumerate(dancer.frames(40)):
            if f % 8:
                continue
            seen = pose[:, 2] > 0
            assert set(np.unique(pose[:, 2])) <= {0.0, 1.0} and not pose[~seen, :2].any()
            x, y = np.round(pose[seen, :2]).astype(int).T
            changed = np.abs(img.astype(int) - dancer.background).sum(2) > 0
            assert changed[y, x].mean() >= 0.98  # every point on the dancer, not on the room
            if pose[B["Nose"], 2]:  # the nose is skin, possibly in shade: a multiple of the skin colour
                nose = img[int(round(pose[B["Nose"], 1])), int(round(pose[B["Nose"], 0]))].astype(float)
                skin = np.array(app.skin, float)
                k = nose @ skin / (skin @ skin)
                assert 0.55 < k < 1.1 and np.abs(nose - k * skin).max() < 15
            for side in "RL":
                ankle, heel = pose[B[side + "Ankle"], :2], pose[B[side + "Heel"], :2]
                assert np.hypot(*(ankle - heel)) < 0.1 * app.stature_px
                for toe in ("BigToe", "Heel"):
                    px, py = np.round(pose[B[side + toe], :2]).astype(int)
                    if 0 <= px < 320 and 0 <= py < 320:
                        shoe = [np.abs(img[py, px].astype(int) - s).max() for s in (app.shoes, shade(app.shoes, 0.7))]
                        assert min(shoe) < 40
            assert pose[FACE, 2].sum() >= 40 and pose[LHAND, 2].sum() + pose[RHAND, 2].sum() >= 30


def test_groundtruth_estimator_round_trips_and_rescales(three_dancers, tmp_path):
    _, files = three_dancers
    gt = _gt(files[2])
    est = make_estimator("groundtruth")
    est.begin(files[2])
    frame = np.zeros((256, 256, 3), np.uint8)
    assert np.array_equal(est.estimate(frame, 17), gt[17][None])
    half = est.estimate(np.zeros((128, 64, 3), np.uint8), 17)[0]
    assert np.allclose(half[:, 0], gt[17, :, 0] / 4) and np.allclose(half[:, 1], gt[17, :, 1] / 2)
    with pytest.raises(KeyError, match="frame 60"):
        est.estimate(frame, 60)
    lonely = tmp_path / "lonely.mp4"
    lonely.write_bytes(open(files[0], "rb").read())
    with pytest.raises(FileNotFoundError, match="lonely.keypoints.parquet"):
        make_estimator("groundtruth").begin(str(lonely))


# ------------------------------------------------------------------ palettes: base and held-out

QUANTIZED = 2 / 360  # hue error of a colour rounded to 8-bit RGB (saturation >= 0.18)


def _hue(rgb) -> float:
    return colorsys.rgb_to_hsv(*(np.asarray(rgb, float) / 255))[0]


def _from_base_centre(hue: float) -> float:
    """Circular distance (in turns) from the hue to the nearest base band's centre (k / HUE_BANDS)."""
    d = (hue * HUE_BANDS) % 1.0
    return min(d, 1 - d) / HUE_BANDS


def _wall_hue(dancer) -> float:
    # The wall's top row: no picture reaches it at 128 px, and the shading, stripes and texture
    # (the same added to R, G and B) keep the wall's hue.
    return _hue(dancer.background[0].astype(float).mean(0))


def _bands(hues: list[float], palette: str) -> set[int]:
    """The palette's bands (0..HUE_BANDS-1) the hues fall in."""
    return {int(round(h * HUE_BANDS - (0.5 if palette == "heldout" else 0))) % HUE_BANDS for h in hues}


def _check_palette(hues: list[float], palette: str) -> None:
    near = [_from_base_centre(h) for h in hues]
    if palette == "base":  # inside the base bands
        assert max(near) <= BAND_WIDTH / 2 + QUANTIZED, np.degrees(2 * np.pi * np.array(near))
    else:  # inside the held-out bands, halfway between: at least 10 degrees from every base hue
        assert min(near) >= 0.5 / HUE_BANDS - BAND_WIDTH / 2 - QUANTIZED, np.degrees(2 * np.pi * np.array(near))


def test_heldout_dancers_differ_from_every_base_dancer_in_clothes_and_room():
    """A base of 12 dancers and 4 held-out ones, rendered as the docs say (different seeds): no
    held-out shirt, skirt or wall hue falls in a base band, and each set is varied."""
    sets = {"base": [make_dancer(1, i, 12, (128, 128), palette="base") for i in range(12)],
            "heldout": [make_dancer(2, i, 4, (128, 128), palette="heldout") for i in range(4)]}
    for palette, dancers in sets.items():
        looks = [d.appearance for d in dancers]
        clothes = [_hue(a.shirt) for a in looks] + [_hue(a.bottom) for a in looks if a.bottom_style == "skirt"]
        walls = [_wall_hue(d) for d in dancers]
        _check_palette(clothes, palette)
        _check_palette(walls, palette)
        assert len(_bands(walls, palette)) >= (5 if palette == "base" else 3)
        assert len(_bands(clothes, palette)) >= 3
        assert len({a.skin for a in looks}) == len(looks) and len({round(a.stature_px) for a in looks}) == len(looks)
        for a in looks:
            if a.bottom_style != "skirt":  # trousers and shorts from the palette's half of the table
                nearest = TROUSER_COLORS[np.argmin([np.abs(np.subtract(a.bottom, c)).sum() for c in TROUSER_COLORS])]
                assert nearest in (BASE_TROUSERS if palette == "base" else HELDOUT_TROUSERS)


def test_palettes_split_every_clothes_colour():
    """Many appearances (no rendering): every shirt and skirt hue in its palette's bands, all six
    bands used, trousers from disjoint halves of the table."""
    assert not set(BASE_TROUSERS) & set(HELDOUT_TROUSERS) and set(BASE_TROUSERS) | set(HELDOUT_TROUSERS) == set(
        TROUSER_COLORS)
    for palette in ("base", "heldout"):
        rng = np.random.default_rng(9)
        looks = [random_appearance(rng, 128, 128, rng.uniform(), 9, palette) for _ in range(300)]
        hues = [_hue(a.shirt) for a in looks] + [_hue(a.bottom) for a in looks if a.bottom_style == "skirt"]
        _check_palette(hues, palette)
        assert _bands(hues, palette) == set(range(HUE_BANDS))
        table = BASE_TROUSERS if palette == "base" else HELDOUT_TROUSERS
        for a in looks:
            if a.bottom_style != "skirt":
                assert min(np.abs(np.subtract(a.bottom, c)).max() for c in table) < 45


def test_palette_any_is_the_default_and_unchanged():
    for seed, index in ((2, 1), (11, 0)):
        plain, any_ = make_dancer(seed, index, 4, (64, 64)), make_dancer(seed, index, 4, (64, 64), palette="any")
        assert plain.appearance.to_dict() == any_.appearance.to_dict() and plain.palette == "any"
        assert np.array_equal(plain.background, any_.background)
    # colours drawn before palettes existed: "any" keeps the generator's draws
    a = make_dancer(2, 1, 4, (64, 64)).appearance
    assert (a.shirt, a.bottom, a.skin) == PINNED_ANY


PINNED_ANY = ((149, 129, 64), (94, 42, 34), (110, 74, 46))


def test_palette_same_seed_same_dancers():
    for palette in ("base", "heldout"):
        a, b = (make_dancer(1, 3, 12, (64, 64), palette=palette) for _ in range(2))
        assert a.appearance == b.appearance and np.array_equal(a.background, b.background)
        assert a.palette == palette
        other = make_dancer(2, 3, 12, (64, 64), palette=palette)
        assert other.appearance.shirt != a.appearance.shirt
    with pytest.raises(ConfigError, match="palette"):
        make_dancer(1, 0, 1, (64, 64), palette="pastel")


def test_synthesize_records_the_heldout_palette(tmp_path):
    files = synthesize(str(tmp_path), dancers=2, frames=3, size=(64, 64), seed=2, palette="heldout")
    top = json.loads(open(files[-1]).read())
    assert top["palette"] == "heldout" and len(top["dancers"]) == 2
    _check_palette([_hue(d["shirt"]) for d in top["dancers"]], "heldout")
    from edn.cli import parser
    args = parser().parse_args(["synth", "out", "--palette", "base", "--seed", "1"])
    assert args.palette == "base" and parser().parse_args(["synth", "out"]).palette == "any"
    # numbered from 100: the same dancers under other names, to share a dataset with dancer_00, ...
    again = synthesize(str(tmp_path / "b"), dancers=2, frames=3, size=(64, 64), seed=2, palette="heldout", first=100)
    assert [f.rsplit("/", 1)[-1] for f in again] == ["dancer_100.mp4", "dancer_100.keypoints.parquet",
                                                     "dancer_101.mp4", "dancer_101.keypoints.parquet", "dancers.json"]
    renamed = json.loads(open(again[-1]).read())["dancers"]
    assert [d["id"] for d in renamed] == ["dancer_100", "dancer_101"]
    assert [{k: v for k, v in d.items() if k not in ("id", "video", "keypoints")} for d in renamed] == \
        [{k: v for k, v in d.items() if k not in ("id", "video", "keypoints")} for d in top["dancers"]]
    assert parser().parse_args(["synth", "out", "--first", "100"]).first == 100
