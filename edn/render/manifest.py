"""What became of each catalog row: a state file per finished row (the durable record a rerun
reads to skip finished work), and the manifest table built from them at the end of a run.

    WORK/rows/<row_id>.json     written atomically when the row is done or has failed
    WORK/posters/<row_id>.jpg   a done row's poster frame, for the gallery (edn.render.gallery)
    OUT/manifest.parquet        one row per catalog row (MANIFEST_SCHEMA), rewritten atomically as rows
                                finish: rows not finished yet are pending
"""
from __future__ import annotations

import datetime
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq

from edn.storage import exists, join, read_bytes, write_bytes_atomic

MANIFEST_SCHEMA = pa.schema([
    pa.field("row", pa.int32()),                 # the row's place in the catalog
    pa.field("row_id", pa.string()),             # edn.render.catalog.CatalogRow.row_id ('' if unparseable)
    pa.field("source", pa.string()),
    pa.field("target", pa.string()),             # as the catalog names it
    pa.field("model_version", pa.string()),      # the version the alias pointed at when rendered
    pa.field("zero_shot", pa.string()),          # a base model's zero-shot render, said so (else null)
    pa.field("output", pa.string()),
    pa.field("status", pa.string()),             # done | failed | pending (not finished: the job runs, or died)
    pa.field("stage", pa.string()),              # a failure's: catalog, model, output, source, render, join
    pa.field("ran", pa.bool_()),                 # rendered by this run (false: done by an earlier one)
    pa.field("frames", pa.int64()),
    pa.field("frames_without_pose", pa.int64()),  # source frames with no dancer: the target's empty scene
    pa.field("normalization", pa.string()),      # global pose normalization, or why none (feet never seen)
    pa.field("seconds_per_frame", pa.float64()), # render + join time of the row's frames, all workers
    pa.field("audio", pa.string()),              # copied, or why not
    pa.field("device", pa.string()),             # the render actor's, and its precision (edn.runtime)
    pa.field("precision", pa.string()),
    pa.field("precision_reason", pa.string()),
    pa.field("error", pa.string()),
    pa.field("finished_at", pa.string()),
])


def state_url(work_url: str, row_id: str) -> str:
    return join(work_url, "rows", f"{row_id}.json")


def poster_url(work_url: str, row_id: str) -> str:
    return join(work_url, "posters", f"{row_id}.jpg")


def load_state(work_url: str, row_id: str) -> dict | None:
    url = state_url(work_url, row_id)
    return json.loads(read_bytes(url)) if exists(url) else None


def finished(work_url: str, entry: dict) -> dict:
    """Record a finished row (done or failed) and return its manifest entry."""
    entry = {**entry, "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if entry.get("row_id"):
        write_bytes_atomic(state_url(work_url, entry["row_id"]), json.dumps(entry, indent=1).encode())
    return entry


def write_manifest(out_url: str, entries: list[dict]) -> str:
    columns = {f.name: [e.get(f.name) for e in sorted(entries, key=lambda e: e["row"])] for f in MANIFEST_SCHEMA}
    buf = io.BytesIO()
    pq.write_table(pa.table(columns, schema=MANIFEST_SCHEMA), buf)
    url = join(out_url, "manifest.parquet")
    write_bytes_atomic(url, buf.getvalue())
    return url


def read_manifest(out_url: str) -> list[dict]:
    return pq.read_table(io.BytesIO(read_bytes(join(out_url, "manifest.parquet")))).to_pylist()
