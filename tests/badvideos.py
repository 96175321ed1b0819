"""Generators of bad-input video files for tests: each writes one real file into a
directory and returns its path (plain functions, no pytest fixtures).

Facts about how PyAV 18.1 (bundled FFmpeg 8.1) reads these files, checked in
tests/test_badvideos_files.py:

* Rotation: the display matrix is written with `VideoStream.set_display_rotation(ccw_degrees)`
  (before the first frame is encoded) and read back per decoded frame as `VideoFrame.rotation`,
  an int in [-180, 180], COUNTER-clockwise degrees (FFmpeg's av_display_rotation_get). There is
  no `stream.side_data`, and `stream.metadata` has no 'rotate' key (setting metadata['rotate'] on
  write is ignored by FFmpeg 8). A phone held upright writes the tkhd matrix (0, 1, -1, 0), the
  legacy "rotate=90" tag, meaning "turn 90 degrees clockwise to display": PyAV reports
  `frame.rotation == -90` and cv2 reports CAP_PROP_ORIENTATION_META == 90. The upright image is
  `np.rot90(frame.to_ndarray(format="rgb24"), k=frame.rotation // 90)` (same pixels as OpenCV's
  auto-rotation). Frame width/height stay the stored (landscape) ones.
* Variable frame rate: `stream.average_rate` is frames / duration (600/29 for 20 frames with
  alternating 1/30 s and 1/15 s steps), `stream.base_rate`/`guessed_rate` are 30, `stream.frames`
  is exact, and `frame.pts`/`frame.time` carry the irregular timestamps (0, 1/30, 1/10, 2/15, ...).
* Truncation: a file whose moov box is cut off does not open (av.error.InvalidDataError from
  av.open). With the moov box first, a cut at a packet boundary decodes the complete packets and
  then stops SILENTLY, `stream.frames` still declaring the full count. A cut inside a packet
  raises av.error.InvalidDataError ('avcodec_send_packet()') after k-2 frames (k complete packets;
  B-frame reordering loses the buffered ones) with slice threading (PyAV's default), but with
  frame threading and 3+ threads (thread_type "AUTO"/"FRAME" with thread_count 0 on a 2-core
  machine) the same file stops silently after the same k-2 frames. So a reader must compare the
  frames it decoded with `stream.frames`, not rely on an exception.
* Odd sizes: libx264 refuses yuv420p at 641x479; libx264 with yuv444p (High 4:4:4 Predictive)
  in .mp4 yields a true 641x479 stream, as does mpeg4 (Part 2) in yuv420p.
"""
from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq

from edn.synth import keypoints_table, make_dancer

FPS = 30
SEED = 11


def _encode(path: str, frames: Iterable[np.ndarray], *, fps: int = FPS, codec: str = "libx264",
            pix_fmt: str = "yuv420p", pts: Sequence[int] | None = None, codec_time_base: Fraction | None = None,
            stream_time_base: Fraction | None = None, ccw_rotation: float | None = None,
            container_options: dict | None = None) -> str:
    """Encode RGB frames into `path` for real; `pts` (in `codec_time_base` units) gives the timestamps."""
    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(path, "w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        if codec.startswith("libx264"):
            stream.options = {"crf": "18"}
        if codec_time_base is not None:
            stream.codec_context.time_base = codec_time_base
        if stream_time_base is not None:
            stream.time_base = stream_time_base
        if ccw_rotation is not None:
            stream.set_display_rotation(ccw_rotation)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = int(pts[i]), codec_time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def _dancer_frames(size: tuple[int, int], frames: int, seed: int = SEED) -> tuple[list[np.ndarray], np.ndarray]:
    """`frames` rendered frames of one synthetic dancer at size (W, H), and their (N, 137, 3) keypoints."""
    rendered = list(make_dancer(seed, 0, 1, size, float(FPS)).frames(frames))
    return [rgb for rgb, _ in rendered], np.stack([kp for _, kp in rendered])


def _write_keypoints(video_path: str, poses: np.ndarray, size: tuple[int, int]) -> None:
    buf = io.BytesIO()
    pq.write_table(keypoints_table(poses, size[0], size[1]), buf)
    Path(os.path.splitext(video_path)[0] + ".keypoints.parquet").write_bytes(buf.getvalue())


def _packets(path: str) -> list[tuple[int, int]]:
    """(byte offset, size) of every video packet in file order (= decode order for mp4)."""
    with av.open(path) as c:
        return [(p.pos, p.size) for p in c.demux(video=0) if p.size]


def _faststart_copy(source: str, path: str) -> str:
    """Remux `source` (no re-encoding) into `path` with the moov box before the mdat."""
    with av.open(source) as src, av.open(path, "w", options={"movflags": "faststart"}) as out:
        ist = src.streams.video[0]
        ost = out.add_stream_from_template(ist)
        for packet in src.demux(ist):
            if packet.dts is None:
                continue
            packet.stream = ost
            out.mux(packet)
    return path


def zero_byte(dir: str) -> str:
    """An empty (0-byte) .mp4: a reader should refuse it as an empty file, naming it."""
    path = os.path.join(dir, "zero_byte.mp4")
    open(path, "wb").close()
    return path


def not_a_video(dir: str) -> str:
    """A text file named .mp4 (av.open raises InvalidDataError): a reader should refuse it as not a video."""
    path = os.path.join(dir, "not_a_video.mp4")
    with open(path, "w") as f:
        f.write("this is not a video, just text that someone named .mp4\n" * 40)
    return path


def truncated(dir: str, source: str, keep: float = 0.5) -> str:
    """Moov-first copy of `source` cut at a packet boundary after `keep` of its packets: decoding stops
    silently after those frames while stream.frames declares them all; a reader should notice the shortfall."""
    full = _faststart_copy(source, os.path.join(dir, "truncated.full.mp4"))
    packets = _packets(full)
    k = max(1, min(len(packets) - 1, round(keep * len(packets))))
    path = os.path.join(dir, "truncated.mp4")
    Path(path).write_bytes(Path(full).read_bytes()[:packets[k][0]])
    os.remove(full)
    return path


def truncated_mid_packet(dir: str, source: str, keep: float = 0.5) -> str:
    """Moov-first copy of `source` cut in the middle of a packet of the mdat: k-2 frames decode, then
    InvalidDataError (slice threading) or a silent stop (frame threading); a reader should report it truncated."""
    full = _faststart_copy(source, os.path.join(dir, "truncated_mid_packet.full.mp4"))
    packets = _packets(full)
    k = max(1, min(len(packets) - 1, round(keep * len(packets))))
    pos, size = packets[k]
    path = os.path.join(dir, "truncated_mid_packet.mp4")
    Path(path).write_bytes(Path(full).read_bytes()[:pos + max(8, size // 2)])
    os.remove(full)
    return path


def truncated_no_moov(dir: str, source: str, keep: float = 0.5) -> str:
    """A moov-at-end mp4 (as edn's VideoWriter writes) cut before its moov box, like an interrupted
    recording: av.open raises InvalidDataError; a reader should refuse it as unreadable."""
    data = Path(source).read_bytes()
    if data.find(b"moov") < data.find(b"mdat"):  # moov first: move it last by a plain remux
        tmp = os.path.join(dir, "truncated_no_moov.full.mp4")
        with av.open(source) as src, av.open(tmp, "w") as out:
            ost = out.add_stream_from_template(src.streams.video[0])
            for packet in src.demux(video=0):
                if packet.dts is not None:
                    packet.stream = ost
                    out.mux(packet)
        data = Path(tmp).read_bytes()
        os.remove(tmp)
    moov = data.find(b"moov") - 4
    path = os.path.join(dir, "truncated_no_moov.mp4")
    Path(path).write_bytes(data[:max(64, min(moov, int(keep * len(data))))])
    return path


def corrupt_middle(dir: str, source: str, at: float = 0.5) -> str:
    """`source` with one packet's payload in the middle overwritten by random bytes (size intact): decoding
    raises InvalidDataError after the frames before it; a reader should report it corrupt."""
    packets = _packets(source)
    pos, size = packets[max(1, min(len(packets) - 2, round(at * len(packets))))]
    data = bytearray(Path(source).read_bytes())
    data[pos + 4:pos + size] = np.random.default_rng(0).integers(0, 256, size - 4, dtype=np.uint8).tobytes()
    path = os.path.join(dir, "corrupt_middle.mp4")
    Path(path).write_bytes(bytes(data))
    return path


def no_person(dir: str, frames: int = 30, size: tuple[int, int] = (128, 128)) -> str:
    """A valid H.264 video of a synthetic dancer's room with nobody in it: a reader should find no person."""
    background = make_dancer(SEED, 0, 1, size, float(FPS)).background
    return _encode(os.path.join(dir, "no_person.mp4"), [background] * frames)


def single_frame(dir: str, size: tuple[int, int] = (128, 128)) -> str:
    """A valid H.264 video of exactly one frame with a dancer (keypoints alongside): a reader should
    handle a 1-frame clip (no motion, no second frame to diff or interpolate)."""
    rgb, poses = _dancer_frames(size, 1)
    path = _encode(os.path.join(dir, "single_frame.mp4"), rgb)
    _write_keypoints(path, poses, size)
    return path


def odd_size(dir: str, frames: int = 8, codec: str = "libx264") -> str:
    """A dancer video stored at a true 641x479 (libx264 yuv444p, or mpeg4 yuv420p): a reader should keep
    the odd size, not assume even dimensions or 4:2:0 chroma."""
    size = (641, 479)
    rgb, poses = _dancer_frames(size, frames)
    pix_fmt = {"libx264": "yuv444p", "mpeg4": "yuv420p"}[codec]
    path = _encode(os.path.join(dir, f"odd_size_{codec}.mp4"), rgb, codec=codec, pix_fmt=pix_fmt)
    _write_keypoints(path, poses, size)
    return path


def variable_frame_rate(dir: str, frames: int = 20, steps: Sequence[Fraction] = (Fraction(1, 30), Fraction(1, 15)),
                        size: tuple[int, int] = (128, 96)) -> str:
    """A dancer mp4 whose frame times step by `steps` in turn (1/30 s then 1/15 s), stream time base 1/90000:
    a reader should use each frame's own timestamp (frame.time), never index / fps."""
    tick = Fraction(1, 600)
    assert all((s / tick).denominator == 1 for s in steps), "steps must be multiples of 1/600 s"
    pts = np.concatenate([[0], np.cumsum([int(steps[i % len(steps)] / tick) for i in range(frames - 1)])])
    rgb, poses = _dancer_frames(size, frames)
    path = _encode(os.path.join(dir, "variable_frame_rate.mp4"), rgb, pts=pts.tolist(),
                   codec_time_base=tick, stream_time_base=Fraction(1, 90000))
    _write_keypoints(path, poses, size)
    return path


def variable_frame_rate_times(frames: int = 20, steps: Sequence[Fraction] = (Fraction(1, 30), Fraction(1, 15))
                              ) -> list[Fraction]:
    """The presentation times, in seconds, that variable_frame_rate(frames=, steps=) writes."""
    times = [Fraction(0)]
    for i in range(frames - 1):
        times.append(times[-1] + steps[i % len(steps)])
    return times


def rotated(dir: str, degrees: int = 90, frames: int = 12, display_size: tuple[int, int] = (96, 160)) -> str:
    """Phone-style: pixels stored turned, with a display matrix saying "rotate `degrees` clockwise to
    display" (degrees=90 is a phone held upright: tkhd matrix (0, 1, -1, 0), PyAV frame.rotation == -90);
    a correct reader rotates every frame by np.rot90(img, k=frame.rotation // 90) to get the upright
    dancer of `display_size` (W, H), whose keypoints are written alongside in display coordinates."""
    if degrees % 90:
        raise ValueError(f"degrees must be a multiple of 90, got {degrees}")
    upright, poses = _dancer_frames(display_size, frames)
    stored = [np.rot90(img, k=degrees // 90) for img in upright]  # undo of the clockwise display turn
    path = _encode(os.path.join(dir, f"rotated_{degrees % 360}.mp4"), stored, ccw_rotation=-degrees)
    _write_keypoints(path, poses, display_size)
    return path


def missing(dir: str) -> str:
    """A path to an .mp4 that does not exist: a reader should say so, naming the path."""
    path = os.path.join(dir, "missing.mp4")
    if os.path.exists(path):
        os.remove(path)
    return path
