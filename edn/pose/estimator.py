"""The pose detector interface and the registry of detectors by name."""
from __future__ import annotations

import abc
import importlib

import numpy as np


class PoseEstimator(abc.ABC):
    """Turns the frames of one video, in order, into OpenPose-layout poses (see layout.py).

    `begin` is called once per video before its frames, so detectors can track across
    frames (and the ground-truth reader can find the video's keypoints file).
    """

    name: str = ""

    def begin(self, video_url: str) -> None:
        """Start a new video: forget whatever was tracked in the previous one."""

    @abc.abstractmethod
    def estimate(self, frame_rgb: np.ndarray, frame_index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB frame -> (137, 3) float32 pose in that frame's pixels.

        A frame with no person gives a pose whose confidences are all 0.
        """

    def close(self) -> None:
        """Release the detector's resources."""


_ESTIMATORS = {
    "mediapipe": "edn.pose.mediapipe_estimator:MediapipeHolistic",
    "groundtruth": "edn.pose.groundtruth:GroundTruthPoses",
    "openpose-json": "edn.pose.openpose_json:OpenPoseJson",
}


def estimator_names() -> list[str]:
    return sorted(_ESTIMATORS)


def make_estimator(name: str, **options) -> PoseEstimator:
    try:
        module, cls = _ESTIMATORS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown pose estimator {name!r}; choose one of {estimator_names()}") from None
    return getattr(importlib.import_module(module), cls)(**options)
