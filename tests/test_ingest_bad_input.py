"""The issue's bad-input set through one real ingest (mediapipe on real encoded files): the bad
videos land in errors/ with their file and reason, the unusual but valid ones are ingested
correctly, and a rerun does nothing new."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

import badvideos as bv
from edn.data.ingest import IngestConfig, ingest
from edn.data.reader import video_frames, video_poses, video_record
from edn.pose.layout import B, body_height

REASONS = {  # video id -> what its error must say
    "zero_byte": "empty file", "not_a_video": "not a readable video", "truncated": "truncated",
    "truncated_mid_packet": "truncated", "corrupt_middle": "corrupt", "no_person": "no person detected",
    "missing": "no such file",
}
VALID = ["odd_size_libx264", "rotated_90", "single_frame", "variable_frame_rate"]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, dancers):
    """video id -> file; the dancer videos' ground truth lies beside them."""
    d = str(tmp_path_factory.mktemp("bad"))
    made = [bv.zero_byte(d), bv.not_a_video(d), bv.no_person(d), bv.single_frame(d), bv.odd_size(d),
            bv.variable_frame_rate(d), bv.rotated(d, 90), bv.missing(d),
            bv.truncated(d, dancers[0]), bv.truncated_mid_packet(d, dancers[0]), bv.corrupt_middle(d, dancers[0])]
    return {f.rsplit("/", 1)[1][:-4]: f for f in made}


def test_bad_input_set(ray_cluster, bad_inputs, tmp_path):
    out = str(tmp_path / "ds")
    cfg = IngestConfig(estimator="mediapipe", width=96, height=96, concurrency=2)
    result = ingest(list(bad_inputs.values()), out, cfg)

    assert sorted(result["done"]) == ["odd_size_libx264", "rotated_90", "single_frame", "variable_frame_rate"]
    errors = {f["video_id"]: f["error"] for f in result["failed"]}
    assert set(errors) == set(REASONS)
    for vid, reason in REASONS.items():
        assert bad_inputs[vid] in errors[vid] and reason in errors[vid], errors[vid]
        assert json.loads((tmp_path / "ds" / "errors" / f"{vid}.json").read_text())["error"] == errors[vid]

    single = video_record(out, "single_frame")
    assert single["frames"] == 1 and single["detected_frames"] == 1

    odd = video_record(out, "odd_size_libx264")  # 641x479 scaled to cover 96x96, centre-cropped
    assert (odd["source_width"], odd["source_height"]) == (641, 479)
    assert odd["transform"]["scale"] == pytest.approx(96 / 479)
    assert odd["transform"]["offset_x"] == pytest.approx((96 - 641 * 96 / 479) / 2)

    vfr = video_record(out, "variable_frame_rate")
    parts = [pq.read_table(tmp_path / "ds" / "frames" / "variable_frame_rate" / p) for p in vfr["parts"]]
    times = [t for p in parts for t in p["timestamp"].to_pylist()]
    assert times == pytest.approx([float(t) for t in bv.variable_frame_rate_times()], abs=1e-4)

    # the phone video is stored landscape with a rotation: ingested upright, poses on the dancer
    rot = video_record(out, "rotated_90")
    assert (rot["source_width"], rot["source_height"], rot["rotation"]) == (96, 160, 270)
    gt = np.asarray(pq.read_table(bad_inputs["rotated_90"].replace(".mp4", ".keypoints.parquet"))["keypoints"]
                    .to_pylist(), np.float32).reshape(-1, 137, 3)
    _, poses = video_poses(out, "rotated_90")
    t = rot["transform"]
    rows = [B[k] for k in ("Nose", "Neck", "MidHip", "RKnee", "LKnee")]
    err = np.hypot(*(poses[:, rows, :2] - (gt[:, rows, :2] * t["scale"] + (t["offset_x"], t["offset_y"]))).T)
    assert np.median(err) / np.nanmedian([body_height(p) for p in poses]) < 0.1
    _, images, _ = next(video_frames(out, "rotated_90"))
    assert images.shape[1:] == (96, 96, 3)

    again = ingest(list(bad_inputs.values()), out, cfg)
    assert again["done"] == [] and sorted(again["skipped"]) == VALID
    assert {f["video_id"] for f in again["failed"]} == set(REASONS)
