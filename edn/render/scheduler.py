"""The render actors of a catalog run and the chunks in flight on them (edn.render.batch drives it).

Chunks wait in queues keyed by (model "name@version", its zero-shot performer, use_face). A batch
of one queue goes to an idle actor that already holds that model when there is one, else the
longest queue goes to the first idle actor; so each model is loaded once per actor and reused
across rows.
"""
from __future__ import annotations

from collections import defaultdict, deque

from edn.render.worker import ChunkTask, RenderWorker

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
    """A pool of RenderWorker actors, one per queued chunk at most (`actors` at most). An actor
    that dies more often than Ray may restart it is replaced, its batch failed. Once no chunk
    waits, idle actors are stopped, freeing their CPUs/GPUs for the joins."""

    def __init__(self, tasks: list[ChunkTask], tracking_uri: str, actors: int, batch_chunks: int,
                 models_per_actor: int, options: dict, device: str = "cpu", precision: str = "auto",
                 cleared: dict[str, list[str]] | None = None):
        """`options`: the actors' ray.remote options; `device` and `precision`, what they render
        in (edn.runtime.resolve, in each actor); `cleared`, the precisions each model's evaluation
        cleared (RenderWorker)."""
        import ray

        self.pending: dict[QueueKey, deque[ChunkTask]] = defaultdict(deque)
        for task in tasks:
            self.pending[task.model, task.zero_shot, task.use_face].append(task)
        self.batch_chunks = batch_chunks
        self._worker = ray.remote(RenderWorker).options(**options)
        self._worker_args = (tracking_uri, models_per_actor, device, precision, cleared)
        self.actors = [self._new_actor() for _ in range(max(0, min(actors, len(tasks))))]
        self.holds = {a: deque(maxlen=models_per_actor) for a in range(len(self.actors))}
        self.idle = list(range(len(self.actors)))
        self.running: dict = {}  # ObjectRef -> (actor, its batch)
        self.stats: list[dict] = []  # stopped actors' RenderWorker.stats

    def _new_actor(self):
        return self._worker.remote(*self._worker_args)

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
            self.running[self.actors[actor].render.remote(batch)] = (actor, batch)

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
        import ray

        for a in self.idle:
            self.stats.append(ray.get(self.actors[a].stats.remote()))
            ray.kill(self.actors[a])
        self.idle = []
