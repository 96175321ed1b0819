"""The pose detectors edn registers by name, and where each is imported from: kept apart from
edn.pose.estimator (numpy) so that `edn --help` can list them without importing anything."""
from __future__ import annotations

ESTIMATORS = {
    "mediapipe": "edn.pose.mediapipe_estimator:MediapipeHolistic",
    "groundtruth": "edn.pose.groundtruth:GroundTruthPoses",
    "openpose-json": "edn.pose.openpose_json:OpenPoseJson",
    "openpose": "edn.pose.openpose_dnn:OpenPoseDnn",
}


def estimator_names() -> list[str]:
    return sorted(ESTIMATORS)
