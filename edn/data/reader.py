"""Reading one video's rows back from the dataset without Ray (rendering, evaluation)."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow.parquet as pq

from edn.data.schema import decode_image, keypoints_array
from edn.storage import filesystem, join


def _file(dataset_url: str, video_id: str) -> pq.ParquetFile:
    url = join(dataset_url, "frames", video_id, "part-0.parquet")
    fs, path = filesystem(url)
    if not fs.exists(path):
        raise FileNotFoundError(f"{dataset_url}: no frames for video {video_id!r} ({url} is missing)")
    return pq.ParquetFile(fs.open(path, "rb"))


def video_poses(dataset_url: str, video_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(frame indices (N,), poses (N, 137, 3)) of one video, in frame order."""
    table = _file(dataset_url, video_id).read(columns=["frame_index", "keypoints"])
    return np.asarray(table["frame_index"]), keypoints_array(table["keypoints"].to_numpy(zero_copy_only=False))


def video_frames(dataset_url: str, video_id: str, batch_size: int = 64,
                 start: int = 0, stop: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (frame indices, RGB images (n, H, W, 3), poses (n, 137, 3)) for frames in [start, stop)."""
    for batch in _file(dataset_url, video_id).iter_batches(batch_size=batch_size,
                                                           columns=["frame_index", "image", "keypoints"]):
        index = np.asarray(batch.column("frame_index"))
        keep = (index >= start) & (index < (stop if stop is not None else np.iinfo(np.int64).max))
        if keep.any():
            images = [decode_image(b) for b, k in zip(batch.column("image").to_pylist(), keep) if k]
            poses = keypoints_array(batch.column("keypoints").to_numpy(zero_copy_only=False))[keep]
            yield index[keep], np.stack(images), poses
