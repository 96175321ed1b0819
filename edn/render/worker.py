"""The Ray side of catalog rendering: actors that render chunks, and the task that joins a row's
chunks into its video. Both are thin: the rendering is edn.render.chunks'."""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from edn.inference import TargetModel, zero_shot
from edn.registry import load_registered, parse_model_ref
from edn.render.chunks import SourceChunk, compose, render_chunks
from edn.render.gallery import poster_jpeg
from edn.render.output import TransferWriter
from edn.runtime import Runtime, keep_to_cleared, page_faults, resolve_and_log
from edn.storage import filesystem, write_bytes_atomic
from edn.video import VideoWriter, read_frames

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkTask:
    """One chunk of one catalog row, staged as a lossless video at `staged_url`."""
    row_id: str
    model: str                    # "name@version": the version fixed when the catalog was validated
    use_face: bool
    source: SourceChunk
    layout: str
    resolution: tuple[int, int] | None
    fps: float
    staged_url: str
    zero_shot: tuple[str, str] | None = None  # a base model's performer (dataset, video): edn.inference.zero_shot

    @property
    def frames(self) -> int:
        """Frames kept (the warm-up's are thrown away)."""
        return self.source.chunk.stop - self.source.chunk.start


class RenderWorker:
    """A render actor. It keeps the last `models` target models it loaded, so that the driver,
    sending each target's chunks to the actors that already hold it, loads a model once per
    actor and reuses it across rows. Its device and precision are resolved here, on the actor's
    own hardware (edn.runtime), and recorded with each chunk it renders."""

    def __init__(self, tracking_uri: str, models: int = 2, device: str = "cpu", precision: str = "auto",
                 cleared: dict[str, list[str]] | None = None):
        """`cleared`: per model "name@version", the precisions its evaluation cleared it for
        (edn.eval.precision); with precision auto, a model is rendered in one of them."""
        self.tracking_uri, self.capacity = tracking_uri, models
        self.runtime = resolve_and_log(device, precision, "a render actor")
        self.asked, self.cleared = precision, cleared or {}
        self.models: OrderedDict[str, TargetModel] = OrderedDict()
        self.loads = 0

    def runtime_for(self, ref: str) -> Runtime:
        """The actor's device and precision for model `ref` (edn.runtime.keep_to_cleared)."""
        return keep_to_cleared(self.runtime, self.asked, self.cleared.get(ref, []))

    def _model(self, ref: str, performer: tuple[str, str] | None) -> TargetModel:
        """Model `ref`, or base `ref` shown `performer`'s video (a zero-shot row): one model each."""
        key = f"{ref} zero-shot {performer}" if performer else ref
        if key in self.models:
            self.models.move_to_end(key)
        else:
            name, version = parse_model_ref(ref, "")
            runtime = self.runtime_for(ref)
            model = load_registered(name, version, self.tracking_uri, runtime.device, runtime.precision)
            self.models[key] = zero_shot(model, *performer) if performer else model
            self.loads += 1
            while len(self.models) > self.capacity:
                self.models.popitem(last=False)
        return self.models[key]

    def render(self, tasks: list[ChunkTask]) -> list[dict]:
        """Render chunks of one model side by side; on a failure, each chunk alone, so that one
        bad chunk fails only its own row. -> per task {staged_url, frames, seconds, error}."""
        try:
            return self._render(tasks)
        except Exception as e:
            if len(tasks) == 1:
                return [{"staged_url": tasks[0].staged_url, "frames": 0, "seconds": 0.0,
                         "error": f"{type(e).__name__}: {e}"}]
        return [result for task in tasks for result in self.render([task])]

    def _render(self, tasks: list[ChunkTask]) -> list[dict]:
        started = time.perf_counter()
        model = self._model(tasks[0].model, tasks[0].zero_shot)
        renderer = model.renderer(tasks[0].use_face)
        writers = [VideoWriter(t.staged_url, t.fps, lossless=True) for t in tasks]
        try:
            for i, _, image, figure, output in render_chunks(renderer, [t.source for t in tasks]):
                writers[i].write(compose(tasks[i].layout, image, figure, output, tasks[i].resolution))
            for w in writers:
                w.close()
        except BaseException:
            for w in writers:
                w.abort()
            raise
        per_frame = (time.perf_counter() - started) / max(1, sum(w.frames for w in writers))
        runtime = self.runtime_for(tasks[0].model).record()
        return [{"staged_url": t.staged_url, "frames": w.frames, "seconds": per_frame * w.frames, "error": "",
                 "runtime": runtime} for t, w in zip(tasks, writers)]

    def stats(self) -> dict:
        """Model loads, the models held, and this process's page faults so far (edn.runtime.keep_freed_memory)."""
        return {"loads": self.loads, "models": list(self.models),
                "page_faults": page_faults()}


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
