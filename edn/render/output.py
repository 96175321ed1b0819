"""Writing a transfer video: frames at the source's own timestamps, with the source's sound."""
from __future__ import annotations

import logging

from edn.audio import SourceAudio
from edn.data.reader import video_record, video_timestamps
from edn.video import VideoError, VideoWriter

log = logging.getLogger(__name__)


class TransferWriter:
    """The output mp4 of one source video: frame i is shown when the source showed it, and the
    source's audio track (when it has one and it can still be read) plays along from its first
    frame. `audio` says what became of the sound, for the manifest."""

    def __init__(self, dataset_url: str, video_id: str, out_url: str, crf: int = 18):
        record = video_record(dataset_url, video_id)
        self.frames = record["frames"]
        stamps = video_timestamps(dataset_url, video_id)
        self.times = stamps - stamps[0]
        track = None
        try:
            track = SourceAudio.of(record["source_url"], float(stamps[0]))
            self.audio = "copied" if track else "none: the source has no audio track"
        except VideoError as e:  # e.g. the original video was moved after ingest
            self.audio = f"unavailable: {e}"
            log.warning("transfer of %s without sound: %s", video_id, e)
        self._writer = VideoWriter(out_url, record["fps"] or 30.0, crf=crf, audio=track)
        self.written = 0

    def write(self, frame) -> None:
        self._writer.write(frame, float(self.times[self.written]))
        self.written += 1

    def __enter__(self) -> "TransferWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self.written != self.frames:
            self._writer.abort()
            raise ValueError(f"{self._writer.url}: {self.written} frames rendered, the source has {self.frames}")
        self._writer.__exit__(exc_type, exc, tb)
