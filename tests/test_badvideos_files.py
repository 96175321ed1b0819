"""The files of tests/badvideos.py are what they claim, checked with PyAV directly (not through edn)."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

import badvideos as bv
from edn.synth import synthesize

SOURCE_FRAMES = 30


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A real dancer mp4 (edn's writer: H.264 with B-frames, moov at the end)."""
    out = tmp_path_factory.mktemp("badvideo-source")
    synthesize(str(out), dancers=1, frames=SOURCE_FRAMES, size=(128, 96), seed=5)
    return str(out / "dancer_00.mp4")


def _decode(path, thread_type="SLICE", thread_count=0):
    """(stream facts, frames decoded before the end or the error, the error or None)."""
    frames = []
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type, s.codec_context.thread_count = thread_type, thread_count
        facts = {"frames": s.frames, "width": s.codec_context.width, "height": s.codec_context.height,
                 "average_rate": s.average_rate, "base_rate": s.base_rate, "time_base": s.time_base,
                 "codec": s.codec_context.name, "pix_fmt": s.codec_context.pix_fmt}
        try:
            frames.extend(c.decode(s))
        except av.error.FFmpegError as e:
            return facts, frames, e
    return facts, frames, None


def _boxes(data, start=0, end=None):
    end = len(data) if end is None else end
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start:start + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[start + 8:start + 16])[0], 16
        size = size or end - start
        yield kind.decode("latin-1"), start + header, start + size
        start += size


def _tkhd_matrices(path):
    """The 3x3 matrix of every track header box, as floats (16.16 fixed, last column 2.30)."""
    data = Path(path).read_bytes()
    found = []

    def walk(start, end):
        for kind, body, stop in _boxes(data, start, end):
            if kind in ("moov", "trak"):
                walk(body, stop)
            elif kind == "tkhd":
                version = data[body]
                at = body + 4 + (32 if version == 1 else 20) + 8 + 8
                m = struct.unpack(">9i", data[at:at + 36])
                found.append([m[0] / 65536, m[1] / 65536, m[2] / 2**30, m[3] / 65536, m[4] / 65536,
                              m[5] / 2**30, m[6] / 65536, m[7] / 65536, m[8] / 2**30])
    walk(0, len(data))
    return found


def test_zero_byte_missing_and_text(tmp_path):
    assert os.path.getsize(bv.zero_byte(str(tmp_path))) == 0
    missing = bv.missing(str(tmp_path))
    assert not os.path.exists(missing) and missing.endswith(".mp4")
    text = bv.not_a_video(str(tmp_path))
    assert text.endswith(".mp4") and os.path.getsize(text) > 1000
    for path in (bv.zero_byte(str(tmp_path)), text):
        with pytest.raises(av.error.InvalidDataError):
            av.open(path)


def test_truncated_at_packet_boundary_stops_silently(tmp_path, source):
    path = bv.truncated(str(tmp_path), source)
    for thread_type in ("SLICE", "AUTO"):
        facts, frames, error = _decode(path, thread_type)
        assert error is None
        assert facts["frames"] == SOURCE_FRAMES  # the header still declares them all
        assert len(frames) == SOURCE_FRAMES // 2


def test_truncated_mid_packet_raises_or_stops_early(tmp_path, source):
    path = bv.truncated_mid_packet(str(tmp_path), source)
    facts, frames, error = _decode(path, "SLICE")
    assert facts["frames"] == SOURCE_FRAMES
    assert isinstance(error, av.error.InvalidDataError)
    assert 0 < len(frames) == SOURCE_FRAMES // 2 - 2
    # frame threading with 3+ threads swallows the same error: the decode just ends
    _, frames, error = _decode(path, "FRAME", thread_count=4)
    assert error is None and len(frames) == SOURCE_FRAMES // 2 - 2


def test_truncated_without_moov_does_not_open(tmp_path, source):
    path = bv.truncated_no_moov(str(tmp_path), source)
    assert 0 < os.path.getsize(path) < os.path.getsize(source)
    with pytest.raises(av.error.InvalidDataError):
        av.open(path)


def test_corrupt_middle_raises_after_some_frames(tmp_path, source):
    path = bv.corrupt_middle(str(tmp_path), source)
    assert os.path.getsize(path) == os.path.getsize(source)
    facts, frames, error = _decode(path)
    assert isinstance(error, av.error.InvalidDataError) and facts["frames"] == SOURCE_FRAMES
    assert 0 < len(frames) < SOURCE_FRAMES


def test_no_person(tmp_path):
    facts, frames, error = _decode(bv.no_person(str(tmp_path)))
    assert error is None and len(frames) == facts["frames"] == 30
    assert (facts["width"], facts["height"], facts["average_rate"]) == (128, 128, 30)
    images = np.stack([f.to_ndarray(format="rgb24").astype(int) for f in frames])
    assert images.std() > 5  # a real room, not a blank frame
    assert np.abs(images - images[0]).max() < 16  # and nothing moves in it


def test_single_frame(tmp_path):
    path = bv.single_frame(str(tmp_path))
    facts, frames, error = _decode(path)
    assert error is None and len(frames) == facts["frames"] == 1
    assert frames[0].time == 0.0 and (frames[0].width, frames[0].height) == (128, 128)
    assert pq.read_table(path.replace(".mp4", ".keypoints.parquet")).num_rows == 1


@pytest.mark.parametrize("codec,decoder,pix_fmt", [("libx264", "h264", "yuv444p"), ("mpeg4", "mpeg4", "yuv420p")])
def test_odd_size(tmp_path, codec, decoder, pix_fmt):
    facts, frames, error = _decode(bv.odd_size(str(tmp_path), codec=codec))
    assert error is None and len(frames) == facts["frames"] == 8
    assert (facts["width"], facts["height"], facts["codec"], facts["pix_fmt"]) == (641, 479, decoder, pix_fmt)
    assert frames[0].to_ndarray(format="rgb24").shape == (479, 641, 3)


def test_variable_frame_rate(tmp_path):
    facts, frames, error = _decode(bv.variable_frame_rate(str(tmp_path)))
    expected = bv.variable_frame_rate_times()
    assert error is None and len(frames) == facts["frames"] == len(expected) == 20
    assert facts["time_base"] == Fraction(1, 90000)
    assert [f.pts * f.time_base for f in frames] == expected
    steps = np.diff([f.time for f in frames])
    assert steps.min() == pytest.approx(1 / 30) and steps.max() == pytest.approx(1 / 15)
    assert facts["average_rate"] == Fraction(600, 29)  # frames / duration: matches no real step
    assert facts["base_rate"] == 30


@pytest.mark.parametrize("degrees,ccw", [(90, -90), (270, 90), (180, 180)])
def test_rotated(tmp_path, degrees, ccw):
    path = bv.rotated(str(tmp_path), degrees)
    # in the file: the track header matrix, e.g. (0, 1, -1, 0) for a phone held upright
    [matrix] = _tkhd_matrices(path)
    angle = np.degrees(np.arctan2(matrix[1], matrix[0]))  # clockwise display rotation
    assert round(angle) % 360 == degrees % 360
    # read back by PyAV in a fresh process: counter-clockwise degrees on every decoded frame
    code = ("import av, sys; c = av.open(sys.argv[1]); f = next(c.decode(video=0));"
            "print(f.rotation, f.width, f.height, dict(c.streams.video[0].metadata).get('rotate'))")
    out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) % 360 == ccw % 360 and out[3] == "None"  # no legacy "rotate" tag exported
    if degrees == 90:
        assert int(out[0]) == -90  # exactly what a phone held upright reads as
    assert (int(out[1]), int(out[2])) == ((160, 96) if degrees % 180 else (96, 160))  # stored size
    # rotating by frame.rotation gives the upright portrait dancer that was rendered
    _, frames, error = _decode(path)
    assert error is None and len(frames) == 12
    upright = np.rot90(frames[5].to_ndarray(format="rgb24"), k=frames[5].rotation // 90)
    truth, _ = bv._dancer_frames((96, 160), 6)
    assert upright.shape == (160, 96, 3)
    assert np.abs(upright.astype(int) - truth[5]).mean() < 4
