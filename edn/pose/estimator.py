"""The pose detector interface and the registry of detectors by name."""
from __future__ import annotations

import abc
import importlib

import numpy as np

from edn.errors import ConfigError
from edn.pose.estimator_names import ESTIMATORS, estimator_names
from edn.pose.layout import N_KEYPOINTS


class PoseEstimator(abc.ABC):
    """Turns the frames of one video, in order, into OpenPose-layout poses (see layout.py).

    `begin` is called once per video before its frames, so detectors can track across
    frames (and the ground-truth reader can find the video's keypoints file).
    """

    name: str = ""

    def begin(self, video_url: str) -> None:  # noqa: B027 - optional: most detectors keep nothing between videos
        """Start a new video: forget whatever was tracked in the previous one."""

    @abc.abstractmethod
    def estimate(self, frame_rgb: np.ndarray, frame_index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB frame -> (P, 137, 3) float32: every person detected, in that
        frame's pixels (x, y, confidence; an undetected keypoint is all 0). P may be 0.

        Which person is the dancer is decided later, across frames (edn.pose.track).
        """

    def close(self) -> None:  # noqa: B027 - optional: most detectors hold nothing to release
        """Release the detector's resources."""


def people_array(poses: list[np.ndarray]) -> np.ndarray:
    """A list of (137, 3) poses -> (P, 137, 3) float32, dropping poses with no keypoint."""
    kept = [p for p in poses if p[:, 2].max(initial=0) > 0]
    return np.stack(kept).astype(np.float32) if kept else np.zeros((0, N_KEYPOINTS, 3), np.float32)


def make_estimator(name: str, **options) -> PoseEstimator:
    """A detector by registered name, or any PoseEstimator class by import path `module:Class`."""
    path = ESTIMATORS.get(name, name if ":" in name else None)
    if path is None:
        raise ConfigError(f"unknown pose estimator {name!r}; choose one of {estimator_names()} or give module:Class")
    module, cls = path.split(":")
    estimator = getattr(importlib.import_module(module), cls)(**options)
    if not isinstance(estimator, PoseEstimator):
        raise TypeError(f"pose estimator {name!r} is not a edn.pose.estimator.PoseEstimator")
    return estimator
