"""One dancer per video: follow the main dancer through the frames and ignore everybody else.

The dancer is acquired as the largest, most central person, then followed by keypoint
continuity: in each frame, the person whose body keypoints lie closest to the dancer's last
seen pose (in units of its size) is the dancer, if close enough. When nobody is close enough
the frame has no dancer; after `reacquire_after` such frames in a row the dancer is lost and
acquired afresh, so a detector that switched people or a cut in the video cannot lock the
track on a bystander forever.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edn.pose.layout import BODY


@dataclass
class TrackConfig:
    min_confidence: float = 0.1  # keypoints below this do not count for size or continuity
    max_jump: float = 0.5        # mean body-keypoint move between frames, in body sizes, still the same person
    reacquire_after: int = 15    # frames in a row without a match before the dancer is chosen afresh
    centre_weight: float = 0.5   # how much a person's distance from the centre lowers its claim


def _visible(pose: np.ndarray, min_conf: float) -> np.ndarray:
    return pose[BODY][:, 2] >= min_conf


def body_size(pose: np.ndarray, min_conf: float = 0.1) -> float:
    """Larger side of the box around the visible body keypoints, in pixels (0 if none)."""
    pts = pose[BODY][_visible(pose, min_conf), :2]
    return float(np.ptp(pts, axis=0).max()) if len(pts) >= 2 else 0.0


def prominence(pose: np.ndarray, width: int, height: int, cfg: TrackConfig) -> float:
    """Size, discounted by the distance of the body's centre from the frame's centre."""
    pts = pose[BODY][_visible(pose, cfg.min_confidence), :2]
    if len(pts) < 2:
        return 0.0
    centre = (pts.min(0) + pts.max(0)) / 2
    off = np.hypot((centre[0] - width / 2) / (width / 2), (centre[1] - height / 2) / (height / 2)) / np.sqrt(2)
    return body_size(pose, cfg.min_confidence) * (1.0 - cfg.centre_weight * min(off, 1.0))


def pose_distance(a: np.ndarray, b: np.ndarray, min_conf: float) -> float:
    """Mean distance of the body keypoints seen in both, over b's size; inf if too few shared."""
    both = _visible(a, min_conf) & _visible(b, min_conf)
    size = body_size(b, min_conf)
    if both.sum() < 2 or size <= 0:
        return float("inf")
    return float(np.hypot(*(a[BODY][both, :2] - b[BODY][both, :2]).T).mean() / size)


class DancerTracker:
    """Feed the people of each frame in order; get back the dancer's pose or None."""

    def __init__(self, width: int, height: int, cfg: TrackConfig | None = None):
        self.width, self.height, self.cfg = width, height, cfg or TrackConfig()
        self.last: np.ndarray | None = None
        self.missed = 0
        self.acquisitions = 0  # how many times the dancer was chosen afresh (1 for a clean track)

    def __call__(self, people: np.ndarray) -> np.ndarray | None:
        if self.last is not None and self.missed <= self.cfg.reacquire_after and len(people):
            dist = [pose_distance(p, self.last, self.cfg.min_confidence) for p in people]
            best = int(np.argmin(dist))
            if dist[best] <= self.cfg.max_jump:
                return self._keep(people[best])
        if self.last is None or self.missed > self.cfg.reacquire_after:
            scores = [prominence(p, self.width, self.height, self.cfg) for p in people]
            if scores and max(scores) > 0:
                self.acquisitions += 1
                return self._keep(people[int(np.argmax(scores))])
        self.missed += 1
        return None

    def _keep(self, pose: np.ndarray) -> np.ndarray:
        self.last, self.missed = pose, 0
        return pose


def track_dancer(people_per_frame: list[np.ndarray], width: int, height: int,
                 cfg: TrackConfig | None = None) -> tuple[list[np.ndarray | None], int]:
    """The dancer's pose in each frame (None where not found) and the number of acquisitions."""
    tracker = DancerTracker(width, height, cfg)
    return [tracker(people) for people in people_per_frame], tracker.acquisitions
