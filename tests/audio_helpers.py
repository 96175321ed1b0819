"""What the tests hear of a video's sound: its track decoded, and whether it plays in sync with
another to the sample."""
from __future__ import annotations

import av
import numpy as np

from edn.audio import NoAudioError
from edn.video import open_container

# AAC's first frames (FFmpeg's encoder) distort a sound that starts in its first samples: the
# click at t=0 of a synthetic dancer's music comes back off by up to 0.59 even from the source
# itself, from one encoding. A matter of quality, not of timing: compared from here on.
FIRST_SAMPLE_COMPARED = 2048
# Twice-encoded AAC against the once-encoded source, in sync: at most 0.006 apart (measured);
# one sample early or late, the 880 Hz clicks differ by 0.075. So this tolerance tells them apart.
IN_SYNC = 0.02


def read_audio(url: str) -> tuple[np.ndarray, int]:
    """The first audio track decoded to mono float32 samples, and its sample rate."""
    with open_container(url) as container:
        if not container.streams.audio:
            raise NoAudioError(f"{url}: has no audio track")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=stream.codec_context.sample_rate)
        chunks = [f.to_ndarray().ravel() for frame in container.decode(stream) for f in resampler.resample(frame)]
        chunks += [f.to_ndarray().ravel() for f in resampler.resample(None)]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32), stream.codec_context.sample_rate


def assert_plays_in_sync(heard_url: str, source_url: str, start_seconds: float, seconds: float) -> None:
    """`heard_url`'s sound is the source's from `start_seconds` on, for `seconds`, to the sample:
    it matches the source's samples where it should, and not one sample earlier or later."""
    heard, rate = read_audio(heard_url)
    source, source_rate = read_audio(source_url)
    assert rate == source_rate
    start, n = int(round(start_seconds * rate)), int(round(seconds * rate))
    assert len(heard) >= n, f"{len(heard)} samples heard, the video lasts {n}"
    expected = source[start + FIRST_SAMPLE_COMPARED:start + n]
    assert np.abs(expected).max() > 0.5, "no sound to compare in this stretch"
    errors = {lag: float(np.abs(heard[FIRST_SAMPLE_COMPARED + lag:n + lag] - expected).max()) for lag in (-1, 0, 1)}
    assert errors[0] < IN_SYNC < min(errors[-1], errors[1]), errors
