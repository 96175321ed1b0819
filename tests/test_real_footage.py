"""Real footage, end to end: videos made from a real photograph of a person (tests/photo_videos.py:
a pan, the person leaving the frame, the face cut out) go through ingest with mediapipe ->
training (body and face, short) -> evaluation -> transfer -> catalog, with the frames that have
no pose left out of training and scoring, counted and reported, and shown as the target's empty
scene when a source's dancer is gone."""
import json

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from edn.data.ingest import IngestConfig, ingest
from edn.data.reader import video_poses, video_record
from edn.eval.run import evaluate_and_report
from edn.models.meta import PairCounts
from edn.pose.layout import has_pose
from edn.registry import load_registered
from edn.render.batch import CatalogConfig, render_catalog
from edn.render.manifest import read_manifest
from edn.render.transfer import transfer
from edn.train.run import train
from edn.video import VideoWriter, read_frames
from tests.photo_videos import write_photo_videos
from tests.train_helpers import tiny_face_stage, tiny_training

pytestmark = pytest.mark.slow  # trains or runs jobs: started first (tests/conftest.py)

FRAMES = 60


@pytest.fixture(scope="module")
def photos(ray_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    urls = write_photo_videos(str(root / "videos"), frames=FRAMES, size=128)
    dataset = str(root / "dataset")
    # detected at the videos' 128 px, stored at 64 px: the networks stay tiny
    result = ingest(urls, dataset, IngestConfig(estimator="mediapipe", width=64, height=64))
    assert sorted(result["done"]) == ["photo_facecut", "photo_leaves", "photo_pan"], result["failed"]
    return root, dataset


def test_photo_videos_ingest_with_their_gaps_counted(photos):
    _, dataset = photos
    for vid in ("photo_pan", "photo_leaves", "photo_facecut"):
        record = video_record(dataset, vid)
        _, poses = video_poses(dataset, vid)
        assert record["frames_without_pose"] == int((~has_pose(poses)).sum())
        # an upper-body photograph shows no ankles: no floor statistics, and ingest says why
        assert record["floor_stats"] is None and "ankle" in record["floor_stats_error"]
    assert video_record(dataset, "photo_pan")["frames_without_pose"] == 0
    # the person is away for a third of photo_leaves: a long gap, not interpolated over
    assert video_record(dataset, "photo_leaves")["frames_without_pose"] >= 0.25 * FRAMES


def test_photo_pipeline_end_to_end(photos, mlflow_server, tmp_path):
    root, dataset = photos
    cfg = tiny_training(dataset, "photo_facecut", str(tmp_path / "ray"), mlflow_server, "edn-photo")
    body = train(cfg)
    data = body["training_data"]
    _, poses = video_poses(dataset, "photo_facecut")
    assert data["frames"] == 54 and data["frames_without_pose"] == int((~has_pose(poses[:54])).sum())
    assert data["pairs"] + data["pairs_without_pose"] == 53  # every consecutive pair before the held-out tail
    client = MlflowClient(mlflow_server)
    logged = client.get_run(body["run_id"]).data.metrics
    assert logged["data_pairs"] == data["pairs"] and logged["data_frames_without_pose"] == data["frames_without_pose"]
    face = train(tiny_face_stage(cfg))
    # the face stage trains only where the frame has a face box, among the body stage's pairs
    faces = face["training_data"]
    assert faces["pairs"] + faces["pairs_without_face_box"] == data["pairs"] and faces["pairs"] > 0
    model = load_registered("edn-photo", "candidate", mlflow_server)
    assert model.face is not None and model.floor is None and model.background is not None
    assert model.meta.training_data.body == PairCounts(**data) and model.meta.training_data.face.pairs > 0

    metrics = evaluate_and_report(dataset, model, "edn-photo", str(tmp_path / "eval"), mlflow_server,
                                  sources=["photo_leaves"])
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["heldout_frames"] + saved["heldout_frames_without_pose"] == FRAMES - 54
    cross = metrics["transfers"][0]
    assert cross["frames_without_pose"] == video_record(dataset, "photo_leaves")["frames_without_pose"]

    # the source leaves the frame: there the output is the target's empty scene, not the generator's guess
    out = str(tmp_path / "leaves_on_facecut.mp4")
    info = transfer(dataset, "photo_leaves", model, out, layout="output")
    assert info["frames"] == FRAMES and info["frames_without_pose"] == cross["frames_without_pose"]
    assert info["normalization"].startswith("none")
    _, source_poses = video_poses(dataset, "photo_leaves")
    rendered = np.stack([f for _, _, f in read_frames(out)]).astype(int)
    gone = ~has_pose(source_poses)
    # as close as the empty scene alone, as many frames, through the same H.264 writer (yuv420p halves
    # the colour resolution: 4.9 gray levels for one machine's plate, under 4 for others; measured:
    # the rendered frames 4.79)
    with VideoWriter(str(tmp_path / "background.mp4"), fps=25) as writer:
        for _ in range(int(gone.sum())):
            writer.write(model.background)
    codec = np.abs(np.stack([f for _, _, f in read_frames(str(tmp_path / "background.mp4"))]).astype(int)
                   - model.background).mean()
    gone_error = np.abs(rendered[gone] - model.background).mean()
    print(f"empty-scene frames {gone_error:.2f} gray levels from the plate, the plate alone through H.264 {codec:.2f}")
    assert gone_error < codec + 0.5
    assert np.abs(rendered[~gone] - model.background).mean() > 5 * gone_error

    catalog = tmp_path / "catalog.csv"
    pd.DataFrame([("photo_leaves", dataset, "edn-photo@candidate", "leaves.mp4"),
                  ("photo_pan", dataset, "edn-photo@candidate", "pan.mp4")],
                 columns=["source", "dataset", "target", "output"]).to_csv(catalog, index=False)
    result = render_catalog(str(catalog), str(tmp_path / "catalog"),
                            CatalogConfig(tracking_uri=mlflow_server, actors=1, chunk_frames=40))
    assert result["done"] == 2 and not result["failed"]
    manifest = {e["source"]: e for e in read_manifest(str(tmp_path / "catalog"))}
    assert manifest["photo_leaves"]["frames_without_pose"] == info["frames_without_pose"]
    assert manifest["photo_pan"]["frames_without_pose"] == 0
    assert manifest["photo_pan"]["normalization"].startswith("none (the source's feet")
