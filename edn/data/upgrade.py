"""`edn upgrade-dataset`: rewrite videos written in an older dataset layout, in place.

Layout 1 stored `face_box` as a nullable fixed-size list, which pyarrow writes but cannot read
back once a frame has no face box. Its boxes are recomputed from the stored keypoints (the same
function ingest uses), so the column is never read; every other column is copied as it is. Each
part is published atomically, then the record: a rewrite cut off is finished by a rerun.
"""
from __future__ import annotations

import json
import logging
import os

import pyarrow as pa
import pyarrow.parquet as pq

from edn.data.schema import FRAMES_SCHEMA, LAYOUT, keypoints_array
from edn.errors import DataNotFoundError
from edn.pose.face import face_box
from edn.pose.layout import has_pose
from edn.storage import filesystem, join, read_bytes, write_bytes_atomic, written_locally

log = logging.getLogger(__name__)


def _rewrite_part(url: str, width: int, height: int) -> int:
    """Rewrite one part in the current layout; returns its frames without a pose."""
    fs, path = filesystem(url)
    with fs.open(path, "rb") as f:
        table = pq.read_table(f, columns=[n for n in FRAMES_SCHEMA.names if n != "face_box"])
    poses = keypoints_array(table["keypoints"].to_numpy(zero_copy_only=False))
    boxes = pa.array([face_box(p, width, height) for p in poses], FRAMES_SCHEMA.field("face_box").type)
    with written_locally(url) as local:
        pq.write_table(table.append_column(FRAMES_SCHEMA.field("face_box"), boxes).cast(FRAMES_SCHEMA), local,
                       row_group_size=64)
    return int((~has_pose(poses)).sum())


def upgrade_dataset(dataset_url: str) -> dict:
    """Rewrite every video of the dataset that is not in the current layout.
    -> {"upgraded": [video ids], "current": [video ids]}"""
    fs, path = filesystem(join(dataset_url, "videos"))
    if not fs.isdir(path):
        raise DataNotFoundError(f"{dataset_url}: not an edn dataset (no videos/ folder)")
    upgraded, current = [], []
    for name in sorted(os.path.basename(p) for p in fs.ls(path, detail=False) if p.endswith(".json")):
        url = join(dataset_url, "videos", name)
        record = json.loads(read_bytes(url))
        if record.get("layout", 1) == LAYOUT:
            current.append(record["video_id"])
            continue
        without_pose = sum(_rewrite_part(join(dataset_url, "frames", record["video_id"], part), record["width"],
                                         record["height"]) for part in record["parts"])
        record.update(layout=LAYOUT, frames_without_pose=without_pose)
        write_bytes_atomic(url, json.dumps(record, indent=1).encode())
        log.info("%s: rewritten in layout %d", record["video_id"], LAYOUT)
        upgraded.append(record["video_id"])
    return {"upgraded": upgraded, "current": current}
