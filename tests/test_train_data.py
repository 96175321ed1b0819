import numpy as np
import pytest

from edn.data.reader import split_point
from edn.data.reference import appearance_colours, appearance_figures
from edn.data.schema import decode_image, encode_image
from edn.pose.draw import draw_pose
from edn.pose.face import boxes_array
from edn.pose.layout import BODY_COLORS
from edn.train.collate import PairCollate, apply_colour_maps, hue_turns, lightness_mirrors
from edn.train.data import make_pairs, pair_counts, render_pairs


def test_pairs_are_consecutive_frames_before_the_holdout():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (16, 24, 3), np.uint8) for _ in range(8)]
    index = np.array([0, 1, 2, 4, 5, 6, 7, 8])  # frame 3 missing: no (2, 4) pair
    poses = rng.uniform(1, 15, (8, 137, 3)).astype(np.float32)
    boxes = np.array([[2, 2, 10, 10]] * 5 + [None] + [[3, 3, 11, 11]] * 2, dtype=object)  # frame 6: no face
    batch = {"frame_index": index, "image": np.array([encode_image(f) for f in frames], dtype=object),
             "keypoints": poses.reshape(8, -1), "face_box": boxes}
    pairs = make_pairs(batch, max_index=8)
    assert list(pairs["frame_index"]) == [1, 2, 5, 6, 7]  # 8 is held out, 4 has no predecessor
    assert pairs["face_box"].tolist() == [[2, 2, 10, 10]] * 3 + [[-1] * 4, [3, 3, 11, 11]]
    assert list(make_pairs(batch, max_index=8, need_face=True)["frame_index"]) == [1, 2, 5, 7]
    out = render_pairs(pairs)
    assert out["face_box"].shape == (5, 4)
    assert out["image"].shape == (5, 2, 16, 24, 3) and out["pose"].shape == (5, 2, 16, 24, 3)
    # pair (4, 5) -> rows 3 and 4 of the batch; images survive the JPEG round trip closely
    assert np.abs(out["image"][2, 0].astype(int) - decode_image(batch["image"][3]).astype(int)).max() == 0
    assert out["pose"].max() > 0


def test_frames_without_the_dancer_form_no_pair_and_are_counted():
    rng = np.random.default_rng(1)
    index = np.arange(10)
    poses = rng.uniform(1, 15, (10, 137, 3)).astype(np.float32)
    poses[4] = 0                # the dancer not found: neither (3, 4) nor (4, 5) may train
    poses[7, :, 2] = 0
    poses[7, 2, 2] = 1.0        # one body keypoint draws no figure: as good as none
    boxes = np.array([[2, 2, 10, 10]] * 9 + [None], dtype=object)  # frame 9: no face box
    batch = {"frame_index": index, "image": np.array([b"jpg"] * 10, dtype=object),
             "keypoints": poses.reshape(10, -1), "face_box": boxes}
    assert list(make_pairs(batch, max_index=10)["frame_index"]) == [1, 2, 3, 6, 9]
    assert list(make_pairs(batch, max_index=10, need_face=True)["frame_index"]) == [1, 2, 3, 6]
    counts = pair_counts(index, poses, boxes_array(boxes), max_index=10, need_face=True)
    assert counts == {"frames": 10, "frames_without_pose": 2, "pairs": 4, "pairs_without_pose": 4,
                      "pairs_without_face_box": 1}


def test_a_block_without_pairs_renders_to_an_empty_batch():
    pairs = make_pairs({"frame_index": np.array([4]), "image": np.array([b"x"], dtype=object),
                        "keypoints": np.zeros((1, 411), np.float32), "face_box": np.array([None])}, max_index=10)
    out = render_pairs(pairs)
    assert len(out["frame_index"]) == 0 and out["image"].shape[0] == 0 and out["pose"].shape[0] == 0


def test_split_point():
    assert split_point(480, 0.1) == 432 and split_point(48, 0.1) == 43 and split_point(3, 0.9) == 2


def test_hue_turns_keep_grey_and_brightness():
    maps = hue_turns(64, np.random.default_rng(0))
    assert np.allclose(maps @ np.ones(3), np.ones(3))  # grey stays grey: no colour cast
    assert np.allclose(maps @ maps.transpose(0, 2, 1), np.eye(3))  # lengths kept: no fading
    red = maps @ np.array([1.0, 0, 0])
    assert np.ptp(red, axis=0).min() > 0.9  # red goes everywhere on the colour wheel


def test_lightness_mirrors_turn_dark_clothes_light_half_the_time():
    maps = hue_turns(64, np.random.default_rng(0))
    mirrored, offsets = lightness_mirrors(maps, np.random.default_rng(1))
    flipped = offsets[:, 0] == 255
    assert 16 < flipped.sum() < 48  # about half
    assert np.array_equal(mirrored[~flipped], maps[~flipped]) and not offsets[~flipped].any()
    colours = np.array([[25, 25, 30], [40, 60, 110], [230, 230, 225]], np.uint8)  # black, navy, white trousers
    out = apply_colour_maps(np.broadcast_to(colours, (64, 3, 3)), mirrored, offsets).astype(int)
    assert (out[flipped, 0] >= 220).all() and (out[flipped, 2] <= 35).all()  # black shown white, white dark
    assert np.abs(out[~flipped].mean(-1) - colours.mean(-1)).max() <= 1  # the others' brightness kept
    # the hue turn's colour, its chroma (the part off the grey axis) unchanged by the mirror
    same_turn = apply_colour_maps(np.broadcast_to(colours, (64, 3, 3)), maps).astype(int)[flipped, 1]
    navy = out[flipped, 1]
    assert np.abs((navy - navy.mean(-1, keepdims=True)) - (same_turn - same_turn.mean(-1, keepdims=True))).max() <= 1


@pytest.mark.parametrize("lightness", [False, True])
def test_a_base_pair_and_its_reference_are_recoloured_alike(lightness):
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 255, (16, 16, 3), np.uint8) for _ in range(2)]
    batch = {"frame_index": np.array([0, 1]), "image": np.array([encode_image(f) for f in frames], dtype=object),
             "keypoints": rng.uniform(1, 15, (2, 137 * 3)).astype(np.float32), "face_box": np.array([None, None])}
    pairs = make_pairs(batch, max_index=2)
    pairs["video"] = np.zeros(1, np.int32)
    plain = render_pairs(pairs)
    # the reference: a scene, the pair's frame t as the reference frame, a pose figure
    scene, figure = rng.integers(0, 255, (16, 16, 3), np.uint8), plain["pose"][0, 1]
    references = np.concatenate([scene, plain["image"][0, 1], figure], -1)[None]
    faces = np.ascontiguousarray(plain["image"][:, 1, 4:12, 4:12])  # the reference frame's face box
    out = PairCollate(references=references, recolour=True, seed=0, reference_faces=faces, lightness=lightness)(pairs)
    image, reference = out["image"].numpy(), out["reference"].numpy()
    assert np.abs(image.astype(int) - plain["image"]).mean() > 10           # recoloured
    assert np.array_equal(reference[0, ..., 3:6], image[0, 1])              # by the same turn as the pair
    assert np.array_equal(reference[0, ..., 6:], figure)                    # the pose figure as drawn
    assert np.array_equal(out["reference_face"].numpy(), image[:, 1, 4:12, 4:12])  # its face box too
    assert np.array_equal(PairCollate(references=references)(pairs)["image"].numpy(), plain["image"])


def _standing_pose(size: int) -> np.ndarray:
    """A pose with every body keypoint seen, on a vertical line apart from the arms and legs."""
    pose = np.zeros((137, 3), np.float32)
    xy = {0: (8, 2), 1: (8, 4), 2: (6, 4), 3: (4, 6), 4: (3, 8), 5: (10, 4), 6: (12, 6), 7: (13, 8), 8: (8, 9),
          9: (7, 9), 10: (6, 12), 11: (6, 15), 12: (9, 9), 13: (10, 12), 14: (10, 15)}
    for k, (x, y) in xy.items():
        pose[k] = (x * size / 16, y * size / 16, 1)
    return pose


def test_appearance_colours_are_the_reference_frames_under_each_part():
    """Each part's colour is read from the reference frame where its reference figure draws it: a
    frame painted in one colour per part gives back exactly those colours."""
    size = 128
    pose = _standing_pose(size)
    figure = draw_pose(pose, size, size)
    frame = np.zeros_like(figure)
    part_colour = {k: rng_colour for k, rng_colour in enumerate(np.random.default_rng(4).integers(0, 255, (25, 3)))}
    for k, colour in enumerate(BODY_COLORS):  # the frame: each part's pixels (and their rim) in its own colour
        near = np.abs(figure.astype(int) - colour).max(-1) <= 30
        frame[near] = part_colour[k]
    reference = np.concatenate([np.zeros_like(frame), frame, figure], -1)
    colours = appearance_colours(reference)
    for k in (0, 3, 4, 6, 7, 10, 13):  # parts of a colour of their own
        assert np.array_equal(colours[k], part_colour[k]), k
    assert not colours[15:19].any()  # eyes and ears: not in the reference figure, black
    assert np.array_equal(colours[19], colours[14]) and np.array_equal(colours[22], colours[11])  # feet: OpenPose
    # draws them in their ankle's colour, so they share it
    # the appearance figure: the pose in those colours where the plain figure has its parts' colours
    appearance = appearance_figures(pose[None], colours, size, size)[0]
    for k in (3, 7, 13):
        assert np.array_equal(appearance[np.all(figure == BODY_COLORS[k], -1)][0], colours[k]), k


def test_a_base_pairs_appearance_figures_are_recoloured_with_it():
    rng = np.random.default_rng(5)
    size = 32
    poses = np.stack([_standing_pose(size), _standing_pose(size) + [1, 0, 0]]).reshape(2, -1)
    frames = [rng.integers(0, 255, (size, size, 3), np.uint8) for _ in range(2)]
    batch = {"frame_index": np.array([0, 1]), "image": np.array([encode_image(f) for f in frames], dtype=object),
             "keypoints": poses.astype(np.float32), "face_box": np.array([None, None])}
    pairs = make_pairs(batch, max_index=2)
    pairs["video"] = np.zeros(1, np.int32)
    plain = render_pairs(pairs)
    clothes = np.full((size, size, 3), (220, 40, 40), np.uint8)  # saturated: a hue turn shows
    references = np.concatenate([frames[0], clothes, plain["pose"][0, 1]], -1)[None]
    colours = appearance_colours(references[0])
    out = PairCollate(references=references, appearance=True)(pairs)
    assert np.array_equal(out["appearance"].numpy()[0], appearance_figures(poses.reshape(2, 137, 3), colours,
                                                                           size, size))
    collate = PairCollate(references=references, recolour=True, appearance=True)
    collate.rng = np.random.default_rng(7)
    turned = collate(pairs)
    maps = hue_turns(1, np.random.default_rng(7))  # the turn the collate drew
    assert np.array_equal(turned["image"].numpy(), apply_colour_maps(plain["image"], maps))
    assert np.array_equal(turned["appearance"].numpy(), apply_colour_maps(out["appearance"].numpy(), maps))
    drawn = out["appearance"].numpy().any(-1)
    change = np.abs(turned["appearance"].numpy().astype(int) - out["appearance"].numpy())
    assert drawn.sum() > 20 and change[drawn].mean() > 10
