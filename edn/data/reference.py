"""A video's appearance reference: what a base model (edn.models.body, reference channels) is
shown of a person and their room, so that one network can render any of them.

The reference is three pictures at the model's frame size, stacked as 9 channels:
    plate   the video's empty scene (edn.data.plate): the room, given, not guessed
    frame   one frame of the person, chosen deterministically from the frames before the held-out
            tail: the one where the most keypoints are seen (the whole body, face and hands in
            view, so every part of the clothes and skin is shown), the earliest on a tie
    figure  that frame's pose figure, which tells the network where each part is in `frame`
and, for a face generator with a reference (`FaceGeneratorConfig.reference`), `face`: the face box
(edn.pose.face) of `frame`, which the face GAN sees beside each frame's face box, both centred on the
nose, so that the face and hair it draws can be copied from where they stand in it.
Why these: a fixed camera's background is most of a frame, and a plate hands it over whole; one
frame in a known pose carries the clothes and skin. (A few reference frames would show more of a
turning dancer: not done, one keeps the input small.)

Appearance figures (a generator with `appearance` on): each frame's pose drawn a second time with
every body part in the colour that part has in the reference frame (`appearance_colours`), so the
colours of the clothes and skin arrive where the part is drawn, not only where it stood in the
reference frame: a base trained without them painted a new dancer's clothes in colours of no one
(docs/base-model.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edn.data.plate import background_plate
from edn.data.reader import video_frames, video_poses
from edn.errors import DataError
from edn.pose.draw import draw_pose
from edn.pose.face import face_box, face_box_side
from edn.pose.layout import BODY_COLORS, has_pose

_SAME_HUE = 0.99  # cosine: OpenPose's closest body colours, (255, 0, 0) and (255, 0, 85), are at 0.95


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
    face: np.ndarray    # (S, S, 3) uint8, the frame's face box; zeros where its nose is not seen

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
                         draw_pose(pose, w, h), reference_face(frame, pose))
    raise DataError(f"{dataset_url}: video {video!r}: frame {chosen} could not be read")


def reference_face(frame: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """(S, S, 3) uint8: the face box of `frame` (H, W, 3) at `pose`, as the face GAN crops every
    frame; zeros where the nose is not seen (the face GAN's input for a frame without a face)."""
    h, w = frame.shape[:2]
    box = face_box(pose, w, h)
    if box is None:
        size = face_box_side(w, h)
        return np.zeros((size, size, 3), np.uint8)
    x0, y0, x1, y1 = box
    return np.ascontiguousarray(frame[y0:y1, x0:x1])


def appearance_colours(reference: np.ndarray) -> np.ndarray:
    """(25, 3) uint8: per body keypoint, the median colour of the reference frame under the pixels
    its reference pose figure draws in that keypoint's colour (keypoints that share OpenPose's
    colour, neighbours such as an ankle and its foot, share theirs); black for a part not drawn.
    A pixel is a part's where its colour points the part colour's way (anti-aliasing darkens a
    limb's rim, and all of a limb thinner than a pixel, toward black) and is at least half as
    bright. From the stacked reference alone (H, W, 9), so that a registered model recomputes it
    as training did."""
    frame, figure = reference[..., 3:6].reshape(-1, 3), reference[..., 6:9].reshape(-1, 3).astype(np.float32)
    palette = np.asarray(BODY_COLORS, np.float32)
    brightness = np.linalg.norm(figure, axis=1)
    cosine = figure @ (palette / np.linalg.norm(palette, axis=1, keepdims=True)).T / np.maximum(brightness, 1)[:, None]
    colours = np.zeros((len(BODY_COLORS), 3), np.uint8)
    for k, norm in enumerate(np.linalg.norm(palette, axis=1)):
        part = (cosine[:, k] >= _SAME_HUE) & (brightness >= norm / 2)
        if part.any():
            colours[k] = np.median(frame[part], 0).round().astype(np.uint8)
    return colours


def appearance_figures(poses: np.ndarray, colours: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 137, 3) poses -> (N, H, W, 3) uint8: each pose's figure in the reference's colours."""
    return np.stack([draw_pose(p, width, height, body_colors=colours) for p in poses])
