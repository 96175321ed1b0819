"""The frame dataset as standard tools read it: frames with no face box, frames with no dancer and
a one-frame video, written through the real ingest and read back by pyarrow, pandas, DuckDB and
Ray Data; a dataset of the old layout is refused with the command that rewrites it, which does."""
import json
import shutil

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from edn.data.ingest import IngestConfig, ingest
from edn.data.reader import DatasetLayoutError, video_frames, video_poses, video_record
from edn.data.upgrade import upgrade_dataset
from edn.pose.face import face_box
from edn.pose.layout import FACE, B
from edn.synth import keypoints_table, synthesize

FRAMES = 40
NO_FACE = range(8, 18)     # longer than cleanup.max_gap (5): stays without a nose, so no face box
NO_DANCER = range(24, 33)  # likewise: no keypoint at all


def _edit_keypoints(url: str, edit) -> None:
    table = pq.read_table(url)
    poses = np.asarray(table["keypoints"].to_pylist(), np.float32).reshape(len(table), -1, 3)
    edit(poses)
    meta = table.schema.metadata
    pq.write_table(keypoints_table(poses, int(meta[b"width"]), int(meta[b"height"])), url)


@pytest.fixture(scope="module")
def edge_dataset(ray_cluster, tmp_path_factory):
    """dancer_00 with frames without a face box and without a dancer; a one-frame video."""
    root = tmp_path_factory.mktemp("edges")
    videos = root / "videos"
    synthesize(str(videos), dancers=1, frames=FRAMES, size=(96, 96), seed=5)
    single = root / "single"
    synthesize(str(single), dancers=1, frames=1, size=(96, 96), seed=6)
    shutil.copy(single / "dancer_00.mp4", videos / "one_frame.mp4")
    shutil.copy(single / "dancer_00.keypoints.parquet", videos / "one_frame.keypoints.parquet")

    def cut(poses):
        for i in NO_FACE:
            poses[i, B["Nose"]] = 0
            poses[i, FACE] = 0
        poses[list(NO_DANCER)] = 0
    _edit_keypoints(str(videos / "dancer_00.keypoints.parquet"), cut)
    out = root / "dataset"
    result = ingest([str(videos)], str(out), IngestConfig(estimator="groundtruth", width=64, height=64,
                                                          segment_frames=16))
    assert sorted(result["done"]) == ["dancer_00", "one_frame"] and not result["failed"]
    return out


def _expected_boxes(dataset, vid):
    record = video_record(str(dataset), vid)
    _, poses = video_poses(str(dataset), vid)
    return [face_box(p, record["width"], record["height"]) for p in poses]


def test_every_reader_reads_every_column(edge_dataset):
    files = sorted(str(p) for p in (edge_dataset / "frames").rglob("*.parquet"))
    record = video_record(str(edge_dataset), "dancer_00")
    assert record["frames_without_pose"] == len(NO_DANCER) and record["detected_frames"] == FRAMES - len(NO_DANCER)
    boxes = _expected_boxes(edge_dataset, "dancer_00")
    assert [b is None for b in boxes] == [i in NO_FACE or i in NO_DANCER for i in range(FRAMES)]

    table = pq.read_table(edge_dataset / "frames" / "dancer_00")
    assert table.num_rows == FRAMES and table["face_box"].null_count == len(NO_FACE) + len(NO_DANCER)
    assert [None if b is None else tuple(b) for b in table.sort_by("frame_index")["face_box"].to_pylist()] == boxes
    assert pads.dataset(files).to_table().num_rows == FRAMES + 1

    frame = pd.read_parquet(edge_dataset / "frames" / "dancer_00").sort_values("frame_index")
    assert frame["face_box"].isna().sum() == len(NO_FACE) + len(NO_DANCER)
    assert frame["person_detected"].sum() == FRAMES - len(NO_DANCER)

    con = duckdb.connect()
    rows = con.execute(f"SELECT video_id, count(*), count(face_box), sum(len(keypoints)) FROM read_parquet({files}) "
                       "GROUP BY video_id ORDER BY video_id").fetchall()
    assert rows == [("dancer_00", FRAMES, FRAMES - len(NO_FACE) - len(NO_DANCER), FRAMES * 411),
                    ("one_frame", 1, 1, 411)]
    first = con.execute(f"SELECT face_box FROM read_parquet({files}) WHERE video_id = 'dancer_00' "
                        "AND frame_index = 0").fetchone()[0]
    assert tuple(first) == boxes[0]

    import ray
    ds = ray.data.read_parquet(files)
    got = {r["frame_index"]: r for r in ds.filter(lambda r: r["video_id"] == "dancer_00").take_all()}
    assert len(got) == FRAMES
    assert [got[i]["face_box"] is None for i in range(FRAMES)] == [b is None for b in boxes]
    assert tuple(got[0]["face_box"]) == boxes[0] and len(got[0]["keypoints"]) == 411


def test_old_layout_is_refused_then_upgraded(edge_dataset, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(edge_dataset, old)
    # what ingest wrote before layout 2: face_box a nullable fixed-size list, no layout in the record
    for part in (old / "frames").rglob("*.parquet"):
        table = pq.read_table(part)
        fixed = table.schema.set(table.schema.get_field_index("face_box"),
                                 pa.field("face_box", pa.list_(pa.int32(), 4), nullable=True))
        pq.write_table(table.cast(fixed), part)
    with pytest.raises(pa.ArrowInvalid):  # the bug itself, so this test makes the old layout for real
        pq.read_table(old / "frames" / "dancer_00")
    for rec in (old / "videos").glob("*.json"):
        record = json.loads(rec.read_text())
        del record["layout"], record["frames_without_pose"]
        rec.write_text(json.dumps(record))

    with pytest.raises(DatasetLayoutError, match=f"edn upgrade-dataset {old}"):
        next(video_frames(str(old), "dancer_00"))
    assert upgrade_dataset(str(old)) == {"upgraded": ["dancer_00", "one_frame"], "current": []}
    assert upgrade_dataset(str(old)) == {"upgraded": [], "current": ["dancer_00", "one_frame"]}
    assert video_record(str(old), "dancer_00")["frames_without_pose"] == len(NO_DANCER)
    for vid in ("dancer_00", "one_frame"):
        new, orig = pq.read_table(old / "frames" / vid), pq.read_table(edge_dataset / "frames" / vid)
        assert new.equals(orig), vid  # every column, face boxes recomputed to the same values
