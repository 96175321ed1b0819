"""Writing a transfer video: frames at the source's own timestamps, with the source's sound; and
joining a catalog row's staged chunks into one (a Ray task). Nothing here imports torch: a join
task's worker process starts in half a second instead of three."""
from __future__ import annotations

import logging
import time

from edn.audio import SourceAudio
from edn.data.reader import video_record, video_timestamps
from edn.render.gallery import poster_jpeg
from edn.storage import filesystem, write_bytes_atomic
from edn.video import VideoError, VideoWriter, read_frames

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


def join_chunks(staged_urls: list[str], dataset_url: str, video_id: str, out_url: str, crf: int,
                staging_dir: str, poster_url: str) -> dict:
    """The row's video from its staged chunks, in order, with the source's timing and sound, and
    its middle frame as the gallery's poster (edn.render.gallery); then the chunks are removed.
    Safe to run again: the output and the poster are published atomically."""
    started = time.perf_counter()
    poster = None
    with TransferWriter(dataset_url, video_id, out_url, crf) as writer:
        for url in staged_urls:
            for _, _, frame in read_frames(url):
                if writer.written == writer.frames // 2:
                    poster = poster_jpeg(frame)
                writer.write(frame)
    if poster is not None:
        write_bytes_atomic(poster_url, poster)
    fs, path = filesystem(staging_dir)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    return {"frames": writer.written, "seconds": time.perf_counter() - started, "audio": writer.audio}
