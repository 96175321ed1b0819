import numpy as np
import pytest

from edn.video import VideoError, VideoWriter, plan_segments, probe, read_frames


def write_video(url, frames, fps):
    """Frames to a video file through the product's writer (the renderer streams into one the same way)."""
    with VideoWriter(url, fps) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.frames


def _frames(n, w=81, h=65):
    """Smooth gradients with a moving block: content a video codec is made for."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)], -1).astype(np.uint8)
    frames = []
    for i in range(n):
        f = base.copy()
        f[20:40, 5 + 3 * i:25 + 3 * i] = (250, 40, 40)
        frames.append(f)
    return frames


def test_roundtrip_local_and_memory(tmp_path):
    frames = _frames(12)
    for url in (str(tmp_path / "a.mp4"), "memory://edn-test/video/a.mp4"):
        assert write_video(url, frames, 25.0) == 12
        info = probe(url)
        assert (info.width, info.height, info.fps) == (82, 66, 25.0)  # odd sizes padded to even
        decoded = list(read_frames(url))
        assert [i for i, _, _ in decoded] == list(range(12))
        assert decoded[5][1] == pytest.approx(5 / 25.0)
        # H.264 at crf 18: close to the source, not bit-exact
        err = np.abs(decoded[3][2][:65, :81].astype(int) - frames[3].astype(int)).mean()
        assert err < 4, err


def test_segments_start_on_keyframes_and_decode_like_the_whole(tmp_path):
    url = str(tmp_path / "b.mp4")
    write_video(url, _frames(40), 10.0)  # a keyframe every 10 frames
    segments = plan_segments(url, 15)
    assert [(s.start, s.stop) for s in segments] == [(0, 20), (20, 40)]
    assert segments[1].start_pts is not None and segments[1].stop_pts is None
    whole = list(read_frames(url))
    parts = [f for s in reversed(segments) for f in read_frames(url, s)]  # any order
    parts.sort(key=lambda f: f[0])
    assert [i for i, _, _ in parts] == list(range(40))
    assert [t for _, t, _ in parts] == [t for _, t, _ in whole]
    assert all(np.array_equal(a[2], b[2]) for a, b in zip(parts, whole))
    assert [(s.start, s.stop) for s in plan_segments(url, 1000)] == [(0, 40)]


def test_bad_files_name_the_file_and_the_problem(tmp_path):
    good = str(tmp_path / "good.mp4")
    write_video(good, _frames(30), 30.0)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(open(good, "rb").read()[:2000])
    cases = {str(empty): "empty file", str(text): "not a readable video",
             str(truncated): "not a readable video", str(tmp_path / "missing.mp4"): "no such file"}
    for url, reason in cases.items():
        with pytest.raises(VideoError) as e:
            list(read_frames(url))
        assert url in str(e.value) and reason in str(e.value)


def test_chunks_copied_one_after_another_play_as_one_writer_wrote_them(tmp_path):
    """VideoWriter.copy, how a catalog row's chunks become its video: frames not encoded again,
    each shown when one writer of the whole video would show it (variable frame rate included)."""
    rng = np.random.default_rng(0)
    frames = [np.roll((rng.random((64, 96, 3)) * 60 + 3 * i).astype(np.uint8), i, 1) for i in range(40)]
    times = np.cumsum([0.0] + [1 / 30 + (0.01 if i % 7 == 0 else 0.0) for i in range(39)])
    whole = str(tmp_path / "whole.mp4")
    with VideoWriter(whole, 30.0) as writer:
        for frame, t in zip(frames, times):
            writer.write(frame, float(t))
    starts, chunks = [0, 17, 30], []
    for a, b in zip(starts, starts[1:] + [40]):
        chunks.append(str(tmp_path / f"chunk-{a}.mp4"))
        with VideoWriter(chunks[-1], 30.0) as writer:  # times from the chunk's first frame, in whole ticks
            for i in range(a, b):
                writer.write(frames[i], float((VideoWriter.ticks(times[i]) - VideoWriter.ticks(times[a]))
                                              * VideoWriter.TIME_BASE))
    joined = str(tmp_path / "joined.mp4")
    with VideoWriter(joined, 30.0) as writer:
        assert [writer.copy(url, float(times[a])) for url, a in zip(chunks, starts)] == [17, 13, 10]
        with pytest.raises(ValueError, match="either encoded here or copied"):
            writer.write(frames[0])
    got, expected = list(read_frames(joined)), list(read_frames(whole))
    assert [t for _, t, _ in got] == [t for _, t, _ in expected] and len(got) == 40
    decoded = [f for url in chunks for _, _, f in read_frames(url)]
    assert all(np.array_equal(f, d) for (_, _, f), d in zip(got, decoded))  # copied, not encoded again
