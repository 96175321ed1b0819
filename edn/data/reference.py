"""A video's appearance reference: what a base model (edn.models.body, reference channels) is
shown of a person and their room, so that one network can render any of them.

The reference is three pictures at the model's frame size, stacked as 9 channels:
    plate   the video's empty scene (edn.data.plate): the room, given, not guessed
    frame   one frame of the person, chosen deterministically from the frames before the held-out
            tail: the one where the most keypoints are seen (the whole body, face and hands in
            view, so every part of the clothes and skin is shown), the earliest on a tie
    figure  that frame's pose figure, which tells the network where each part is in `frame`
Why these: a fixed camera's background is most of a frame, and a plate hands it over whole; one
frame in a known pose carries the clothes and skin. (A few reference frames would show more of a
turning dancer: not done, one keeps the input small.)
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edn.data.plate import background_plate
from edn.data.reader import video_frames, video_poses
from edn.errors import DataError
from edn.pose.draw import draw_pose
from edn.pose.layout import has_pose


def reference_frame(index: np.ndarray, poses: np.ndarray, stop: int) -> int:
    """The frame index of the reference among frames before `stop` with the dancer's pose."""
    usable = (index < stop) & has_pose(poses)
    if not usable.any():
        raise DataError(f"no frame before {stop} shows the dancer's pose: no appearance reference")
    seen = (poses[:, :, 2] > 0).sum(1)
    return int(index[usable][np.argmax(seen[usable])])  # argmax: the first of the best


@dataclass
class Reference:
    video: str
    frame_index: int
    plate: np.ndarray   # (H, W, 3) uint8 each
    frame: np.ndarray
    figure: np.ndarray

    def stacked(self) -> np.ndarray:
        """(H, W, 9) uint8, the generator's reference channels in order."""
        return np.concatenate([self.plate, self.frame, self.figure], axis=2)


def video_reference(dataset_url: str, video: str, stop: int, size: tuple[int, int],
                    poses: tuple[np.ndarray, np.ndarray] | None = None) -> Reference:
    """The reference of `video` from its frames [0, stop), at `size` (W, H); `poses`: the video's
    (index, poses) where the caller has read them already."""
    index, poses = poses if poses is not None else video_poses(dataset_url, video)
    try:
        chosen = reference_frame(index, poses, stop)
    except DataError as e:
        raise DataError(f"{dataset_url}: video {video!r}: {e}") from None
    w, h = size
    for _, images, frame_poses in video_frames(dataset_url, video, start=chosen, stop=chosen + 1):
        image, pose = images[0], frame_poses[0].copy()
        pose[:, :2] *= (w / image.shape[1], h / image.shape[0])
        frame = image if image.shape[:2] == (h, w) else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
        return Reference(video, chosen, background_plate(dataset_url, video, stop, size), frame,
                         draw_pose(pose, w, h))
    raise DataError(f"{dataset_url}: video {video!r}: frame {chosen} could not be read")
