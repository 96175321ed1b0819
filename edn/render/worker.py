"""The Ray side of catalog rendering: actors that render chunks (the task that joins a row's
chunks into its video is edn.render.output.join_chunks). Thin: the rendering is edn.render.chunks'."""
from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from edn.inference import TargetModel, load_model_dir, zero_shot
from edn.render.chunks import SourceChunk, compose, render_chunks
from edn.render.output import StagedChunkWriter
from edn.runtime import Runtime, keep_to_cleared, page_faults, resolve_and_log
from edn.storage import local_folder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedModel:
    """A catalog's model as its validation fixed it: what an actor needs to load and render it."""
    name: str
    version: str
    source: str                # where its model folder is (edn.registry.RegisteredVersion.source)
    cleared: tuple[str, ...]   # the precisions its evaluation cleared (edn.eval.precision)

    @property
    def ref(self) -> str:
        """"name@version": the key of its chunks' queue (ChunkTask.model)."""
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class ChunkTask:
    """One chunk of one catalog row, staged at `staged_url` as the row's video will show it (H.264
    at `crf`: edn.render.output.StagedChunkWriter), so that the row's join copies it as it is."""
    row_id: str
    model: str                    # "name@version": the version fixed when the catalog was validated
    use_face: bool
    source: SourceChunk
    layout: str
    resolution: tuple[int, int] | None
    fps: float
    staged_url: str
    crf: int
    zero_shot: tuple[str, str] | None = None  # a base model's performer (dataset, video): edn.inference.zero_shot

    @property
    def frames(self) -> int:
        """Frames kept (the warm-up's are thrown away)."""
        return self.source.chunk.stop - self.source.chunk.start


class RenderWorker:
    """A render actor. It keeps the last `models` target models it loaded, so that the driver,
    sending each target's chunks to the actors that already hold it, loads a model once per
    actor and reuses it across rows. Its device and precision are resolved here, on the actor's
    own hardware (edn.runtime), and recorded with each chunk it renders. It is started before
    the catalog is validated, so its start-up (importing torch) and a first model's load
    (`load`, sent as soon as the models are resolved) overlap the validation."""

    def __init__(self, tracking_uri: str, models: int = 2, device: str = "cpu", precision: str = "auto"):
        self.tracking_uri, self.capacity, self.asked = tracking_uri, models, precision
        self.runtime = resolve_and_log(device, precision, "a render actor")
        self.models: OrderedDict[str, TargetModel] = OrderedDict()
        self.loads = 0
        # wall-clock times (time.time(): comparable with the driver's) and seconds, for the job's timeline
        self.times = {"ready_at": time.time(), "load_s": 0.0, "render_s": 0.0, "write_s": 0.0,
                      "first_render_at": None, "last_render_end": None}

    def runtime_for(self, cleared: tuple[str, ...]) -> Runtime:
        """The actor's device and precision for a model whose evaluation cleared `cleared`
        (edn.eval.precision; edn.runtime.keep_to_cleared)."""
        return keep_to_cleared(self.runtime, self.asked, cleared)

    def load(self, model: ResolvedModel, performer: tuple[str, str] | None) -> None:
        """Loads a model ahead of its first chunks (the driver's guess). A model that fails to
        load fails its rows when they are rendered, with the same error: nothing is lost here."""
        try:
            self._model(model, performer)
        except Exception as e:
            log.warning("model %s not loaded ahead: %s: %s", model.ref, type(e).__name__, e)

    def _model(self, resolved: ResolvedModel, performer: tuple[str, str] | None) -> TargetModel:
        """The model, or a base model shown `performer`'s video (a zero-shot row): loaded once,
        kept among the last `models`."""
        key = f"{resolved.ref} zero-shot {performer}" if performer else resolved.ref
        if key in self.models:
            self.models.move_to_end(key)
        else:
            started = time.perf_counter()
            model = self._load(resolved, self.runtime_for(resolved.cleared))
            self.models[key] = zero_shot(model, *performer) if performer else model
            model.generators()  # their bf16 copy (edn.runtime.for_autocast) made now, with the load
            self.loads += 1
            self.times["load_s"] += time.perf_counter() - started
            while len(self.models) > self.capacity:
                self.models.popitem(last=False)
        return self.models[key]

    def _load(self, model: ResolvedModel, runtime: Runtime) -> TargetModel:
        folder = local_folder(model.source)
        if folder:  # a file store's model folder, read in place: no copy, MLflow not even imported (1 s)
            return load_model_dir(folder, model.version, runtime.device, runtime.precision)
        from edn.registry import load_registered
        return load_registered(model.name, model.version, self.tracking_uri, runtime.device, runtime.precision)

    def render(self, tasks: list[ChunkTask], model: ResolvedModel) -> list[dict]:
        """Render chunks of `model` side by side. -> per task {staged_url, frames, seconds,
        error, runtime}."""
        started = time.time()
        self.times["first_render_at"] = self.times["first_render_at"] or started
        try:
            return self._render_apart_on_failure(tasks, model)
        finally:
            self.times["last_render_end"] = time.time()
            self.times["render_s"] += self.times["last_render_end"] - started

    def _render_apart_on_failure(self, tasks: list[ChunkTask], model: ResolvedModel) -> list[dict]:
        # on a failure each chunk alone, so that one bad chunk fails only its own row
        try:
            return self._render(tasks, model)
        except Exception as e:
            if len(tasks) == 1:
                return [{"staged_url": tasks[0].staged_url, "frames": 0, "seconds": 0.0,
                         "error": f"{type(e).__name__}: {e}"}]
        return [result for task in tasks for result in self._render_apart_on_failure([task], model)]

    def _render(self, tasks: list[ChunkTask], resolved: ResolvedModel) -> list[dict]:
        started = time.perf_counter()
        renderer = self._model(resolved, tasks[0].zero_shot).renderer(tasks[0].use_face)
        writers = [StagedChunkWriter(t.staged_url, t.source.dataset_url, t.source.video_id, t.source.chunk.start,
                                     t.fps, t.crf) for t in tasks]

        def write(i: int, index: int, image, figure, output) -> None:
            started = time.perf_counter()
            writers[i].write(index, compose(tasks[i].layout, image, figure, output, tasks[i].resolution))
            self.times["write_s"] += time.perf_counter() - started
        # frames composed and encoded by a thread of their own, in order, while the generator computes
        # the next batch (both release the GIL): x264 costs a few ms a frame; a failed write is raised here
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="edn-write") as pool:
                writes: deque = deque()
                for i, index, image, figure, output in render_chunks(renderer, [t.source for t in tasks]):
                    writes.append(pool.submit(write, i, index, image, figure, output))
                    while len(writes) > 2 * len(tasks) or (writes and writes[0].done()):
                        writes.popleft().result()
                while writes:
                    writes.popleft().result()
            for w in writers:
                w.close()
        except BaseException:  # the pool's exit waited for the writes queued (a few frames)
            for w in writers:
                w.abort()
            raise
        per_frame = (time.perf_counter() - started) / max(1, sum(w.frames for w in writers))
        runtime = self.runtime_for(resolved.cleared).record()
        return [{"staged_url": t.staged_url, "frames": w.frames, "seconds": per_frame * w.frames, "error": "",
                 "runtime": runtime} for t, w in zip(tasks, writers)]

    def stats(self) -> dict:
        """Model loads, the models held, this process's page faults so far
        (edn.runtime.keep_freed_memory), and its times (`times`)."""
        return {"loads": self.loads, "models": list(self.models), "page_faults": page_faults(), **self.times}
