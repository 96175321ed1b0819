"""Audio tracks for written videos: a source video's own track carried into a transfer video,
or generated samples (the synthetic dancers' beat).

Audio is decoded and re-encoded to AAC rather than copied packet by packet: a transfer starts
at the source's first video frame, which rarely falls on a packet boundary, and copied AAC
packets keep the source's encoder priming, which would shift the sound by ~23 ms. Decoding
makes the cut sample-exact. A track is muxed while the video is written (`mux_until` the time
of the last frame), so the mp4 stays interleaved and no whole track is held in memory.
"""
from __future__ import annotations

import contextlib
import fractions
import itertools
from collections.abc import Iterator

import av
import numpy as np

from edn.errors import DataError
from edn.video import open_container


class NoAudioError(DataError):
    pass


class AudioTrack:
    """Float samples (channels, n) at `rate`, encoded to AAC in step with the video."""

    def __init__(self, rate: int, channels: int):
        self.rate, self.channels = int(rate), channels
        self._written = 0      # samples handed to the encoder
        self._pending = None   # samples read but not yet due
        self._source = None

    def chunks(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def add_to(self, container: av.container.OutputContainer) -> None:
        self._out = container.add_stream("aac", rate=self.rate, layout="mono" if self.channels == 1 else "stereo")
        self._source = self.chunks()

    def _encode(self, container, samples: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, np.float32), format="fltp",
                                           layout="mono" if self.channels == 1 else "stereo")
        frame.sample_rate, frame.pts, frame.time_base = self.rate, self._written, fractions.Fraction(1, self.rate)
        container.mux(self._out.encode(frame))
        self._written += samples.shape[1]

    def mux_until(self, container: av.container.OutputContainer, seconds: float) -> None:
        due = int(round(seconds * self.rate))
        while self._written < due:
            if self._pending is None:
                self._pending = next(self._source, None)
                if self._pending is None:
                    return
            take = min(self._pending.shape[1], due - self._written)
            self._encode(container, self._pending[:, :take])
            self._pending = self._pending[:, take:] if take < self._pending.shape[1] else None

    def finish(self, container: av.container.OutputContainer, seconds: float) -> None:
        """The sound up to the video's end (`seconds`), then the encoder flushed."""
        self.mux_until(container, seconds)
        container.mux(self._out.encode(None))
        self.close()

    def close(self) -> None:
        pass


class SampledAudio(AudioTrack):
    """Mono float samples in [-1, 1] at `rate`."""

    def __init__(self, samples: np.ndarray, rate: int):
        super().__init__(rate, 1)
        self.samples = np.asarray(samples, np.float32)[None]

    def chunks(self) -> Iterator[np.ndarray]:
        yield self.samples


class SourceAudio(AudioTrack):
    """The first audio track of the video at `url`, from `start_seconds` on (the source's first
    video frame's timestamp), so that it lands at time 0 of the new video, as the frames do."""

    def __init__(self, url: str, start_seconds: float = 0.0):
        self.url, self.start = url, start_seconds
        self._stack = contextlib.ExitStack()
        self._input = self._stack.enter_context(open_container(url))
        if not self._input.streams.audio:
            self._stack.close()
            raise NoAudioError(f"{url}: has no audio track")
        self._in = self._input.streams.audio[0]
        ctx = self._in.codec_context
        super().__init__(ctx.sample_rate, 1 if ctx.channels == 1 else 2)

    @staticmethod
    def of(url: str, start_seconds: float = 0.0) -> "SourceAudio | None":
        """The track, or None when the video has none."""
        try:
            return SourceAudio(url, start_seconds)
        except NoAudioError:
            return None

    def chunks(self) -> Iterator[np.ndarray]:
        resampler = av.AudioResampler(format="fltp", layout="mono" if self.channels == 1 else "stereo",
                                      rate=self.rate)
        position = None  # seconds of the next sample
        # then None: the resampler's flush, so no sample it still holds is lost
        for frame in itertools.chain(self._input.decode(self._in), [None]):
            if position is None and frame is not None:
                position = float(frame.time or 0.0)
            for out in resampler.resample(frame):
                samples = out.to_ndarray().reshape(self.channels, -1)
                skip = max(0, int(round((self.start - position) * self.rate)))
                position += samples.shape[1] / self.rate
                if skip < samples.shape[1]:
                    yield samples[:, skip:]

    def close(self) -> None:
        self._stack.close()


def click_track(beat_hz: float, seconds: float, rate: int = 44100, click_seconds: float = 0.03,
                pitch_hz: float = 880.0) -> np.ndarray:
    """A tone burst on every beat from t=0: music the synthetic dancer's motion is locked to."""
    samples = np.zeros(int(seconds * rate), np.float32)
    t = np.arange(int(click_seconds * rate)) / rate
    tone = (0.6 * np.sin(2 * np.pi * pitch_hz * t) * np.hanning(len(t))).astype(np.float32)
    for beat in np.arange(0, seconds, 1 / beat_hz):
        i = int(beat * rate)
        samples[i:i + len(tone)] = tone[:len(samples) - i]
    return samples
