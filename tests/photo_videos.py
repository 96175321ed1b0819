"""Short test videos of a real person, made from the photograph scikit-image ships
(`skimage.data.astronaut()`: Eileen Collins, upper body): no real dance video can be shipped,
but a real photograph behaves before a detector as a camera's frames do, unlike the synthetic
dancers. A virtual camera moves over the photograph:

    photo_pan      pans and zooms with the person always in view (the target of the tests)
    photo_leaves   the person slides out of the frame, stays out, and comes back
    photo_facecut  the camera closes in on the torso so the face leaves the frame, then pulls back
"""
from __future__ import annotations

import cv2
import numpy as np
from skimage import data

from edn.video import VideoWriter

FPS = 30.0


def _room(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A plain wall for the photograph to leave: what the camera sees once the person is gone."""
    wall = np.full((h, w, 3), (96, 110, 124), np.float32)
    wall += cv2.resize(rng.normal(0, 8, (h // 8 + 1, w // 8 + 1)).astype(np.float32), (w, h))[:, :, None]
    return np.clip(wall, 0, 255).astype(np.uint8)


def _view(photo: np.ndarray, cx: float, cy: float, span: float, size: int) -> np.ndarray:
    """The square of side `span` (photo pixels) around (cx, cy), at size x size."""
    s = size / span
    m = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], np.float32)
    return cv2.warpAffine(photo, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)


def photo_frames(kind: str, frames: int, size: int, seed: int = 0) -> list[np.ndarray]:
    photo = data.astronaut()  # 512 x 512 RGB
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, frames)
    out = []
    if kind == "photo_pan":
        for u in t:
            out.append(_view(photo, 256 + 60 * np.sin(2 * np.pi * u), 256 + 30 * np.sin(4 * np.pi * u),
                             512 - 120 * np.sin(np.pi * u), size))
    elif kind == "photo_leaves":
        room = _room(size, size, rng)
        base = _view(photo, 256, 256, 512, size)
        # out to the left over the first 40%, away for the middle 30%, back over the last 30%
        shift = np.interp(t, [0, 0.1, 0.4, 0.7, 1.0], [0, 0, -1.15, -1.15, 0]) * size
        for dx in shift:
            frame = room.copy()
            m = np.array([[1, 0, dx], [0, 1, 0]], np.float32)
            moved = cv2.warpAffine(base, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
            inside = cv2.warpAffine(np.ones((size, size), np.uint8), m, (size, size)) > 0
            frame[inside] = moved[inside]
            out.append(frame)
    elif kind == "photo_facecut":
        # the face leaves through the top while the camera closes in on the torso
        close = np.interp(t, [0, 0.2, 0.45, 0.75, 1.0], [0, 0, 1, 1, 0])
        for c in close:
            out.append(_view(photo, 256, 256 + 150 * c, 512 - 250 * c, size))
    else:
        raise ValueError(f"unknown photo video {kind!r}")
    # a camera's sensor noise: no two frames identical even where nothing moves
    return [np.clip(f.astype(np.int16) + rng.integers(-3, 4, f.shape), 0, 255).astype(np.uint8) for f in out]


def write_photo_videos(out_dir: str, frames: int = 60, size: int = 128) -> list[str]:
    urls = []
    for kind in ("photo_pan", "photo_leaves", "photo_facecut"):
        url = f"{out_dir}/{kind}.mp4"
        with VideoWriter(url, FPS) as writer:
            for frame in photo_frames(kind, frames, size):
                writer.write(frame)
        urls.append(url)
    return urls
