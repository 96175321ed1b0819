"""metrics.json and a self-contained HTML report (images embedded, opens from any folder): the
methods table, loss curves, per-frame metric plots, and (pose | model | NN | real) strips."""
from __future__ import annotations

import base64
import html
import io
import json

import cv2
import numpy as np

from edn.eval.precision import format_comparison
from edn.storage import write_bytes_atomic

COLUMNS = (("body_ssim", "body SSIM ↑"), ("face_ssim", "face SSIM ↑"), ("body_lpips", "body LPIPS ↓"),
           ("face_lpips", "face LPIPS ↓"), ("pose_distance", "pose distance ↓"), ("pose_missed", "pose missed ↓"),
           ("change_ratio", "change ratio (1 = real)"), ("flicker", "flicker ↓"))

# the reports' look; headers wrap within a few words, so that a table of every column (the
# onboarding curve's mean: 14) fits a 1100-pixel window
PAGE_STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
              "td,th{border:1px solid #999;padding:3px 6px}th{max-width:7em;font-size:90%}"
              "figure img{image-rendering:pixelated;max-width:100%}")

PER_FRAME = ("ssim_per_frame", "pose_distance_per_frame")  # a method's lists, one value per held-out frame


def summary(metrics: dict) -> dict:
    """A method's metrics without its per-frame lists: a table's row, a command's printed JSON."""
    return {k: v for k, v in metrics.items() if k not in PER_FRAME}


def _png_data_uri(rgb: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def plot(series: dict[str, tuple[list, list]], title: str, xlabel: str, marker: str = "",
         levels: tuple[str, ...] = ()) -> str:
    """A line plot as a PNG data URI (matplotlib, headless); the series named in `levels` dashed,
    without markers (a baseline's level across the plot)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=90)
    for name, (x, y) in series.items():
        level = name in levels
        ax.plot(x, y, label=name, linewidth=1.2, marker="" if level else marker, linestyle="--" if level else "-")
    ax.set_title(title), ax.set_xlabel(xlabel), ax.grid(alpha=0.3), ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.tight_layout(), fig.savefig(buf, format="png"), plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def table_rows(methods: dict[str, dict], extra: tuple[str, ...] = ()) -> list[list[str]]:
    """A row per method: its name, `extra` keys as they are, then COLUMNS' metrics."""
    def cell(v):
        return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{v:.4f}"
    def plain(v):  # steps, seconds, counts: as a reader says them
        return f"{v:.0f}" if isinstance(v, (int, float)) and v >= 10 else "" if v is None else f"{v:g}"
    return [[name] + [plain(m.get(k)) for k in extra] + [cell(m.get(key)) for key, _ in COLUMNS]
            for name, m in methods.items()]


def table_html(methods: dict[str, dict], extra: tuple[str, ...] = ()) -> str:
    labels = ["method", *(k.replace("_", " ") for k in extra), *(lbl for _, lbl in COLUMNS)]  # spaces: they wrap
    head = "".join(f"<th>{html.escape(label)}</th>" for label in labels)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in table_rows(methods, extra))
    return f"<table><tr>{head}</tr>{rows}</table>"


def format_table(methods: dict[str, dict]) -> str:
    """The methods table as fixed-width text, for the terminal."""
    header = ["method"] + [label for _, label in COLUMNS]
    rows = [header] + table_rows(methods)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def write_metrics(url: str, metrics: dict) -> None:
    write_bytes_atomic(url, json.dumps(metrics, indent=1, default=float).encode())


def write_report(url: str, title: str, metrics: dict, strips: list[tuple[int, np.ndarray]],
                 curves: dict[str, dict[str, tuple[list, list]]] | None = None,
                 links: dict[str, str] | None = None) -> None:
    methods = metrics["methods"]
    lpips = metrics["lpips"]
    lpips_note = "" if lpips["available"] else f"<p><b>LPIPS is unavailable:</b> {html.escape(lpips['reason'])}</p>"
    ssim_plot = plot({n: (list(range(len(m["ssim_per_frame"]))), m["ssim_per_frame"]) for n, m in methods.items()},
                      "body SSIM per held-out frame", "held-out frame")
    # a gap: the detector found nobody in that frame
    distances = {n: np.array([np.nan if v is None else v for v in m["pose_distance_per_frame"]], float)
                 for n, m in methods.items()}
    found = {n: (list(range(len(d))), d) for n, d in distances.items() if np.isfinite(d).any()}
    pose_title = f"pose distance per held-out frame ({metrics['pose_detector']})"
    pose_plot = f'<img src="{plot(found, pose_title, "held-out frame", marker=".")}" alt="pose distance per frame">' \
        if found else ""  # the detector found nobody in any frame: the table says so
    curve_imgs = "".join(f'<img src="{plot(series, name, "step")}" alt="{html.escape(name)}">'
                         for name, series in (curves or {}).items() if series)
    images = "".join(
        f'<figure><img src="{_png_data_uri(img)}" alt="frame {i}"><figcaption>held-out frame {i}: '
        f"pose | model | nearest-neighbour baseline | real</figcaption></figure>" for i, img in strips)
    link_items = "".join(f'<li><a href="{html.escape(u)}">{html.escape(n)}</a></li>' for n, u in (links or {}).items())
    cross = "".join(
        f"<tr><td>{html.escape(t['source'])}</td><td>{t['frames']}</td><td>{t['pose_distance']:.4f}</td>"
        f"<td>{t['pose_missed']:.4f}</td><td>{t['background_flicker']:.4f}</td></tr>"
        for t in metrics.get("transfers", []))
    cross_html = ("<h2>Cross-person transfers (no ground truth)</h2><table><tr><th>source</th><th>frames</th>"
                  "<th>pose distance ↓</th><th>pose missed ↓</th><th>background flicker ↓</th></tr>"
                  f"{cross}</table>") if cross else ""
    gate = metrics.get("promotion")
    gate_html = f"<h2>Promotion</h2><p>{html.escape(gate['reason'])}</p>" if gate else ""
    comparison = metrics.get("precision_comparison")
    skipped = metrics.get("precision_comparison_skipped")
    precision_html = ("<h2>Precision</h2><pre>" + html.escape(format_comparison(comparison)) + "</pre>") \
        if comparison else f"<h2>Precision</h2><p>{html.escape(skipped)}</p>" if skipped else ""
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{PAGE_STYLE}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Target <b>{html.escape(metrics["target"])}</b>, model version {html.escape(str(metrics["model_version"]))}
({html.escape(metrics["lineage"])});
{metrics["heldout_frames"]} held-out frames from frame {metrics["heldout_first_frame"]} (never trained on),
each rendered from its own pose; face metrics on the {metrics["face_frames"]} frames with a face box; pose
distance by {html.escape(metrics["pose_detector"])} on the generated frames, in body heights.</p>
<h2>Held-out self-transfer</h2>{table_html(methods)}{lpips_note}{gate_html}{precision_html}{cross_html}
<h2>Plots</h2><img src="{ssim_plot}" alt="SSIM per frame">{pose_plot}{curve_imgs}
<h2>Frames</h2>{images}
<h2>Files</h2><ul>{link_items}</ul></body></html>"""
    write_bytes_atomic(url, doc.encode())
