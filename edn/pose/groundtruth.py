"""Ground-truth poses as a detector: reads the keypoints written beside a synthetic video.

For `.../dancer_00.mp4` the poses are `.../dancer_00.keypoints.parquet` (edn.synth writes both):
columns frame_index (int32) and keypoints (137*3 float32, the flattened pose in the video's
pixels); the video's size is in the file's metadata, else probed from the video. Hard footage
(edn.synth.hard) also has `others` (list of 137*3 lists: everyone else in the frame); every
person is reported, ordered by the mean x of their visible points (so not always the dancer
first, as with a real detector), and people with no visible point are left out.
"""
from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq

from edn.errors import DataError, DataNotFoundError
from edn.pose.estimator import PoseEstimator, people_array
from edn.pose.layout import N_KEYPOINTS
from edn.storage import exists, read_bytes


def keypoints_url(video_url: str) -> str:
    base = video_url[:-4] if video_url.lower().endswith(".mp4") else video_url.rsplit(".", 1)[0]
    return base + ".keypoints.parquet"


class GroundTruthPoses(PoseEstimator):
    name = "groundtruth"

    def __init__(self):
        self._poses: dict[int, list[np.ndarray]] = {}
        self._size: tuple[int, int] | None = None
        self._url = ""

    def begin(self, video_url: str) -> None:
        url = keypoints_url(video_url)
        if url == self._url:  # the next segment of the same video
            return
        if not exists(url):
            raise DataNotFoundError(f"no ground-truth keypoints for {video_url}: {url} does not exist")
        try:
            table = pq.read_table(io.BytesIO(read_bytes(url)))
            index = table["frame_index"].to_numpy()
            flat = np.asarray(table["keypoints"].combine_chunks().flatten(), np.float32)
            people = [[pose] for pose in flat.reshape(len(index), N_KEYPOINTS, 3)]
            if "others" in table.column_names:
                for frame, others in zip(people, table["others"].to_pylist()):
                    frame += [np.asarray(p, np.float32).reshape(N_KEYPOINTS, 3) for p in others]
        except Exception as e:
            raise DataError(f"{url}: not a keypoints table (frame_index, keypoints[{N_KEYPOINTS * 3}]): {e}") from e
        self._poses = dict(zip(index.tolist(), people))
        self._size = self._video_size(table.schema.metadata or {}, video_url)
        self._url = url

    @staticmethod
    def _video_size(metadata: dict, video_url: str) -> tuple[int, int]:
        if b"width" in metadata and b"height" in metadata:
            return int(metadata[b"width"]), int(metadata[b"height"])
        from edn.video import probe
        info = probe(video_url)
        return info.width, info.height

    def estimate(self, frame_rgb: np.ndarray, frame_index: int) -> np.ndarray:
        if self._size is None:
            raise RuntimeError("GroundTruthPoses.estimate called before begin(video_url)")
        try:
            people = [pose.copy() for pose in self._poses[int(frame_index)]]
        except KeyError:
            raise KeyError(f"{self._url} has no keypoints for frame {frame_index}") from None
        h, w = frame_rgb.shape[:2]
        if (w, h) != self._size:  # a resized copy of the video: follow the frame
            for pose in people:
                pose[:, 0] *= w / self._size[0]
                pose[:, 1] *= h / self._size[1]
        return people_array(sorted(people, key=_mean_x))


def _mean_x(pose: np.ndarray) -> float:
    seen = pose[:, 2] > 0
    return float(pose[seen, 0].mean()) if seen.any() else np.inf
