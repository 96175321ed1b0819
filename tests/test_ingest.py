import dataclasses
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from edn.data.ingest import IngestConfig, ingest
from edn.data.reader import video_frames, video_poses
from edn.data.schema import FRAMES_SCHEMA
from edn.data.segments import extract_segment, plan_video
from edn.errors import ResourcesError
from edn.pose.cleanup import DETECTED, INTERPOLATED, MISSING, CleanupConfig
from edn.pose.estimator import make_estimator


def test_bad_videos_fail_alone_and_rerun_skips_finished(ray_cluster, dancers, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for d in dancers:  # the ground-truth keypoints travel with their videos
        shutil.copy(d, videos)
        shutil.copy(d.replace(".mp4", ".keypoints.parquet"), videos)
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "notes.mp4").write_text("not a video\n" * 100)
    (videos / "cut.mp4").write_bytes(open(dancers[0], "rb").read()[:3000])
    missing = str(tmp_path / "nowhere" / "missing.mp4")
    out = str(tmp_path / "dataset")
    cfg = IngestConfig(estimator="groundtruth", width=64, height=64, concurrency=2, segment_frames=20)

    result = ingest([str(videos), missing], out, cfg)
    assert sorted(result["done"]) == ["dancer_00", "dancer_01"]
    errors = {f["video_id"]: f["error"] for f in result["failed"]}
    assert set(errors) == {"empty", "notes", "cut", "missing"}
    assert str(videos / "empty.mp4") in errors["empty"] and "empty file" in errors["empty"]
    assert str(videos / "notes.mp4") in errors["notes"] and "not a readable video" in errors["notes"]
    assert str(videos / "cut.mp4") in errors["cut"]
    assert missing in errors["missing"] and "no such file" in errors["missing"]
    recorded = json.loads((tmp_path / "dataset" / "errors" / "cut.json").read_text())
    assert recorded["url"] == str(videos / "cut.mp4")

    record = json.loads((tmp_path / "dataset" / "videos" / "dancer_00.json").read_text())
    assert record["segments"] == [[0, 30], [30, 48]] and len(record["parts"]) == 2  # keyframes at 0 and 30
    tables = [pq.read_table(tmp_path / "dataset" / "frames" / "dancer_00" / p) for p in record["parts"]]
    assert all(t.schema.equals(FRAMES_SCHEMA) for t in tables)
    assert sum(t.num_rows for t in tables) == 48
    assert [i for t in tables for i in t["frame_index"].to_pylist()] == list(range(48))
    assert not (tmp_path / "dataset" / "_staging").exists() or not any((tmp_path / "dataset" / "_staging").iterdir())
    assert (record["frames"], record["width"], record["height"], record["fps"]) == (48, 64, 64, 30.0)
    assert record["transform"]["scale"] == 0.5

    # keypoints follow the stored image: ground truth at 128 px, halved at 64 px
    src = pq.read_table(dancers[0].replace(".mp4", ".keypoints.parquet"))
    gt = np.asarray(src["keypoints"].to_pylist(), np.float32).reshape(48, -1, 3)
    _, poses = video_poses(out, "dancer_00")
    flags = np.concatenate([np.asarray(t["keypoint_flags"].to_pylist()) for t in tables])
    seen = flags == DETECTED
    assert np.array_equal(seen, gt[:, :, 2] > 0)
    assert np.allclose(poses[seen][:, :2], gt[seen][:, :2] * 0.5, atol=1e-3)
    # keypoints out of view for a few frames are interpolated and flagged, the rest stay empty
    assert (flags == INTERPOLATED).any() and np.all(poses[flags == INTERPOLATED][:, 2] > 0)
    assert not poses[flags == MISSING].any()
    assert record["keypoints"]["keypoint_counts"]["interpolated"] == (flags == INTERPOLATED).sum()
    index, images, _ = next(video_frames(out, "dancer_00", batch_size=8))
    assert images.shape == (8, 64, 64, 3) and list(index) == list(range(8))

    again = ingest([str(videos), missing], out, cfg)
    assert sorted(again["skipped"]) == ["dancer_00", "dancer_01"] and again["done"] == []
    assert {f["video_id"] for f in again["failed"]} == {"empty", "notes", "cut", "missing"}


class _Shifted:
    """The ground truth moved 3 px right: marks frames that came from a staged segment."""

    def __init__(self):
        self.inner = make_estimator("groundtruth")

    def begin(self, url):
        self.inner.begin(url)

    def estimate(self, frame, index):
        people = self.inner.estimate(frame, index)
        people[:, :, 0] += 3 * (people[:, :, 2] > 0)
        return people


def test_a_rerun_reuses_staged_segments(ray_cluster, dancers, tmp_path):
    """As after a run cut off between extraction and commit: staged segments are not redone."""
    out = str(tmp_path / "ds")
    cfg = IngestConfig(estimator="groundtruth", width=64, height=64, segment_frames=20,
                       cleanup=CleanupConfig(max_gap=0))
    plan = plan_video(dancers[0], "dancer_00", out, cfg.staging_settings(), cfg.segment_frames)
    first = plan["segments"][0]
    assert extract_segment(first, _Shifted()) == first["stop"] - first["start"]

    assert ingest([dancers[0]], out, cfg)["done"] == ["dancer_00"]
    _, poses = video_poses(out, "dancer_00")
    gt = pq.read_table(dancers[0].replace(".mp4", ".keypoints.parquet"))
    truth = np.asarray(gt["keypoints"].to_pylist(), np.float32).reshape(48, -1, 3)[:, :, :2] * 0.5
    seen = poses[:, :, 2] > 0
    shift = (poses[:, :, 0] - truth[:, :, 0])[seen]
    rows = np.nonzero(seen)[0]
    assert np.allclose(shift[rows < first["stop"]], 1.5, atol=1e-3)  # the staged segment (3 px at 128 -> 64)
    assert np.allclose(shift[rows >= first["stop"]], 0, atol=1e-3)  # the rest, extracted now
    assert not (tmp_path / "ds" / "_staging" / plan["video"]["staging"].rsplit("/", 1)[1]).exists()


def test_a_worker_killed_mid_video_is_retried_and_nothing_is_lost(ray_cluster, dancers, tmp_path):
    marker = tmp_path / "crashed"
    cfg = IngestConfig(estimator="tests.crashing_estimator:CrashOnce", width=64, height=64,
                       estimator_options={"marker": str(marker), "crash_at": 40}, concurrency=2, segment_frames=20,
                       cleanup=CleanupConfig(max_gap=0))
    out = str(tmp_path / "ds")
    result = ingest(dancers, out, cfg)
    assert marker.exists()                                   # a worker really died mid-segment
    assert sorted(result["done"]) == ["dancer_00", "dancer_01"] and not result["failed"]
    for video in dancers:
        vid = video.rsplit("/", 1)[1][:-4]
        index, poses = video_poses(out, vid)
        gt = pq.read_table(video.replace(".mp4", ".keypoints.parquet"))
        truth = np.asarray(gt["keypoints"].to_pylist(), np.float32).reshape(48, -1, 3)
        assert list(index) == list(range(48))                # every frame once, none twice
        seen = truth[:, :, 2] > 0
        assert np.allclose(poses[seen][:, :2], truth[seen][:, :2] * 0.5, atol=1e-3)


def test_detectors_that_cannot_start_fail_fast_saying_why_and_leave_nothing_queued(ray_cluster, dancers, tmp_path):
    """Detector actors the cluster cannot start (2 of its 4 CPUs held by something else, 3 asked for):
    an error naming what was asked and what was free, after actor_start_timeout_s; and nothing of
    the failed ingest stays queued to take the CPUs freed later: the next ingest gets them."""
    from ray.util.placement_group import placement_group, remove_placement_group
    held = placement_group([{"CPU": 2}])
    assert held.wait(60)
    cfg = IngestConfig(estimator="groundtruth", width=64, height=64, cpus_per_actor=3, actor_start_timeout_s=5)
    try:
        with pytest.raises(ResourcesError,
                           match=r"could not start 1 pose-detector actor\(s\) of 3 CPU.*within 5 s.*free now"):
            ingest(dancers[:1], str(tmp_path / "dataset"), cfg)
    finally:
        remove_placement_group(held)
    cfg = dataclasses.replace(cfg, actor_start_timeout_s=60)
    assert ingest(dancers[:1], str(tmp_path / "dataset"), cfg)["done"] == ["dancer_00"]
