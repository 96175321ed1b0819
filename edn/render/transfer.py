"""Motion transfer: a source video's poses, normalized to the target, rendered by its model."""
from __future__ import annotations

import logging

import cv2
import numpy as np

from edn.data.ingest import video_record
from edn.data.reader import video_floor_stats, video_frames, video_poses
from edn.pose.normalize import normalize_poses
from edn.registry import TargetModel
from edn.video import VideoWriter

log = logging.getLogger(__name__)


def side_by_side(source: np.ndarray, figure: np.ndarray, output: np.ndarray) -> np.ndarray:
    """source | normalized pose | output, the source scaled to the output's height."""
    h = output.shape[0]
    if source.shape[0] != h:
        source = cv2.resize(source, (round(source.shape[1] * h / source.shape[0]), h), interpolation=cv2.INTER_AREA)
    return np.concatenate([source, figure, output], axis=1)


def transfer(dataset_url: str, source: str, model: TargetModel, out_url: str,
             layout: str = "side_by_side", batch_size: int = 16, use_face: bool = True) -> dict:
    """Render source video `source` (ingested in `dataset_url`) onto `model`'s target."""
    record = video_record(dataset_url, source)
    _, poses = video_poses(dataset_url, source)
    normalized = normalize_poses(poses, video_floor_stats(dataset_url, source), model.floor)
    frames = 0
    render = model.renderer(use_face)
    with VideoWriter(out_url, record["fps"] or 30.0) as writer:
        for index, images, _ in video_frames(dataset_url, source, batch_size=batch_size):
            figures, outputs = render(normalized[index])
            for image, figure, output in zip(images, figures, outputs):
                writer.write(side_by_side(image, figure, output) if layout == "side_by_side" else output)
            frames += len(index)
            log.info("transfer %s -> %s: %d/%d frames", source, model.meta["target"], frames, record["frames"])
    return {"source": source, "target": model.meta["target"], "model_version": model.version,
            "frames": frames, "face_gan": render.use_face, "output": out_url}
