"""Video decoding and encoding with PyAV, from and to any fsspec URL.

Every failure is raised as VideoError naming the file and what is wrong with it.
"""
from __future__ import annotations

import contextlib
import fractions
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import av
import numpy as np

from edn.storage import filesystem, put_file_atomic


class VideoError(Exception):
    def __init__(self, url: str, reason: str):
        super().__init__(f"{url}: {reason}")
        self.url, self.reason = url, reason


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frames: int  # as declared by the container; 0 when it does not say


@contextlib.contextmanager
def _open(url: str):
    try:
        fs, path = filesystem(url)
        if not fs.exists(path):
            raise VideoError(url, "no such file")
        if fs.size(path) == 0:
            raise VideoError(url, "empty file (0 bytes)")
    except VideoError:
        raise
    except Exception as e:  # e.g. a bucket that does not exist, no credentials
        raise VideoError(url, f"cannot access: {e}") from e
    with contextlib.ExitStack() as stack:
        source = path if "file" in fs.protocol else stack.enter_context(fs.open(path, "rb"))
        try:
            container = stack.enter_context(av.open(source, "r"))
        except (av.error.FFmpegError, ValueError) as e:
            raise VideoError(url, f"not a readable video ({e})") from e
        if not container.streams.video:
            raise VideoError(url, "has no video stream")
        yield container


def probe(url: str) -> VideoInfo:
    with _open(url) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or 0
        return VideoInfo(stream.codec_context.width, stream.codec_context.height, float(rate), stream.frames)


def read_frames(url: str, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (frame index, timestamp in seconds, RGB uint8 frame) for frames [start, stop)."""
    with _open(url) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = -1
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index < start:
                    continue
                if stop is not None and index >= stop:
                    return
                yield index, float(frame.time or 0.0), frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as e:
            raise VideoError(url, f"corrupt or truncated after frame {index} ({e})") from e
        if index < 0:
            raise VideoError(url, "contains no decodable frames")


class VideoWriter:
    """H.264 mp4 writer; the file appears at `url` only when closed without error."""

    def __init__(self, url: str, fps: float, crf: int = 18):
        self.url, self.fps, self.crf = url, fps, crf
        self._dir = tempfile.TemporaryDirectory(prefix="edn-video-")
        self._path = os.path.join(self._dir.name, "video.mp4")
        self._container = av.open(self._path, "w")
        self._stream = None
        self.frames = 0

    def write(self, frame_rgb: np.ndarray) -> None:
        h, w = frame_rgb.shape[:2]
        if self._stream is None:
            self._stream = self._container.add_stream(
                "libx264", rate=fractions.Fraction(self.fps).limit_denominator(1001))
            # yuv420p needs even sizes; pad by one pixel rather than resample
            self._stream.width, self._stream.height = w + w % 2, h + h % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self.crf)}
        if w % 2 or h % 2:
            frame_rgb = np.pad(frame_rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_rgb), format="rgb24")
        self._container.mux(self._stream.encode(frame))
        self.frames += 1

    def close(self) -> None:
        try:
            if self._stream is None:
                raise VideoError(self.url, "no frames were written")
            self._container.mux(self._stream.encode(None))
            self._container.close()
            put_file_atomic(self._path, self.url)
        finally:
            self._dir.cleanup()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._container.close()
        self._dir.cleanup()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort() if exc_type else self.close()


def write_video(url: str, frames: Iterable[np.ndarray], fps: float) -> int:
    with VideoWriter(url, fps) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.frames
