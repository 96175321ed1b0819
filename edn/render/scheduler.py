"""The render actors of a catalog run and the chunks in flight on them (edn.render.batch drives it).

Chunks wait in queues keyed by (model "name@version", its zero-shot performer, use_face). A batch
of one queue goes to an idle actor that already holds that model when there is one, else the
longest queue goes to the first idle actor; so each model is loaded once per actor and reused
across rows.
"""
from __future__ import annotations

import logging
from collections import defaultdict, deque

from edn.render.worker import ChunkTask, RenderWorker, ResolvedModel

log = logging.getLogger(__name__)

QueueKey = tuple[str, tuple | None, bool]  # (model "name@version", ChunkTask.zero_shot, use_face)


def pick(idle: list[int], holds: dict[int, deque], pending: dict[QueueKey, deque]) -> tuple[int, QueueKey] | None:
    """An idle actor and a queue to give it: an actor already holding a model with work
    waiting, else the queue with the most waiting work, to the first idle actor."""
    for actor in idle:
        for key in reversed(holds[actor]):
            if pending.get(key):
                return actor, key
    waiting = [k for k, q in pending.items() if q]
    if not waiting:
        return None
    return idle[0], max(waiting, key=lambda k: len(pending[k]))


class RenderScheduler:
    """A pool of RenderWorker actors, one per chunk at most. The actors may start (`start`) and
    load a model (`preload`) before the chunks come (`add`): while the catalog is validated. An
    actor that dies more often than Ray may restart it is replaced, its batch failed. Once no
    chunk waits, idle actors are stopped, freeing their CPUs/GPUs for the joins."""

    def __init__(self, tracking_uri: str, batch_chunks: int, models_per_actor: int, options: dict,
                 device: str = "cpu", precision: str = "auto"):
        """`options`: the actors' ray.remote options; `device` and `precision`, what they render
        in (edn.runtime.resolve, in each actor)."""
        import ray

        self.pending: dict[QueueKey, deque[ChunkTask]] = defaultdict(deque)
        self.batch_chunks = batch_chunks
        self.models: dict[str, ResolvedModel] = {}  # by "name@version": what an actor needs to load each
        self._worker = ray.remote(RenderWorker).options(**options)
        self._worker_args = (tracking_uri, models_per_actor, device, precision)
        self.actors: list = []
        self.holds = defaultdict(lambda: deque(maxlen=models_per_actor))  # actor -> the queues' models it holds
        self.idle: list[int] = []
        self.running: dict = {}  # ObjectRef -> (actor, its batch)
        self.stats: list[dict] = []  # stopped actors' RenderWorker.stats

    def start(self, actors: int) -> None:
        """Start `actors` render actors: each a process that imports torch before it can render."""
        self.idle += range(len(self.actors), len(self.actors) + actors)
        self.actors += [self._new_actor() for _ in range(actors)]

    def _new_actor(self):
        return self._worker.remote(*self._worker_args)

    def preload(self, keys: list[QueueKey], models: dict[str, ResolvedModel]) -> None:
        """Actor i loads the model of keys[i mod len(keys)] now (keys, most work first): a
        guess at its first batch, which pick then prefers to give it."""
        self.models.update(models)
        for actor in range(len(self.actors) if keys else 0):
            key = keys[actor % len(keys)]
            self.actors[actor].load.remote(self.models[key[0]], key[1])
            self.holds[actor].append(key)

    def add(self, tasks: list[ChunkTask], models: dict[str, ResolvedModel]) -> None:
        """Queue chunks; actors beyond one per chunk are stopped."""
        self.models.update(models)
        for task in tasks:
            self.pending[task.model, task.zero_shot, task.use_face].append(task)
        # rows failed in validation can leave fewer chunks than actors; a surplus actor may not
        # have started (no resources free): its stats are not waited for long
        self._stop([a for a in self.idle if a >= len(tasks)], wait_s=10.0)

    @property
    def waiting(self) -> bool:
        return any(self.pending.values())

    @property
    def busy(self) -> bool:
        return bool(self.running) or self.waiting

    def dispatch(self) -> None:
        """Give every idle actor a batch, while there is work for it."""
        while self.idle and (choice := pick(self.idle, self.holds, self.pending)):
            actor, key = choice
            queue = self.pending[key]
            batch = [queue.popleft() for _ in range(min(self.batch_chunks, len(queue)))]
            self.idle.remove(actor)
            if key in self.holds[actor]:
                self.holds[actor].remove(key)
            self.holds[actor].append(key)
            self.running[self.actors[actor].render.remote(batch, self.models[key[0]])] = (actor, batch)

    def collect(self, ref) -> list[tuple[ChunkTask, dict]]:
        """A finished batch's (task, RenderWorker.render's result) pairs; its actor is idle again."""
        import ray

        actor, batch = self.running.pop(ref)
        self.idle.append(actor)
        try:
            results = ray.get(ref)
        except ray.exceptions.RayActorError as e:  # died more often than it may restart
            results = [{"frames": 0, "seconds": 0.0, "error": f"render worker died: {e}"} for _ in batch]
            self.actors[actor] = self._new_actor()
            self.holds[actor].clear()
        if not self.waiting:
            self._stop_idle()
        return list(zip(batch, results))

    def _stop_idle(self) -> None:
        self._stop(list(self.idle))

    def _stop(self, actors: list[int], wait_s: float | None = None) -> None:
        import ray

        for a in actors:
            try:
                self.stats.append(ray.get(self.actors[a].stats.remote(), timeout=wait_s))
            except ray.exceptions.GetTimeoutError:
                log.warning("render actor %d stopped before it started: its model loads are not counted", a)
            ray.kill(self.actors[a])
            self.idle.remove(a)
