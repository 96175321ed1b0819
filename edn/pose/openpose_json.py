"""Poses from the per-frame JSON files that the OpenPose binary writes (`--write_json DIR`):
the format users of OpenPose already have on disk.

For `.../NAME.mp4` the files are `.../NAME_json/NAME_000000000000_keypoints.json`, ... (one per
frame, numbered from 0); `folder` overrides the folder (a URL, or `{stem}` relative to the video).
Each file holds `people`, each with pose_keypoints_2d (BODY_25: 75 numbers), face_keypoints_2d
(210) and hand_left/right_keypoints_2d (63 each), flattened x, y, confidence. When a frame has
several people, all are returned; edn.pose.track picks the dancer.
"""
from __future__ import annotations

import json
import os
import re

import numpy as np

from edn.errors import DataNotFoundError
from edn.pose.estimator import PoseEstimator, people_array
from edn.pose.layout import BODY, FACE, LHAND, N_KEYPOINTS, RHAND
from edn.storage import filesystem

_PARTS = (("pose_keypoints_2d", BODY), ("face_keypoints_2d", FACE),
          ("hand_left_keypoints_2d", LHAND), ("hand_right_keypoints_2d", RHAND))
_FRAME_NUMBER = re.compile(r"_(\d{12})_keypoints\.json$")


def person_pose(person: dict) -> np.ndarray:
    pose = np.zeros((N_KEYPOINTS, 3), np.float32)
    for key, rows in _PARTS:
        values = person.get(key) or []
        if values:
            pose[rows] = np.asarray(values, np.float32).reshape(-1, 3)
    return pose


class OpenPoseJson(PoseEstimator):
    name = "openpose-json"

    def __init__(self, folder: str = "{stem}_json"):
        self.folder = folder
        self._files: dict[int, str] = {}
        self._fs = None
        self._url = ""

    def begin(self, video_url: str) -> None:
        stem = os.path.splitext(os.path.basename(video_url))[0]
        folder = self.folder.format(stem=stem)
        url = folder if "://" in folder or os.path.isabs(folder) else f"{video_url.rsplit('/', 1)[0]}/{folder}"
        self._fs, path = filesystem(url)
        if not self._fs.isdir(path):
            raise DataNotFoundError(f"no OpenPose JSON folder for {video_url}: {url} does not exist")
        self._files = {int(m.group(1)): f for f in self._fs.ls(path, detail=False)
                       if (m := _FRAME_NUMBER.search(f))}
        if not self._files:
            raise DataNotFoundError(f"{url}: no OpenPose files named *_<12-digit frame>_keypoints.json")
        self._url = url

    def estimate(self, frame_rgb: np.ndarray, frame_index: int) -> np.ndarray:
        if frame_index not in self._files:
            raise KeyError(f"{self._url} has no keypoints file for frame {frame_index}")
        with self._fs.open(self._files[frame_index], "rb") as f:
            people = json.load(f).get("people", [])
        return people_array([person_pose(p) for p in people])
