"""Reading one video's record and rows back from the dataset without Ray (training's driver,
rendering, evaluation)."""
from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pyarrow.parquet as pq

from edn.data.schema import LAYOUT, decode_image, keypoints_array
from edn.errors import DataError, DataNotFoundError
from edn.pose.normalize import FloorStats
from edn.storage import exists, filesystem, join, read_bytes


class DatasetLayoutError(DataError):
    pass


def split_point(frames: int, holdout_fraction: float) -> int:
    """First held-out frame index: the video's tail is kept for evaluation, never trained on."""
    return max(2, int(round(frames * (1.0 - holdout_fraction))))


def video_record(dataset_url: str, video_id: str) -> dict:
    """The video's record (schema.VIDEO_FIELDS); an error naming the rewrite command for a video
    written in an older layout."""
    url = join(dataset_url, "videos", f"{video_id}.json")
    if not exists(url):
        raise DataNotFoundError(f"{dataset_url}: video {video_id!r} is not in the dataset (no {url})")
    record = json.loads(read_bytes(url))
    if record.get("layout", 1) != LAYOUT:
        raise DatasetLayoutError(
            f"{url}: video {video_id!r} was written in dataset layout {record.get('layout', 1)}, this edn reads "
            f"layout {LAYOUT} (layout 1's face_box column cannot be read back once a frame has no face); "
            f"rewrite it in place with: edn upgrade-dataset {dataset_url}")
    return record


def part_urls(dataset_url: str, video_id: str) -> list[str]:
    """The video's Parquet parts in frame order, as its record lists them."""
    record = video_record(dataset_url, video_id)
    return [join(dataset_url, "frames", video_id, name) for name in record["parts"]]


def _files(dataset_url: str, video_id: str) -> Iterator[tuple[str, pq.ParquetFile]]:
    for url in part_urls(dataset_url, video_id):
        fs, path = filesystem(url)
        if not fs.exists(path):
            raise DataNotFoundError(f"{dataset_url}: video {video_id!r} is incomplete: {url} is missing")
        try:
            yield url, pq.ParquetFile(fs.open(path, "rb"))
        except Exception as e:
            raise DataError(f"{url}: not a readable Parquet file ({e})") from e


def video_floor_stats(dataset_url: str, video_id: str) -> FloorStats:
    """The video's floor statistics, computed at ingest (edn.pose.normalize)."""
    record = video_record(dataset_url, video_id)
    if not record.get("floor_stats"):
        raise DataError(f"{dataset_url}: video {video_id!r} has no floor statistics, so its poses cannot be "
                         f"normalized: {record.get('floor_stats_error', 'not computed at ingest')}")
    return FloorStats.from_dict(record["floor_stats"])


def video_poses(dataset_url: str, video_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(frame indices (N,), poses (N, 137, 3)) of one video, in frame order."""
    index, poses = [], []
    for _, f in _files(dataset_url, video_id):
        table = f.read(columns=["frame_index", "keypoints"])
        index.append(np.asarray(table["frame_index"]))
        poses.append(keypoints_array(table["keypoints"].to_numpy(zero_copy_only=False)))
    return np.concatenate(index), np.concatenate(poses)


def video_frames(dataset_url: str, video_id: str, batch_size: int = 64,
                 start: int = 0, stop: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (frame indices, RGB images (n, H, W, 3), poses (n, 137, 3)) for frames in [start, stop)."""
    stop = stop if stop is not None else np.iinfo(np.int64).max
    for _, f in _files(dataset_url, video_id):
        if f.metadata.num_rows and f.read_row_group(0, columns=["frame_index"])["frame_index"][0].as_py() >= stop:
            return
        for batch in f.iter_batches(batch_size=batch_size, columns=["frame_index", "image", "keypoints"]):
            index = np.asarray(batch.column("frame_index"))
            keep = (index >= start) & (index < stop)
            if keep.any():
                images = [decode_image(b) for b, k in zip(batch.column("image").to_pylist(), keep) if k]
                poses = keypoints_array(batch.column("keypoints").to_numpy(zero_copy_only=False))[keep]
                yield index[keep], np.stack(images), poses


def video_timestamps(dataset_url: str, video_id: str) -> np.ndarray:
    """(N,) seconds from the container, in frame order: a variable frame rate's real spacing."""
    return np.concatenate([np.asarray(f.read(columns=["timestamp"])["timestamp"])
                           for _, f in _files(dataset_url, video_id)])
