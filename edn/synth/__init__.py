"""Procedurally rendered synthetic dancers with exact ground-truth OpenPose keypoints.

`synthesize` writes, for each dancer i, `dancer_{i:02d}.mp4` (H.264), the keypoints the
drawing was made from in `dancer_{i:02d}.keypoints.parquet` (frame_index int32, keypoints
list<float32> of 137*3 values, the flattened (137, 3) pose in the video's pixels), and one
`dancers.json` describing every dancer. Everything is deterministic for a seed.
"""
from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from edn.audio import SampledAudio, click_track
from edn.pose.layout import N_KEYPOINTS
from edn.storage import join, write_bytes_atomic
from edn.synth.body import Appearance, random_appearance
from edn.synth.draw import render_background, render_dancer
from edn.synth.motion import Choreography, pose_geometry
from edn.video import VideoWriter

__all__ = ["synthesize", "make_dancer", "Dancer", "keypoints_table"]


class Dancer:
    """One synthetic dancer in their room: `frame(i)` renders frame i and its keypoints."""

    def __init__(self, seed: int, index: int, width: int, height: int, size: float, fps: float = 30.0):
        rng = np.random.default_rng([seed, index])
        self.width, self.height, self.fps = width, height, fps
        self.appearance: Appearance = random_appearance(rng, width, height, size, seed)
        self.choreography = Choreography(rng, self.appearance, width)
        self.background = render_background(rng, width, height, self.appearance)

    def poses(self, frames: int) -> list[dict]:
        """The motion channels of frames 0..frames-1, one dict of scalars per frame."""
        angles = self.choreography.angles(np.arange(frames) / self.fps)
        return [{k: float(v[i]) for k, v in angles.items()} for i in range(frames)]

    def render(self, angles: dict) -> tuple[np.ndarray, np.ndarray]:
        geo = pose_geometry(self.appearance, angles)
        img = self.background.copy()
        return img, render_dancer(img, self.appearance, geo)

    def frames(self, count: int):
        """Yield (rgb uint8 (H, W, 3), keypoints float32 (137, 3)) for frames 0..count-1."""
        for angles in self.poses(count):
            yield self.render(angles)


def _sizes(rng: np.random.Generator, dancers: int) -> np.ndarray:
    # Stratified on-screen sizes, shuffled: dancers of one call always differ in size.
    return rng.permutation((np.arange(dancers) + rng.uniform(0.25, 0.75, dancers)) / dancers)


def make_dancer(seed: int, index: int, dancers: int, size: tuple[int, int], fps: float = 30.0) -> Dancer:
    """Dancer `index` of the `dancers` that synthesize(..., seed) renders at size (W, H)."""
    on_screen = _sizes(np.random.default_rng(seed), dancers)[index]
    return Dancer(seed, index, size[0], size[1], float(on_screen), fps)


def keypoints_table(poses: np.ndarray, width: int, height: int) -> pa.Table:
    """(N, 137, 3) poses -> the keypoints Parquet table (frame size kept in the metadata)."""
    flat = np.asarray(poses, np.float32).reshape(len(poses), N_KEYPOINTS * 3)
    table = pa.table({
        "frame_index": pa.array(np.arange(len(poses), dtype=np.int32)),
        "keypoints": pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), N_KEYPOINTS * 3)
        .cast(pa.list_(pa.float32())),
    })
    return table.replace_schema_metadata({"width": str(width), "height": str(height)})


def synthesize(out_url: str, dancers: int, frames: int, size: tuple[int, int], seed: int,
               fps: float = 30.0, audio: bool = False) -> list[str]:
    """Render `dancers` videos of `frames` frames at size (W, H); return the URLs written
    (per dancer the mp4 then its keypoints, and dancers.json last). With `audio`, each video
    has music: a click on every beat of the dancer's choreography, from t=0."""
    if dancers < 1 or frames < 1:
        raise ValueError(f"need at least one dancer and one frame, got dancers={dancers} frames={frames}")
    width, height = int(size[0]), int(size[1])
    written, described = [], []
    for i in range(dancers):
        dancer = make_dancer(seed, i, dancers, (width, height), fps)
        video_url = join(out_url, f"dancer_{i:02d}.mp4")
        poses = []
        music = SampledAudio(click_track(dancer.choreography.beat, frames / fps), 44100) if audio else None
        with VideoWriter(video_url, fps, audio=music) as writer:
            for rgb, pose in dancer.frames(frames):
                writer.write(rgb)
                poses.append(pose)
        kp_url = join(out_url, f"dancer_{i:02d}.keypoints.parquet")
        buf = io.BytesIO()
        pq.write_table(keypoints_table(np.stack(poses), width, height), buf)
        write_bytes_atomic(kp_url, buf.getvalue())
        written += [video_url, kp_url]
        described.append({"id": f"dancer_{i:02d}", "video": f"dancer_{i:02d}.mp4",
                          "keypoints": f"dancer_{i:02d}.keypoints.parquet", "index": i,
                          "width": width, "height": height, "frames": frames, "fps": fps,
                          "beat_hz": dancer.choreography.beat, "audio": audio, **dancer.appearance.to_dict()})
    meta_url = join(out_url, "dancers.json")
    write_bytes_atomic(meta_url, json.dumps({"seed": seed, "dancers": described}, indent=1).encode())
    return written + [meta_url]
