"""Writing a transfer video: frames at the source's own timestamps, with the source's sound; and
joining a catalog row's staged chunks into one (a Ray task). Nothing here imports torch: a join
task's worker process starts in half a second instead of three."""
from __future__ import annotations

import logging
import time

import numpy as np

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
        first, self.times = frame_times(dataset_url, video_id)
        track = None
        try:
            track = SourceAudio.of(record["source_url"], first)
            self.audio = "copied" if track else "none: the source has no audio track"
        except VideoError as e:  # e.g. the original video was moved after ingest
            self.audio = f"unavailable: {e}"
            log.warning("transfer of %s without sound: %s", video_id, e)
        self._writer = VideoWriter(out_url, record["fps"] or 30.0, crf=crf, audio=track)
        self.written = 0

    def write(self, frame) -> None:
        self._writer.write(frame, float(self.times[self.written]))
        self.written += 1

    def copy(self, staged_url: str, start: int) -> None:
        """Append a chunk staged from frame `start` on (StagedChunkWriter), not encoded again."""
        if start != self.written:
            raise ValueError(f"{staged_url}: a chunk from frame {start} after {self.written} frames")
        self.written += self._writer.copy(staged_url, float(self.times[start]))

    def __enter__(self) -> "TransferWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and self.written != self.frames:
            self._writer.abort()
            raise ValueError(f"{self._writer.url}: {self.written} frames rendered, the source has {self.frames}")
        self._writer.__exit__(exc_type, exc, tb)


def frame_times(dataset_url: str, video_id: str) -> tuple[float, np.ndarray]:
    """(the first frame's timestamp in the source, each frame's time in seconds from it: where
    a transfer shows it)."""
    stamps = video_timestamps(dataset_url, video_id)
    return float(stamps[0]), stamps - stamps[0]


class StagedChunkWriter:
    """A chunk of a catalog row as its render actor encodes it: H.264 at the row's crf, each frame
    at its time from the chunk's first frame, in whole ticks of VideoWriter's clock, so that the
    join, shifting the chunk by its first frame's time, shows every frame exactly where one
    writer of the whole row would (TransferWriter.copy)."""

    def __init__(self, url: str, dataset_url: str, video_id: str, start: int, fps: float, crf: int):
        _, self.times = frame_times(dataset_url, video_id)
        self.origin = VideoWriter.ticks(self.times[start])  # the chunk's first frame on the writer's clock
        self._writer = VideoWriter(url, fps, crf=crf)

    def write(self, index: int, frame: np.ndarray) -> None:
        ticks = VideoWriter.ticks(self.times[index]) - self.origin
        self._writer.write(frame, float(ticks * VideoWriter.TIME_BASE))

    @property
    def frames(self) -> int:
        return self._writer.frames

    def close(self) -> None:
        self._writer.close()

    def abort(self) -> None:
        self._writer.abort()


def join_chunks(staged: list[tuple[str, int]], dataset_url: str, video_id: str, out_url: str,
                staging_dir: str, poster_url: str) -> dict:
    """The row's video from its staged chunks ((url, first frame) in order, StagedChunkWriter),
    their frames copied, not encoded again, with the source's timing and sound; its middle frame
    as the gallery's poster (edn.render.gallery); then the chunks are removed. Safe to run again:
    the output and the poster are published atomically."""
    started = time.perf_counter()
    with TransferWriter(dataset_url, video_id, out_url) as writer:
        for url, start in staged:
            writer.copy(url, start)
    middle = writer.frames // 2
    url, start = [(u, s) for u, s in staged if s <= middle][-1]
    poster = next(frame for i, _, frame in read_frames(url) if i == middle - start)
    write_bytes_atomic(poster_url, poster_jpeg(poster))
    fs, path = filesystem(staging_dir)
    if fs.exists(path):
        fs.rm(path, recursive=True)
    return {"frames": writer.written, "seconds": time.perf_counter() - started, "audio": writer.audio}
