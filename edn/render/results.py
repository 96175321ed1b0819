"""What became of each row of a catalog run: recorded as rows finish, published as the
manifest and its gallery page (edn.render.batch drives it)."""
from __future__ import annotations

import logging
import time

from edn.render.catalog import CatalogRow
from edn.render.gallery import gallery_html
from edn.render.manifest import finished, load_state, poster_url, write_manifest
from edn.render.scheduler import RenderScheduler
from edn.render.worker import ChunkTask
from edn.storage import exists, join, read_bytes, write_bytes_atomic

log = logging.getLogger(__name__)


def _entry(row: CatalogRow, **fields) -> dict:
    """The row's manifest entry: who it is, then what became of it in this run."""
    return {"row": row.number, "row_id": row.row_id, "source": row.source, "target": row.target,
            "output": row.output, "ran": True, **fields}


class CatalogResults:
    """What became of each row: manifest entries by row number. A row that finishes, done or
    failed, is recorded at once (edn.render.manifest.finished); then the manifest and the gallery
    beside it (edn.render.gallery) are rewritten, the rows not finished yet shown as pending, so a
    driver killed mid-job leaves the state so far (rewrites at most every `publish_every_s`)."""

    def __init__(self, work_url: str, out_url: str, catalog_url: str, publish_every_s: float):
        self.work, self.out, self.catalog, self.publish_every_s = work_url, out_url, catalog_url, publish_every_s
        self.entries: dict[int, dict] = {}
        self.pending: dict[int, dict] = {}   # rows not finished yet
        self.posters: dict[str, bytes] = {}  # row_id -> the gallery's poster JPEG
        self.published, self.unpublished = float("-inf"), False

    def unreadable(self, invalid: list[dict]) -> None:
        """Rows the catalog reader refused ({row, reason, **raw}): failed at stage catalog."""
        for bad in invalid:
            self.entries[bad["row"]] = {
                "row": bad["row"], "row_id": "", "source": bad.get("source", ""), "target": bad.get("target", ""),
                "output": bad.get("output", ""), "status": "failed", "stage": "catalog", "ran": True,
                "error": bad["reason"]}

    def still_to_do(self, rows: list[CatalogRow]) -> list[CatalogRow]:
        """The rows to render now, pending until they finish; those an earlier run finished (and
        whose output is still there) are kept as it recorded them."""
        todo = []
        for row in rows:
            state = load_state(self.work, row.row_id)
            if state and state["status"] == "done" and exists(row.output):
                self.entries[row.number] = {**state, "row": row.number, "ran": False}
                self._load_poster(row.row_id)
            else:
                todo.append(row)
                self.pending[row.number] = _entry(row, status="pending", stage="", error="", ran=False)
        return todo

    def _load_poster(self, row_id: str) -> None:
        if exists(url := poster_url(self.work, row_id)):
            self.posters[row_id] = read_bytes(url)

    def _finish(self, row: CatalogRow, entry: dict) -> None:
        self.pending.pop(row.number, None)
        self.entries[row.number] = finished(self.work, entry)
        self.unpublished = True
        self.publish()

    def fail(self, row: CatalogRow, stage: str, error: str, **extra) -> None:
        log.error("row %d (%s -> %s): %s", row.number, row.source, row.target, error)
        self._finish(row, _entry(row, status="failed", stage=stage, error=error, **extra))

    def done(self, row: CatalogRow, **fields) -> None:
        self._load_poster(row.row_id)
        self._finish(row, _entry(row, status="done", stage="", error="", **fields))
        log.info("row %d done: %s (%d frames)", row.number, row.output, fields["frames"])

    def counts(self) -> str:
        """Rows done, failed and in all, for the progress line."""
        done = sum(e["status"] == "done" for e in self.entries.values())
        return f"{done} done, {len(self.entries) - done} failed, of {len(self.entries) + len(self.pending)}"

    def publish_due_in(self) -> float | None:
        """Seconds until finished rows not yet shown are due to be published; None: none waits."""
        return max(0.0, self.published + self.publish_every_s - time.monotonic()) if self.unpublished else None

    def publish(self, force: bool = False) -> str:
        """Rewrites manifest.parquet and index.html (each atomically) with every row so far, when
        forced or a finished row waits and the last rewrite is `publish_every_s` old."""
        url = join(self.out, "manifest.parquet")
        if not force and (not self.unpublished or self.publish_due_in() > 0):
            return url
        entries = sorted([*self.entries.values(), *self.pending.values()], key=lambda e: e["row"])
        page = gallery_html(entries, self.posters, self.out, self.catalog, complete=not self.pending)
        # the page first: killed in between, the page is one row ahead of the manifest, never behind
        write_bytes_atomic(join(self.out, "index.html"), page.encode())
        write_manifest(self.out, entries)
        self.published, self.unpublished = time.monotonic(), False
        return url

    def summary(self, scheduler: RenderScheduler, chunks: list[ChunkTask], timeline: dict) -> dict:
        """The last manifest and gallery; -> the run's counts, its failed rows, the actors' model
        loads and page faults, the chunks this run rendered with their warm-up frames (rendered,
        not kept), and the job's timeline (job_timeline)."""
        manifest = self.publish(force=True)
        entries = sorted(self.entries.values(), key=lambda e: e["row"])
        done = [e for e in entries if e["status"] == "done"]
        return {"manifest": manifest, "gallery": join(self.out, "index.html"), "rows": len(entries),
                "done": len(done), "rendered": sum(1 for e in done if e["ran"]),
                "skipped": sum(1 for e in done if not e["ran"]),
                "failed": [{k: e[k] for k in ("row", "source", "target", "stage", "error")}
                           for e in entries if e["status"] == "failed"],
                "model_loads": sum(s["loads"] for s in scheduler.stats), "actors": len(scheduler.actors),
                "actor_page_faults": sum(s["page_faults"] for s in scheduler.stats),
                "chunks": len(chunks), "warmup_frames": sum(t.source.chunk.start - t.source.chunk.render_from
                                                            for t in chunks), "timeline": timeline}
