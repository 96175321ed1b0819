"""Global pose normalization on synthetic dancers of known, different heights and distances,
through a real ingest: the statistics stored with the dataset map each dancer onto the others."""
import itertools
import json

import numpy as np
import pytest

from edn.data.ingest import IngestConfig, ingest
from edn.data.reader import video_floor_stats, video_poses
from edn.pose.normalize import floor_stats, normalize_poses
from edn.synth import synthesize


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, ray_cluster):
    videos = tmp_path_factory.mktemp("norm_dancers")
    synthesize(str(videos), dancers=3, frames=90, size=(192, 192), seed=11)
    out = str(tmp_path_factory.mktemp("norm_ds"))
    result = ingest([str(videos)], out, IngestConfig(estimator="groundtruth", width=160, height=160))
    assert len(result["done"]) == 3
    return out, json.loads((videos / "dancers.json").read_text())["dancers"]


def test_stats_are_stored_at_ingest_and_follow_the_dancers(dataset):
    out, meta = dataset
    stats = [video_floor_stats(out, d["id"]) for d in meta]
    # the dancers really differ: otherwise the mapping test below could not fail
    assert max(s.height_close for s in stats) > 1.15 * min(s.height_close for s in stats)
    assert max(s.close for s in stats) > 1.05 * min(s.close for s in stats)
    for s, d in zip(stats, meta):  # nearer dancers stand lower in the frame and look taller
        assert (s.width, s.height) == (160, 160)
        assert s.close == pytest.approx(d["floor_y_px"] * 160 / 192, rel=0.06)


def test_every_dancer_maps_onto_every_other_within_3_percent(dataset):
    out, meta = dataset
    for src, tgt in itertools.permutations([d["id"] for d in meta], 2):
        _, poses = video_poses(out, src)
        s, t = video_floor_stats(out, src), video_floor_stats(out, tgt)
        mapped = floor_stats(normalize_poses(poses, s, t), t.width, t.height)
        for field in ("close", "far", "height_close", "height_far"):
            assert getattr(mapped, field) == pytest.approx(getattr(t, field), rel=0.03), (src, tgt, field)
        assert not np.isnan(normalize_poses(poses, s, t)).any()
