"""Training data on Ray Data: the target's frames as rows of consecutive pairs (t-1, t).

Pairs are formed right after the read, while each block still holds its file's frames in order,
so that later sharding and shuffling move whole pairs and can never separate a frame from its
predecessor. (A pair that straddles two read blocks is dropped: one per block boundary.)
"""
from __future__ import annotations

import numpy as np

from edn.data.ingest import video_record
from edn.data.schema import decode_image, keypoints_array
from edn.pose.draw import draw_pose
from edn.storage import join


def split_point(frames: int, holdout_fraction: float) -> int:
    """First held-out frame index: the video's tail is kept for evaluation, never trained on."""
    return max(2, int(round(frames * (1.0 - holdout_fraction))))


def make_pairs(batch: dict[str, np.ndarray], max_index: int) -> dict[str, np.ndarray]:
    """Frame rows in file order -> pair rows with the decoded images and drawn pose figures,
    each of shape (N, 2, H, W, 3) uint8, [t-1, t]; plus the frame index of t."""
    index = np.asarray(batch["frame_index"])
    keep = np.flatnonzero((index[1:] == index[:-1] + 1) & (index[1:] < max_index)) + 1
    poses = keypoints_array(batch["keypoints"])
    images, figures = [], []
    for t in keep:
        pair = [decode_image(batch["image"][i]) for i in (t - 1, t)]
        h, w = pair[0].shape[:2]
        images.append(np.stack(pair))
        figures.append(np.stack([draw_pose(poses[i], w, h) for i in (t - 1, t)]))
    if not len(keep):
        return {"frame_index": np.zeros(0, np.int32), "image": np.zeros((0, 2, 1, 1, 3), np.uint8),
                "pose": np.zeros((0, 2, 1, 1, 3), np.uint8)}
    return {"frame_index": index[keep].astype(np.int32), "image": np.stack(images), "pose": np.stack(figures)}


def training_pairs(dataset_url: str, target: str, holdout_fraction: float):
    """The Ray Dataset of training pairs of one target video, and that video's record."""
    import ray

    record = video_record(dataset_url, target)
    ds = ray.data.read_parquet(join(dataset_url, "frames", target)).select_columns(
        ["frame_index", "image", "keypoints"])
    pairs = ds.map_batches(make_pairs, fn_kwargs={"max_index": split_point(record["frames"], holdout_fraction)},
                           batch_size=None, batch_format="numpy")
    return pairs, record


def to_model_range(images: "torch.Tensor") -> "torch.Tensor":  # noqa: F821
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float in [-1, 1]."""
    return images.movedim(-1, -3).float().div_(127.5).sub_(1.0)
