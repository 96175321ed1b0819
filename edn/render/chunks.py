"""Rendering a source video's frames onto a target model in chunks, no Ray involved.

The temporal generator is sequential (frame t from its own frame t-1), so a long video is cut
into chunks rendered independently and side by side, one frame of each chunk per batch. A chunk
starts `warmup` frames early, from a blank previous frame like the video's first frame, and its
warm-up outputs are thrown away: by the chunk's first kept frame the generator has forgotten the
blank start, so the seam between chunks does not show (tests/test_render_catalog.py measures it).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from edn.data.reader import video_frames
from edn.inference import Renderer
from edn.pose.normalize import FloorStats, transfer_poses

LAYOUTS = ("side_by_side", "output")


@dataclass(frozen=True)
class Chunk:
    start: int         # first frame kept
    stop: int          # one past the last frame kept
    render_from: int   # first frame rendered: start minus the warm-up, never before 0


def split(frames: int, count: int, warmup: int) -> list[Chunk]:
    """Cut frames [0, frames) into `count` chunks, as even as possible."""
    if frames <= 0:
        return []
    count = max(1, min(count, frames))
    bounds = [round(i * frames / count) for i in range(count + 1)]
    return [Chunk(a, b, max(0, a - warmup)) for a, b in zip(bounds, bounds[1:])]


def chunk_counts(frames: list[int], chunk_frames: int, streams: int, warmup: int) -> list[int]:
    """How many chunks each of these sources is cut into: chunks of at most `chunk_frames`, and
    shorter only as far as it takes to give each of `streams` (the chunks rendered side by side
    by all actors) a chunk of its own. Every chunk but a source's first costs `warmup` extra
    frames, so a chunk is never cut below 4 warm-ups (25% extra work) nor 8 frames: the longest
    chunks are halved, thirded, ... first."""
    counts = [max(1, -(-f // max(1, chunk_frames))) for f in frames]
    shortest = max(8, 4 * warmup)
    while sum(counts) < streams and frames:
        i = max(range(len(frames)), key=lambda i: frames[i] / counts[i])
        if frames[i] / (counts[i] + 1) < shortest:
            break
        counts[i] += 1
    return counts


@dataclass(frozen=True)
class SourceChunk:
    """What a render needs of one chunk of one source video."""
    dataset_url: str
    video_id: str
    floor: dict | None   # the source's floor statistics (FloorStats.to_dict); None: feet never seen
    chunk: Chunk


def compose(layout: str, image: np.ndarray, figure: np.ndarray, output: np.ndarray,
            resolution: tuple[int, int] | None) -> np.ndarray:
    """The frame written for one row: the output, resized to `resolution` (W, H) if given; side
    by side: source | normalized pose | output, all at the output's height."""
    if resolution and (output.shape[1], output.shape[0]) != tuple(resolution):
        output = cv2.resize(output, tuple(resolution), interpolation=cv2.INTER_AREA)
    if layout == "output":
        return output
    h = output.shape[0]

    def fit(img):
        if img.shape[0] == h:
            return img
        return cv2.resize(img, (round(img.shape[1] * h / img.shape[0]), h), interpolation=cv2.INTER_AREA)
    return np.concatenate([fit(image), fit(figure), output], axis=1)


def _frames(source: SourceChunk, target: FloorStats | None, target_size: tuple[int, int],
            batch: int = 32) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(frame index, source image, pose normalized to the target) for the chunk's frames, warm-up included."""
    floor = FloorStats.from_dict(source.floor) if source.floor else None
    for index, images, poses in video_frames(source.dataset_url, source.video_id, batch,
                                             source.chunk.render_from, source.chunk.stop):
        size = (images.shape[2], images.shape[1])
        yield from zip(index.tolist(), images, transfer_poses(poses, floor, target, size, target_size))


def normalization(source_has_floor: bool, target_has_floor: bool) -> str:
    """How the source's poses meet the target (transfer_poses, in _frames), given whether each
    has floor statistics: said in every transfer's result."""
    if source_has_floor and target_has_floor:
        return "global pose normalization"
    whose = "the source's" if not source_has_floor else "the target's"
    return f"none ({whose} feet were never seen): poses carried over in proportion to the frame sizes"


def render_chunks(renderer: Renderer,
                  sources: list[SourceChunk]) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
    """Render chunks side by side, one frame of each per batch; yield (chunk number, frame
    index, source image, pose figure, output) for the frames each chunk keeps, in order."""
    target = renderer.model.floor
    streams = {i: _frames(s, target, renderer.model.size) for i, s in enumerate(sources)}
    try:
        while streams:
            batch = [(i, next(it, None)) for i, it in streams.items()]
            for i, item in batch:
                if item is None:
                    del streams[i]
            batch = [(i, item) for i, item in batch if item is not None]
            if not batch:
                break
            keys = [("chunk", id(sources[i]), i) for i, _ in batch]
            figures, outputs = renderer.step(np.stack([item[2] for _, item in batch]), keys)
            for (i, (index, image, _)), figure, output in zip(batch, figures, outputs):
                if index >= sources[i].chunk.start:
                    yield i, index, image, figure, output
    finally:
        for i, s in enumerate(sources):
            renderer.forget(("chunk", id(s), i))
