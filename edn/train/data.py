"""Training data on Ray Data: the target's frames as rows of consecutive pairs (t-1, t).

Pairs are formed right after the read, while each block still holds its file's frames in order,
so that later sharding and shuffling move whole pairs and can never separate a frame from its
predecessor. (A pair that straddles two read blocks is dropped: one per block boundary.)
"""
from __future__ import annotations

import contextlib

import cv2
import numpy as np

from edn.data.reader import part_urls, split_point
from edn.data.reference import appearance_figures
from edn.data.schema import decode_image, keypoints_array
from edn.pose.draw import draw_pose
from edn.pose.face import boxes_array
from edn.pose.layout import N_KEYPOINTS, has_pose
from edn.storage import for_arrow


def pair_mask(index: np.ndarray, poses: np.ndarray, boxes: np.ndarray, max_index: int,
              need_face: bool = False) -> dict[str, np.ndarray]:
    """For frames in file order, which frames t (1..N-1) start a training pair (t-1, t), and why
    the others do not: {"pair": t and t-1 are consecutive and before max_index, "pose": both have
    the dancer's pose (a figure without a dancer would teach the generator to paint one from
    nothing), "face": t has a face box}. `keep` is what training uses."""
    pose = has_pose(poses)
    masks = {"pair": (index[1:] == index[:-1] + 1) & (index[1:] < max_index), "pose": pose[1:] & pose[:-1],
             "face": boxes[1:, 0] >= 0}
    masks["keep"] = masks["pair"] & masks["pose"] & (masks["face"] if need_face else True)
    return masks


def pair_counts(index: np.ndarray, poses: np.ndarray, boxes: np.ndarray, max_index: int,
                need_face: bool = False) -> dict[str, int]:
    """What training pairs a video gives (reported by the training run and in the model)."""
    m = pair_mask(index, poses, boxes, max_index, need_face)
    return {"frames": int((index < max_index).sum()),
            "frames_without_pose": int(((index < max_index) & ~has_pose(poses)).sum()),
            "pairs": int(m["keep"].sum()),
            "pairs_without_pose": int((m["pair"] & ~m["pose"]).sum()),
            "pairs_without_face_box": int((m["pair"] & m["pose"] & ~m["face"]).sum()) if need_face else 0}


def make_pairs(batch: dict[str, np.ndarray], max_index: int, need_face: bool = False,
               video: int = 0) -> dict[str, np.ndarray]:
    """Frame rows in file order -> compact pair rows (JPEG bytes, keypoints of t-1 and t, and
    t's face box), for the pairs pair_mask keeps; `video`: the video's place in the run's list."""
    index = np.asarray(batch["frame_index"])
    boxes = boxes_array(batch["face_box"])
    poses = keypoints_array(batch["keypoints"])
    t = np.flatnonzero(pair_mask(index, poses, boxes, max_index, need_face)["keep"]) + 1
    return {"frame_index": index[t].astype(np.int32), "video": np.full(len(t), video, np.int32),
            "image_prev": batch["image"][t - 1], "image": batch["image"][t],
            "keypoints_prev": poses[t - 1].reshape(len(t), N_KEYPOINTS * 3),
            "keypoints": poses[t].reshape(len(t), N_KEYPOINTS * 3), "face_box": boxes[t]}


def render_pairs(batch: dict[str, np.ndarray], downscale: int = 1, colours: np.ndarray | None = None
                 ) -> dict[str, np.ndarray]:
    """Compact pair rows -> decoded frames and drawn pose figures, each (N, 2, H, W, 3) uint8
    ordered [t-1, t]; with `downscale` d, at 1/d of the stored size (coarse-to-fine training);
    with `colours` ((videos, 25, 3), edn.data.reference.appearance_colours), the pairs' appearance
    figures too, each in its video's colours."""
    if not len(batch["frame_index"]):  # a block whose frames formed no pair
        empty = np.zeros((0, 2, 1, 1, 3), np.uint8)
        return {"frame_index": np.zeros(0, np.int32), "video": np.zeros(0, np.int32), "image": empty,
                "pose": empty, "face_box": np.zeros((0, 4), np.int32),
                **({"appearance": empty} if colours is not None else {})}
    images, figures, appearances = [], [], []
    for prev, cur, kp_prev, kp, video in zip(batch["image_prev"], batch["image"], batch["keypoints_prev"],
                                             batch["keypoints"], batch["video"]):
        pair = [decode_image(prev), decode_image(cur)]
        h, w = pair[0].shape[0] // downscale, pair[0].shape[1] // downscale
        if downscale > 1:
            pair = [cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in pair]
        poses = keypoints_array([kp_prev, kp])
        poses[:, :, :2] /= downscale
        images.append(np.stack(pair))
        figures.append(np.stack([draw_pose(p, w, h) for p in poses]))
        if colours is not None:
            appearances.append(appearance_figures(poses, colours[video], w, h))
    boxes = np.asarray(batch["face_box"], np.int32)
    return {"frame_index": np.asarray(batch["frame_index"], np.int32), "video": np.asarray(batch["video"], np.int32),
            "image": np.stack(images), "pose": np.stack(figures),
            "face_box": np.where(boxes >= 0, boxes // downscale, -1),
            **({"appearance": np.stack(appearances)} if colours is not None else {})}


def training_pairs(dataset_url: str, videos: list[tuple[str, dict]], holdout_fraction: float,
                   need_face: bool = False):
    """The Ray Dataset of compact training pairs of the run's videos (`videos`: (id, its record
    from video_record)), one target's or a base model's many, each row with its video's place in
    the list; each epoch's iteration reshuffles them, and the trainer decodes and draws each batch
    (`PairCollate`).

    The Parquet parts are read and paired once, here: reading them again every epoch cost ~6 s of
    an epoch's 7.5 (a 240-frame 32x32 video on 2 cores). The compact pairs (JPEG bytes, each frame
    in two pairs) stay in the object store, spilled to disk if large. Every epoch shuffles them
    afresh across all videos: batches of neighbouring frames alone train poorly. Decoded pairs
    never enter the object store: a base's epoch of 5172 pairs decoded ahead filled 1.4 GiB of it,
    and Ray Data's backpressured executor then spun on a core the trainer needed (0.38 steps/s
    against 1.3 on 2 cores)."""
    import ray

    parts = []
    for i, (video, record) in enumerate(videos):
        fs, paths = for_arrow(part_urls(dataset_url, video))
        # Ray Data's first Parquet reader: its default since 2.60 (DataSourceV2) starts 32
        # FooterReader actors to list the files of every read, 5 s for one video's 48-row part on 2
        # cores against 0.1-0.5 s (docs/performance.md); chosen when the read is planned
        with data_context(use_datasource_v2=False):
            frames = ray.data.read_parquet(paths, filesystem=fs).select_columns(
                ["frame_index", "image", "keypoints", "face_box"])
        parts.append(frames.map_batches(make_pairs, batch_size=None, batch_format="numpy", fn_kwargs={
            "max_index": split_point(record["frames"], holdout_fraction), "need_face": need_face, "video": i}))
    pairs = (parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]).materialize()
    return pairs.random_shuffle()


@contextlib.contextmanager
def data_context(**settings):
    """Ray Data's DataContext (the driver's: Ray Data hands it to its tasks) with these settings
    for what runs inside, restored after."""
    import ray.data

    context = ray.data.DataContext.get_current()
    saved = {name: getattr(context, name) for name in settings}
    for name, value in settings.items():
        setattr(context, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(context, name, value)
