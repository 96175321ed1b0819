"""The target's empty scene, recovered from frames in which the dancer moves about."""
import cv2
import numpy as np

from edn.data.ingest import IngestConfig, ingest
from edn.data.plate import background_plate
from edn.data.reader import video_frames
from edn.synth import make_dancer


def test_the_plate_is_the_room_without_the_dancer(ray_cluster, dancers, tmp_path):
    dataset = str(tmp_path / "dataset")
    assert ingest(dancers[:1], dataset, IngestConfig(estimator="groundtruth"))["done"] == ["dancer_00"]
    plate = background_plate(dataset, "dancer_00", 48, (128, 128)).astype(int)
    dancer = make_dancer(3, 0, 2, (128, 128))  # the conftest dancers' seed and count
    room = dancer.background.astype(int)
    first = next(iter(dancer.frames(1)))[0].astype(int)
    drawn = np.abs(first - room).max(-1) > 24  # the dancer's pixels in frame 0
    # there the plate shows the room (filled in where the dancer never moved away), far closer
    # to it than the frame is; away from the dancer the room as the stored frames show it
    # (H.264 and JPEG leave a few grey levels)
    assert np.abs(plate - room)[drawn].mean() < 0.3 * np.abs(first - room)[drawn].mean()
    away = ~cv2.dilate(drawn.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)
    stored = next(video_frames(dataset, "dancer_00", stop=1))[1][0].astype(int)
    assert np.abs(plate - room)[away].mean() < np.abs(stored - room)[away].mean() + 0.25
