"""Self-transfer on the target's held-out frames (the video's tail, never trained on): each
frame is rendered from its own pose, so the real frame is the ground truth."""
from __future__ import annotations

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from edn.data.reader import video_frames
from edn.registry import TargetModel


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def mean_training_frame(dataset_url: str, target: str, holdout_start: int) -> np.ndarray:
    """The baseline that knows the background and the average appearance but no pose."""
    total, count = None, 0
    for _, images, _ in video_frames(dataset_url, target, stop=holdout_start):
        total = images.sum(0, dtype=np.float64) if total is None else total + images.sum(0, dtype=np.float64)
        count += len(images)
    return (total / count).round().astype(np.uint8)


def evaluate_heldout(dataset_url: str, model: TargetModel, strip_frames: int = 4) -> dict:
    """SSIM of the model and of the mean-training-frame baseline against the held-out frames,
    and a few (pose | output | mean frame | real) strips for the report."""
    target, start = model.meta["target"], model.meta["holdout_start"]
    baseline = mean_training_frame(dataset_url, target, start)
    scores: dict[str, list[float]] = {"model": [], "mean_frame_baseline": []}
    strips, indices = [], []
    render = model.renderer()
    w, h = model.size
    baseline = cv2.resize(baseline, (w, h), interpolation=cv2.INTER_AREA) if baseline.shape[:2] != (h, w) else baseline
    for index, images, poses in video_frames(dataset_url, target, start=start):
        if images.shape[1:3] != (h, w):  # a model trained at a coarser scale (downscale)
            poses = poses * np.array([w / images.shape[2], h / images.shape[1], 1], np.float32)
            images = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in images])
        figures, outputs = render(poses)
        for i, real, figure, output in zip(index, images, figures, outputs):
            scores["model"].append(ssim(output, real))
            scores["mean_frame_baseline"].append(ssim(baseline, real))
            indices.append(int(i))
            strips.append(np.concatenate([figure, output, baseline, real], axis=1))
    if not indices:
        raise ValueError(f"{dataset_url}: target {target!r} has no held-out frames from index {start}")
    chosen = np.linspace(0, len(strips) - 1, min(strip_frames, len(strips))).round().astype(int)
    return {
        "target": target, "model_version": model.version, "heldout_frames": len(indices),
        "heldout_first_frame": indices[0],
        "ssim": {k: float(np.mean(v)) for k, v in scores.items()},
        "ssim_per_frame": {k: [round(x, 4) for x in v] for k, v in scores.items()},
        "strips": [(indices[c], strips[c]) for c in chosen],
    }
