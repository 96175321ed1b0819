"""One dancer per video: follow the main dancer through the frames and ignore everybody else.

The dancer is acquired as the largest, most central person, then followed by keypoint
continuity: in each frame, the person whose body keypoints lie closest to the dancer's last
seen pose (in units of its size) is the dancer, if close enough. When nobody is close enough
the frame has no dancer; after `reacquire_after` such frames in a row the dancer is lost and
acquired afresh, so a detector that switched people or a cut in the video cannot lock the
track on a bystander forever. Whoever takes the track, by continuity or afresh, must be about
the size the dancer last was (`max_size_change`, measured on the head, shoulders and hips, which
dancing and partial occlusion leave alone): a dancer who leaves the frame while a passer-by at
another distance from the camera crosses it is not swapped for the passer-by; only after
`forget_after` frames without the dancer may anyone be taken (a cut to another shot).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edn.pose.layout import BODY, B


@dataclass
class TrackConfig:
    min_confidence: float = 0.1  # keypoints below this do not count for size or continuity
    max_jump: float = 0.5        # mean body-keypoint move between frames, in body sizes, still the same person
    reacquire_after: int = 15    # frames in a row without a match before the dancer is chosen afresh
    centre_weight: float = 0.5   # how much a person's distance from the centre lowers its claim
    max_size_change: float = 1.4  # whoever takes the track is within this factor of the dancer's size
    max_colour_change: float = 0.05  # ... and of their clothes' colour (chromaticity distance, torso_colour)
    forget_after: int = 150      # frames in a row without the dancer after which any size is taken


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
        self.whole: np.ndarray | None = None  # the dancer's last pose with head, shoulders and hips seen: their size
        self.look: np.ndarray | None = None   # the dancer's clothes' colour (torso_colour), smoothed
        self.missed = 0
        self.acquisitions = 0  # how many times the dancer was chosen afresh (1 for a clean track)

    def __call__(self, people: np.ndarray, looks: list | None = None) -> np.ndarray | None:
        """`looks`: each person's torso_colour (None where unknown), if the frame was seen."""
        looks = looks if looks is not None else [None] * len(people)
        if self.last is not None and self.missed <= self.cfg.reacquire_after and len(people):
            # a passer-by walking through the dancer's spot is not the dancer
            dist = [pose_distance(p, self.last, self.cfg.min_confidence) if self._may_be_dancer(p, look)
                    else float("inf") for p, look in zip(people, looks)]
            best = int(np.argmin(dist))
            if dist[best] <= self.cfg.max_jump:
                return self._keep(people[best], looks[best])
        if self.last is None or self.missed > self.cfg.reacquire_after:
            scores = [prominence(p, self.width, self.height, self.cfg) if self._may_be_dancer(p, look, strict=True)
                      else 0.0 for p, look in zip(people, looks)]
            if scores and max(scores) > 0:
                self.acquisitions += 1
                best = int(np.argmax(scores))
                return self._keep(people[best], looks[best])
        self.missed += 1
        return None

    def _may_be_dancer(self, pose: np.ndarray, look: np.ndarray | None, strict: bool = False) -> bool:
        """About the dancer's size and clothes' colour; a pose too partial to tell passes unless
        `strict` (taking the track afresh: wait until the head, shoulders and hips show)."""
        if self.whole is None or self.missed > self.cfg.forget_after:
            return True
        # the clothes only when taking the track afresh: followed frame to frame, a passer-by in
        # front of the shirt would otherwise make the dancer look like someone else
        colour = None if not strict or look is None or self.look is None else \
            bool(np.abs(look - self.look).sum() <= self.cfg.max_colour_change)
        ratio = core_scale(pose, self.whole, self.cfg.min_confidence)
        size = None if ratio is None else 1 / self.cfg.max_size_change <= ratio <= self.cfg.max_size_change
        if colour is False or size is False:
            return False
        # afresh, a cue must say it is the dancer: the clothes when the frames were seen, else the size
        return not strict or bool(colour if self.look is not None else size)

    def _keep(self, pose: np.ndarray, look: np.ndarray | None) -> np.ndarray:
        self.last, self.missed = pose, 0
        if (pose[CORE, 2] >= self.cfg.min_confidence).all():
            self.whole = pose
        if look is not None:  # followed slowly: light drifts, an arm crosses the shirt
            self.look = look if self.look is None else 0.8 * self.look + 0.2 * look
        return pose


CORE = [B[k] for k in ("Nose", "Neck", "RShoulder", "LShoulder", "MidHip", "RHip", "LHip")]


def core_scale(pose: np.ndarray, ref: np.ndarray, min_conf: float) -> float | None:
    """How much larger `pose` is than `ref`, from the spread of the head, shoulders and hips seen
    in both (the body's stiff part: dancing arms and legs do not change it, a partly hidden
    dancer keeps it); None when fewer than 3 such points are seen in both."""
    both = (pose[CORE, 2] >= min_conf) & (ref[CORE, 2] >= min_conf)
    if both.sum() < 3:
        return None
    spread = [float(np.hypot(*np.ptp(p[CORE][both, :2], axis=0))) for p in (pose, ref)]
    return spread[0] / spread[1] if spread[1] > 0 else None


TORSO = [B[k] for k in ("RShoulder", "LShoulder", "LHip", "RHip")]


def torso_colour(image: np.ndarray, pose: np.ndarray, min_conf: float = 0.1) -> np.ndarray | None:
    """A person's clothes' colour: the chromaticity (r, g, b over their sum; light drifting over
    the video changes it little) of the middle of their torso, between shoulders and hips. None
    when fewer than three of those are seen or the torso is too small to sample."""
    seen = pose[TORSO, 2] >= min_conf
    if seen.sum() < 3:  # three of the four corners make a triangle of shirt: enough
        return None
    quad = pose[TORSO][seen, :2]
    quad = quad.mean(0) + 0.6 * (quad - quad.mean(0))  # the middle: not the arms or the background beside it
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, np.round(quad).astype(np.int32), 1)
    if mask.sum() < 4:
        return None
    mean = image[mask.astype(bool)].mean(0)
    return mean / max(float(mean.sum()), 1.0)
