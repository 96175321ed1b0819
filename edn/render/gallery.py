"""A catalog's results as one self-contained HTML page (OUT/index.html), rewritten with the
manifest as rows finish: per row a poster frame (embedded), its video (a relative link when it
lies under the page's folder's filesystem, playable in a browser), source, target, model
version, status, stage and error of a failed row, seconds per frame; filters by status. No
script or style is fetched from elsewhere."""
from __future__ import annotations

import base64
import datetime
import html
import posixpath

import cv2
import numpy as np

POSTER_WIDTH = 240  # pixels: the poster is a thumbnail, embedded in the page
STATUSES = ("done", "failed", "pending")


def poster_jpeg(frame_rgb: np.ndarray) -> bytes:
    """A frame as the poster thumbnail (JPEG, POSTER_WIDTH wide at most)."""
    h, w = frame_rgb.shape[:2]
    if w > POSTER_WIDTH:
        frame_rgb = cv2.resize(frame_rgb, (POSTER_WIDTH, max(1, round(h * POSTER_WIDTH / w))),
                               interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return data.tobytes()


def video_link(output: str, page_dir: str) -> str:
    """The output as the page links it: relative to the page's folder when both are on the same
    filesystem (both local, or the same bucket), else its full URL."""
    def split(url: str) -> tuple[str, str]:
        scheme, sep, rest = url.partition("://")
        if not sep:
            return "", url
        bucket, _, path = rest.partition("/")
        return f"{scheme}://{bucket}", "/" + path

    (where, path), (page_where, page_path) = split(output), split(page_dir)
    if where != page_where or not path.startswith("/") or not page_path.startswith("/"):
        return output
    return posixpath.relpath(path, page_path)


def _cell(value) -> str:
    return "" if value is None else html.escape(str(value))


def _zero_shot(entry: dict) -> str:
    note = entry.get("zero_shot")
    return f'<div class="note"><b>ZERO-SHOT</b> {html.escape(note.removeprefix("ZERO-SHOT "))}</div>' if note else ""


def _row(entry: dict, poster: bytes | None, page_dir: str) -> str:
    status = entry["status"]
    media = "<div class=none>no video</div>"
    if status == "done":
        src = html.escape(video_link(entry["output"], page_dir), quote=True)
        image = f"data:image/jpeg;base64,{base64.b64encode(poster).decode()}" if poster else ""
        media = (f'<video controls preload="none" width="{POSTER_WIDTH}" poster="{image}" src="{src}"></video>'
                 f'<br><a href="{src}">{_cell(posixpath.basename(entry["output"]))}</a>')
    spf = entry.get("seconds_per_frame")
    return (f'<tr class="row {status}" data-status="{status}" data-row="{entry["row"]}">'
            f"<td>{entry['row']}</td><td>{media}</td><td>{_cell(entry['source'])}</td>"
            f"<td>{_cell(entry['target'])}{_zero_shot(entry)}</td><td>{_cell(entry.get('model_version'))}</td>"
            f'<td class="status">{status}</td><td>{_cell(entry.get("stage"))}</td>'
            f'<td class="error">{_cell(entry.get("error"))}</td>'
            f"<td>{'' if spf is None else f'{spf:.3f}'}</td><td>{_cell(entry.get('frames'))}</td></tr>")


STYLE = """body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}
tr.failed td.status{color:#b00;font-weight:bold}tr.done td.status{color:#070}tr.pending td.status{color:#888}
td.error{max-width:28em;font-size:90%;color:#600;white-space:pre-wrap}.note{max-width:22em;font-size:80%}
.none{width:240px;height:60px;background:#eee;color:#888;display:flex;align-items:center;justify-content:center}
button{margin-right:.4em}button.on{font-weight:bold}"""

SCRIPT = """function show(s){for(const r of document.querySelectorAll('tr.row'))
r.style.display=(s==='all'||r.dataset.status===s)?'':'none';
for(const b of document.querySelectorAll('button'))b.className=b.dataset.status===s?'on':''}"""


def gallery_html(entries: list[dict], posters: dict[str, bytes], out_url: str, catalog_url: str,
                 complete: bool) -> str:
    """The page for the catalog's manifest entries (done, failed or pending), posters by row_id."""
    entries = sorted(entries, key=lambda e: e["row"])
    counts = {s: sum(e["status"] == s for e in entries) for s in STATUSES}
    page_dir = out_url.rstrip("/")
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    state = "complete" if complete else "in progress (this page is rewritten as rows finish)"
    buttons = "".join(f'<button data-status="{s}" onclick="show(\'{s}\')">{s} ({n})</button>'
                      for s, n in (("all", len(entries)), *counts.items()))
    rows = "\n".join(_row(e, posters.get(e.get("row_id", "")), page_dir) for e in entries)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>edn catalog: {html.escape(catalog_url)}</title>
<style>{STYLE}</style><script>{SCRIPT}</script></head><body>
<h1>Catalog {html.escape(catalog_url)}</h1>
<p id="summary">{len(entries)} rows: {counts['done']} done, {counts['failed']} failed, {counts['pending']} pending;
{state}; updated {now}. The table is also in manifest.parquet beside this page.</p>
<p>Show: {buttons}</p>
<table id="rows"><thead><tr><th>row</th><th>video</th><th>source</th><th>target</th><th>model version</th>
<th>status</th><th>stage</th><th>error</th><th>s/frame</th><th>frames</th></tr></thead>
<tbody>
{rows}
</tbody></table></body></html>
"""
