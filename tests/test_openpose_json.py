import json
import shutil

import numpy as np
import pyarrow.parquet as pq

from edn.data.ingest import IngestConfig, ingest
from edn.data.reader import video_poses
from edn.pose.cleanup import CleanupConfig
from edn.pose.layout import BODY, FACE, LHAND, RHAND


def _people_json(pose: np.ndarray) -> dict:
    return {"pose_keypoints_2d": pose[BODY].ravel().tolist(), "face_keypoints_2d": pose[FACE].ravel().tolist(),
            "hand_left_keypoints_2d": pose[LHAND].ravel().tolist(),
            "hand_right_keypoints_2d": pose[RHAND].ravel().tolist()}


def test_openpose_json_folder_gives_the_same_dataset_as_ground_truth(ray_cluster, dancers, tmp_path):
    video = tmp_path / "dancer_00.mp4"
    shutil.copy(dancers[0], video)
    gt = pq.read_table(dancers[0].replace(".mp4", ".keypoints.parquet"))
    poses = np.asarray(gt["keypoints"].to_pylist(), np.float32).reshape(len(gt), -1, 3)
    folder = tmp_path / "dancer_00_json"
    folder.mkdir()
    for i, pose in enumerate(poses):
        bystander = pose.copy()
        bystander[:, :2] = bystander[:, :2] * 0.3 + 5  # a smaller person in the corner
        people = [_people_json(bystander), _people_json(pose)]
        (folder / f"dancer_00_{i:012d}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": people}))
    (folder / f"dancer_00_{len(poses) - 1:012d}_keypoints.json").write_text(json.dumps({"people": []}))

    cfg = IngestConfig(estimator="openpose-json", cleanup=CleanupConfig(max_gap=0))  # poses as imported
    result = ingest([str(video)], str(tmp_path / "ds"), cfg)
    assert result["done"] == ["dancer_00"]
    _, got = video_poses(str(tmp_path / "ds"), "dancer_00")
    assert np.allclose(got[:-1], poses[:-1])      # the dancer, not the bystander, every part
    assert not got[-1].any()                      # a frame with nobody: all zeros


def test_missing_json_folder_is_named(ray_cluster, dancers, tmp_path):
    video = tmp_path / "lonely.mp4"
    shutil.copy(dancers[0], video)
    result = ingest([str(video)], str(tmp_path / "ds"), IngestConfig(estimator="openpose-json"))
    assert "lonely_json" in result["failed"][0]["error"] and "does not exist" in result["failed"][0]["error"]
