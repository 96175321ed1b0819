"""metrics.json and a self-contained HTML report (images embedded, opens from any folder)."""
from __future__ import annotations

import base64
import html
import json

import cv2
import numpy as np

from edn.storage import write_bytes_atomic


def _png_data_uri(rgb: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def write_metrics(url: str, metrics: dict) -> None:
    write_bytes_atomic(url, json.dumps(metrics, indent=1).encode())


def write_report(url: str, title: str, metrics: dict, strips: list[tuple[int, np.ndarray]],
                 links: dict[str, str] | None = None) -> None:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.4f}</td></tr>" for k, v in metrics["ssim"].items())
    images = "".join(
        f'<figure><img src="{_png_data_uri(img)}" alt="frame {i}"><figcaption>held-out frame {i}: '
        f"pose | model | mean-frame baseline | real</figcaption></figure>" for i, img in strips)
    link_items = "".join(f'<li><a href="{html.escape(u)}">{html.escape(n)}</a></li>' for n, u in (links or {}).items())
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:4px 10px}}img{{image-rendering:pixelated;max-width:100%}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Target <b>{html.escape(metrics["target"])}</b>, model version {html.escape(str(metrics["model_version"]))};
{metrics["heldout_frames"]} held-out frames from frame {metrics["heldout_first_frame"]} (never trained on),
each rendered from its own pose.</p>
<h2>SSIM on held-out frames (higher is better)</h2>
<table><tr><th>method</th><th>SSIM</th></tr>{rows}</table>
<h2>Frames</h2>{images}
<h2>Files</h2><ul>{link_items}</ul></body></html>"""
    write_bytes_atomic(url, doc.encode())
