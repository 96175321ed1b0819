"""Cross-person transfer (a source dancer onto the target): no ground truth exists, so only what
needs none is scored, as in the paper: pose distance (the detector on the generated frames
against the normalized source pose that drove them) and temporal stability (background flicker:
frame-to-frame change outside the dancer, where a fixed camera sees a still scene)."""
from __future__ import annotations

import numpy as np

from edn.data.reader import video_floor_stats, video_poses
from edn.eval.pose_distance import detected_pose_distance, summarize
from edn.eval.stability import stability
from edn.pose.estimator import make_estimator
from edn.pose.normalize import normalize_poses
from edn.registry import TargetModel


def evaluate_transfer(dataset_url: str, source: str, model: TargetModel, detector: str = "mediapipe",
                      max_frames: int = 300) -> dict:
    """Metrics of `source`'s dance rendered onto `model`'s target (its first `max_frames` frames)."""
    _, poses = video_poses(dataset_url, source)
    poses = normalize_poses(poses[:max_frames], video_floor_stats(dataset_url, source), model.floor)
    _, frames = model.renderer()(poses)
    estimator = make_estimator(detector)
    try:
        distances = detected_pose_distance(estimator, frames, poses, video_id=f"{source}-transfer")
    finally:
        estimator.close()
    steady = stability(frames, poses=poses)
    pose = summarize(distances)
    return {"source": source, "target": model.meta["target"], "frames": int(len(frames)),
            "pose_distance": pose["mean"], "pose_missed": pose["missed"],
            "background_flicker": steady["background_flicker"], "frame_change": steady["frame_change"],
            "pose_distance_per_frame": [None if np.isnan(d) else round(float(d), 4) for d in distances]}
