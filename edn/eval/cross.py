"""Cross-person transfer (a source dancer onto the target): no ground truth exists, so only what
needs none is scored, as in the paper: pose distance (the detector on the generated frames
against the normalized source pose that drove them) and temporal stability (background flicker:
frame-to-frame change outside the dancer, where a fixed camera sees a still scene)."""
from __future__ import annotations

from edn.data.reader import video_poses, video_record
from edn.eval.pose_distance import detected_pose_distance, per_frame, summarize
from edn.eval.stability import stability
from edn.inference import TargetModel
from edn.pose.estimator import make_estimator
from edn.pose.layout import has_pose
from edn.pose.normalize import FloorStats, transfer_poses


def evaluate_transfer(dataset_url: str, source: str, model: TargetModel, detector: str = "mediapipe",
                      max_frames: int = 300) -> dict:
    """Metrics of `source`'s dance rendered onto `model`'s target (its first `max_frames` frames).
    Frames where the source has no pose show the target's empty scene: they are rendered, counted
    and not scored."""
    record = video_record(dataset_url, source)
    _, poses = video_poses(dataset_url, source)
    floor = FloorStats.from_dict(record["floor_stats"]) if record.get("floor_stats") else None
    poses = transfer_poses(poses[:max_frames], floor, model.floor, (record["width"], record["height"]), model.size)
    _, frames = model.renderer()(poses)
    scored = has_pose(poses)
    estimator = make_estimator(detector)
    try:
        distances = detected_pose_distance(estimator, frames, poses, video_id=f"{source}-transfer")
    finally:
        estimator.close()
    steady = stability(frames, poses=poses)
    pose = summarize(distances[scored])
    return {"source": source, "target": model.meta.target, "frames": int(len(frames)),
            "frames_without_pose": int((~scored).sum()),
            "pose_distance": pose["mean"], "pose_missed": pose["missed"],
            "background_flicker": steady["background_flicker"], "frame_change": steady["frame_change"],
            "pose_distance_per_frame": per_frame(distances)}
