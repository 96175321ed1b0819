"""Procedurally rendered synthetic dancers with exact ground-truth OpenPose keypoints.

`synthesize` writes, for each dancer i, `dancer_{i:02d}.mp4` (H.264), the keypoints the
drawing was made from in `dancer_{i:02d}.keypoints.parquet` (frame_index int32, keypoints
list<float32> of 137*3 values, the flattened (137, 3) pose in the video's pixels), and one
`dancers.json` describing every dancer. Everything is deterministic for a seed.

With `hard` options (edn.synth.hard.HardOptions) the footage gets harder (turns, exits,
occluders, a passer-by, shake, light drift, blur, compression) and the keypoints table gains
per-frame ground truth: others (list<list<float32>>, every other person's flattened pose),
back_view, in_frame and passerby (bool); dancers.json records the options.

`palette` ("any", "base" or "heldout", edn.synth.body) picks the dancers' clothes and rooms
from disjoint colour sets, so that a base model trained on many dancers can be judged on
dancers unlike any it saw: e.g. a base of 12 or more dancers with palette="base", seed=1 and
held-out dancers with palette="heldout", seed=2. dancers.json records a palette other than
"any"; "any", the default, gives the same dancers and files as before palettes existed.
"""
from __future__ import annotations

import io
import json
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from edn.audio import SampledAudio, click_track
from edn.errors import ConfigError
from edn.pose.layout import N_KEYPOINTS
from edn.storage import join, write_bytes_atomic
from edn.synth.body import Appearance, random_appearance
from edn.synth.draw import render_background, render_dancer
from edn.synth.hard import HardOptions, HardScene, Shot
from edn.synth.motion import Choreography, pose_geometry
from edn.video import VideoWriter

__all__ = ["synthesize", "make_dancer", "Dancer", "keypoints_table", "HardOptions", "Shot"]


class Dancer:
    """One synthetic dancer in their room: `frame(i)` renders frame i and its keypoints."""

    def __init__(self, seed: int, index: int, width: int, height: int, size: float, fps: float = 30.0,
                 hard: HardOptions = HardOptions(), palette: str = "any"):
        rng = np.random.default_rng([seed, index])
        self.seed, self.index, self.hard, self.palette = seed, index, hard, palette
        self.width, self.height, self.fps = width, height, fps
        self.appearance: Appearance = random_appearance(rng, width, height, size, seed, palette)
        self.choreography = Choreography(rng, self.appearance, width)
        self.background = render_background(rng, width, height, self.appearance, palette)

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
        if self.hard.changes_pictures():
            for shot in self.shots(count):
                yield shot.rgb, shot.keypoints
            return
        for angles in self.poses(count):
            yield self.render(angles)

    def shots(self, count: int):
        """Yield frames 0..count-1 with their ground truth (edn.synth.hard.Shot). The hard
        options' events are spread over the `count` frames, so they depend on it."""
        if self.hard.changes_pictures():
            yield from HardScene(self, self.hard, count).shots()
            return
        for rgb, pose in self.frames(count):
            yield Shot(rgb, pose, in_frame=bool(pose[:, 2].any()))


def _sizes(rng: np.random.Generator, dancers: int) -> np.ndarray:
    # Stratified on-screen sizes, shuffled: dancers of one call always differ in size.
    return rng.permutation((np.arange(dancers) + rng.uniform(0.25, 0.75, dancers)) / dancers)


def make_dancer(seed: int, index: int, dancers: int, size: tuple[int, int], fps: float = 30.0,
                hard: HardOptions = HardOptions(), palette: str = "any") -> Dancer:
    """Dancer `index` of the `dancers` that synthesize(..., seed, hard=hard, palette=palette)
    renders at size (W, H)."""
    on_screen = _sizes(np.random.default_rng(seed), dancers)[index]
    return Dancer(seed, index, size[0], size[1], float(on_screen), fps, hard, palette)


def _pose_lists(poses: np.ndarray) -> pa.Array:
    flat = np.asarray(poses, np.float32).reshape(len(poses), N_KEYPOINTS * 3)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), N_KEYPOINTS * 3).cast(pa.list_(pa.float32()))


def keypoints_table(poses: np.ndarray, width: int, height: int, shots: list[Shot] | None = None) -> pa.Table:
    """(N, 137, 3) poses -> the keypoints Parquet table (frame size kept in the metadata). With
    `shots` (their rgb not needed), the hard footage's ground-truth columns too."""
    columns = {"frame_index": pa.array(np.arange(len(poses), dtype=np.int32)), "keypoints": _pose_lists(poses)}
    if shots is not None:
        counts = np.array([len(s.others) for s in shots], np.int32)
        others = [p for s in shots for p in s.others]
        inner = _pose_lists(np.stack(others) if others else np.zeros((0, N_KEYPOINTS, 3)))
        columns["others"] = pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(counts)].astype(np.int32)), inner)
        for name in ("back_view", "in_frame", "passerby"):
            columns[name] = pa.array([getattr(s, name) for s in shots], pa.bool_())
    return pa.table(columns).replace_schema_metadata({"width": str(width), "height": str(height)})


def synthesize(out_url: str, dancers: int, frames: int, size: tuple[int, int], seed: int,
               fps: float = 30.0, audio: bool = False, hard: HardOptions = HardOptions(),
               palette: str = "any", first: int = 0) -> list[str]:
    """Render `dancers` videos of `frames` frames at size (W, H); return the URLs written
    (per dancer the mp4 then its keypoints, and dancers.json last). With `audio`, each video
    has music: a click on every beat of the dancer's choreography, from t=0. `hard` makes the
    footage harder (see edn.synth.hard); `palette` picks their clothes and rooms (edn.synth.body).
    `first` numbers the files from there (dancer_100, ...; the dancers are the same), so that sets
    of other seeds can be ingested into one dataset beside them."""
    if dancers < 1 or frames < 1 or first < 0:
        raise ConfigError(f"need at least one dancer and one frame, numbered from 0 or more, got dancers={dancers} "
                          f"frames={frames} first={first}")
    width, height = int(size[0]), int(size[1])
    written, described = [], []
    for i in range(dancers):
        dancer = make_dancer(seed, i, dancers, (width, height), fps, hard, palette)
        name = f"dancer_{first + i:02d}"
        video_url = join(out_url, f"{name}.mp4")
        truth = []
        music = SampledAudio(click_track(dancer.choreography.beat, frames / fps), 44100) if audio else None
        with VideoWriter(video_url, fps, audio=music, **hard.writer_options()) as writer:
            for shot in dancer.shots(frames):
                writer.write(shot.rgb)
                truth.append(replace(shot, rgb=None))  # the frames are in the video, not kept in memory
        kp_url = join(out_url, f"{name}.keypoints.parquet")
        buf = io.BytesIO()
        poses = np.stack([s.keypoints for s in truth])
        pq.write_table(keypoints_table(poses, width, height, truth if hard else None), buf)
        write_bytes_atomic(kp_url, buf.getvalue())
        written += [video_url, kp_url]
        described.append({"id": name, "video": f"{name}.mp4", "keypoints": f"{name}.keypoints.parquet", "index": i,
                          "width": width, "height": height, "frames": frames, "fps": fps,
                          "beat_hz": dancer.choreography.beat, "audio": audio, **dancer.appearance.to_dict()})
        if hard:
            described[-1]["hard"] = hard.enabled()
    meta_url = join(out_url, "dancers.json")
    top = {"seed": seed, **({"palette": palette} if palette != "any" else {}), "dancers": described}
    write_bytes_atomic(meta_url, json.dumps(top, indent=1).encode())
    return written + [meta_url]
