"""Video decoding and encoding with PyAV, from and to any fsspec URL.

Every failure is raised as VideoError naming the file and what is wrong with it.
"""
from __future__ import annotations

import contextlib
import fractions
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import av
import numpy as np

from edn.errors import EdnError
from edn.storage import filesystem, put_file_atomic


class VideoError(EdnError):
    def __init__(self, url: str, reason: str):
        super().__init__(f"{url}: {reason}")
        self.url, self.reason = url, reason

    def __reduce__(self):  # rebuilt from both arguments when it crosses from a Ray worker
        return type(self), (self.url, self.reason)


@dataclass(frozen=True)
class VideoInfo:
    width: int      # as displayed: after the container's rotation
    height: int
    fps: float      # average rate; frames may be spaced irregularly (timestamps are exact)
    frames: int     # as declared by the container; 0 when it does not say
    rotation: int = 0  # degrees counter-clockwise the stored pixels are turned for display


@dataclass(frozen=True)
class Segment:
    """Frames [start, stop) of a video in presentation order, and where to seek for them:
    the presentation timestamps (stream time base) of frame `start` and of frame `stop`
    (None: to the end). start_pts None means: decode from the beginning."""
    start: int
    stop: int
    start_pts: int | None = None
    stop_pts: int | None = None


@contextlib.contextmanager
def open_container(url: str):
    """The video at `url` opened for reading, or VideoError naming it and what is wrong."""
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


def _upright(frame: av.VideoFrame) -> np.ndarray:
    """The frame's pixels as displayed: phones store portrait video landscape plus a rotation."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = round((frame.rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def probe(url: str) -> VideoInfo:
    with open_container(url) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or 0
        w, h = stream.codec_context.width, stream.codec_context.height
        try:  # the rotation travels on the decoded frames
            rotation = int(round(next(container.decode(stream)).rotation or 0)) % 360
        except (StopIteration, av.error.FFmpegError):
            rotation = 0
        if rotation in (90, 270):
            w, h = h, w
        return VideoInfo(w, h, float(rate), stream.frames, rotation)


def plan_segments(url: str, segment_frames: int) -> list[Segment]:
    """Cut a video into segments of about `segment_frames` frames that start on keyframes, from
    its packets alone (no decoding), so that segments can be decoded independently."""
    with open_container(url) as container:
        stream = container.streams.video[0]
        declared = stream.frames
        try:
            packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]
        except av.error.FFmpegError as e:
            raise VideoError(url, f"corrupt container ({e})") from e
    if not packets:
        raise VideoError(url, "contains no video packets")
    if declared > len(packets):  # the index promises frames whose data is not in the file
        raise VideoError(url, f"truncated: the container declares {declared} frames, "
                              f"only {len(packets)} are in the file")
    if any(pts is None for pts, _ in packets):  # cannot seek by timestamp: one segment
        return [Segment(0, len(packets))]
    packets.sort()
    pts = [p for p, _ in packets]
    starts = [0]
    for i, (_, key) in enumerate(packets):
        if key and i - starts[-1] >= segment_frames:
            starts.append(i)
    bounds = starts + [len(pts)]
    return [Segment(a, b, pts[a], pts[b] if b < len(pts) else None) for a, b in zip(bounds, bounds[1:])]


def read_frames(url: str, segment: Segment | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (frame index, timestamp in seconds, RGB uint8 frame as displayed) for the whole
    video, or for one segment of it (plan_segments)."""
    with open_container(url) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = start = segment.start if segment else 0
        first, last = (segment.start_pts, segment.stop_pts) if segment else (None, None)
        try:
            if first is not None and start > 0:
                container.seek(first, stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if first is not None and frame.pts is not None and frame.pts < first:
                    continue
                if (last is not None and frame.pts is not None and frame.pts >= last) or \
                        (segment is not None and index >= segment.stop):
                    break
                yield index, float(frame.time or 0.0), _upright(frame)
                index += 1
        except av.error.FFmpegError as e:
            raise VideoError(url, f"corrupt or truncated after frame {index - 1} ({e})") from e
        if index == start:
            raise VideoError(url, "contains no decodable frames" if start == 0 else
                             f"no decodable frames from frame {start}")


class VideoWriter:
    """H.264 mp4 writer; the file appears at `url` only when closed without error.

    `audio` (edn.audio.SourceAudio or SampledAudio) is muxed along with the frames. Frames are
    spaced 1/fps apart unless `write` is given their times (a variable-frame-rate source's
    timestamps, kept so that its audio stays in sync)."""

    TIME_BASE = fractions.Fraction(1, 90000)  # MPEG's clock: exact for every common frame rate

    def __init__(self, url: str, fps: float, crf: int = 18, keyframe_every: int | None = None, audio=None):
        # a keyframe a second by default: readers can cut the video into segments there
        self.url, self.fps, self.crf, self.audio = url, fps, crf, audio
        self.keyframe_every = keyframe_every or max(1, round(fps))
        self._dir = tempfile.TemporaryDirectory(prefix="edn-video-")
        self._path = os.path.join(self._dir.name, "video.mp4")
        self._container = av.open(self._path, "w")
        self._stream = None
        self._copied = False  # whether the frames are packets copied from other videos (copy)
        self._last_dts = None
        self.frames, self.seconds = 0, 0.0

    @classmethod
    def ticks(cls, seconds: float) -> int:
        """`seconds` on the writer's clock: where a frame written at that time is shown."""
        return round(seconds / cls.TIME_BASE)

    def _open_stream(self, w: int, h: int) -> None:
        self._stream = self._container.add_stream("libx264", rate=fractions.Fraction(self.fps).limit_denominator(1001))
        self._stream.codec_context.time_base = self.TIME_BASE
        self._stream.width, self._stream.height = self._size(w, h)
        self._stream.pix_fmt = "yuv420p"  # what every player reads
        self._stream.options = {"crf": str(self.crf), "g": str(self.keyframe_every),
                                "keyint_min": str(self.keyframe_every)}
        if self.audio is not None:
            self.audio.add_to(self._container)

    def _size(self, w: int, h: int) -> tuple[int, int]:
        # yuv420p needs even sizes; pad by one pixel rather than resample
        return w + w % 2, h + h % 2

    def write(self, frame_rgb: np.ndarray, seconds: float | None = None) -> None:
        """Append a frame, shown at `seconds` from the start (default: the next 1/fps step)."""
        if self._copied:
            raise ValueError(f"{self.url}: frames are either encoded here or copied, not both")
        h, w = frame_rgb.shape[:2]
        if self._stream is None:
            self._open_stream(w, h)
        pw, ph = self._size(w, h)
        if (pw, ph) != (w, h):
            frame_rgb = np.pad(frame_rgb, ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_rgb), format="rgb24")
        self.seconds = self.frames / self.fps if seconds is None else seconds
        frame.pts, frame.time_base = self.ticks(self.seconds), self.TIME_BASE
        self._container.mux(self._stream.encode(frame))
        if self.audio is not None:
            self.audio.mux_until(self._container, self.seconds)
        self.frames += 1

    def copy(self, url: str, offset_s: float = 0.0) -> int:
        """Append the frames of `url`, a video written by a VideoWriter (H.264, the same size and
        settings), as they are: not decoded, not encoded again; shown `offset_s` later than in
        `url`. -> the frames copied. How a catalog row's chunks, each encoded by the actor that
        rendered it, become one video (edn.render.output.join_chunks)."""
        offset = self.ticks(offset_s)
        with open_container(url) as source:
            stream = source.streams.video[0]
            if self._stream is None:
                self._stream, self._copied = self._container.add_stream_from_template(stream), True
                self._stream.time_base = self.TIME_BASE
                if self.audio is not None:
                    self.audio.add_to(self._container)
            elif not self._copied:
                raise ValueError(f"{self.url}: frames are either encoded here or copied, not both")
            copied, shown = 0, self.seconds
            for packet in source.demux(stream):
                if packet.dts is None:  # the demuxer's flush packet
                    continue
                pts, dts = (round(t * stream.time_base / self.TIME_BASE) + offset for t in (packet.pts, packet.dts))
                if self._last_dts is not None and dts <= self._last_dts:
                    raise VideoError(url, f"its frames cannot follow the previous video's at {offset_s:.3f} s "
                                          "(decoding times overlap)")
                packet.pts, packet.dts, packet.time_base, packet.stream = pts, dts, self.TIME_BASE, self._stream
                self._last_dts = dts
                self._container.mux(packet)
                shown = max(shown, float(pts * self.TIME_BASE))
                if self.audio is not None:
                    self.audio.mux_until(self._container, shown)
                copied += 1
        self.seconds, self.frames = shown, self.frames + copied
        return copied

    def close(self) -> None:
        try:
            if self._stream is None:
                raise VideoError(self.url, "no frames were written")
            if not self._copied:
                self._container.mux(self._stream.encode(None))
            if self.audio is not None:  # the sound of the last frame, then no more
                self.audio.finish(self._container, self.seconds + 1 / self.fps)
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
