"""`edn onboard-curve`: what a new performer costs with a base model (issue 15). For each held-out
dancer (never seen by the base): models trained from scratch and fine-tuned from the base at
fractions of one from-scratch budget (TrainConfig.steps), the base zero-shot, and the
nearest-neighbour and mean-frame baselines, all scored on that dancer's held-out frames by
edn.eval.heldout. One table (onboarding.json: per dancer, and the mean over dancers), an HTML
report with body SSIM and pose distance against training steps, both logged to MLflow. With
face_steps, each trained row is body and face, as the demo's model: the face GAN trained that many
steps on the row's frozen body, from the base's face GAN where the base has one (fine-tune rows).

Rows are written to onboarding.json as they finish; a rerun into the same folder skips them. A
dancer whose row fails is recorded with its error and the others go on.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field

from mlflow import MlflowClient

from edn.errors import ConfigError
from edn.eval.heldout import EvalConfig, evaluate_heldout
from edn.eval.report import COLUMNS, PAGE_STYLE, format_table, plot, summary, table_html, write_metrics
from edn.inference import zero_shot
from edn.registry import load_registered, parse_model_ref
from edn.runtime import resolve_and_log
from edn.storage import exists, join, read_bytes, write_bytes_atomic
from edn.tracking import run_for
from edn.train.config import TrainConfig
from edn.train.run import train

log = logging.getLogger(__name__)
BASELINES = ("nearest_neighbour", "mean_frame")


@dataclass
class OnboardConfig:
    targets: list = field(default_factory=list)  # video ids of the dataset, none of them a base's video
    base: str = "edn-base@candidate"             # the registered base, NAME@ALIAS-OR-VERSION
    fractions: list = field(default_factory=lambda: [0.05, 0.1, 0.25, 1.0])  # fine-tuning, of train.steps
    scratch_fractions: list = field(default_factory=lambda: [1.0])           # from scratch, the same
    # face GAN steps of every trained row, the same for all (the budgets are the body's); 0: body only.
    # Without a face the detector read fine-tuned renders facing away or upside down (docs/base-model.md)
    face_steps: int = 300


def _label(kind: str, fraction: float) -> str:
    return f"{kind} {fraction * 100:g}%"


def _plan(cfg: OnboardConfig, steps: int) -> list[tuple[str, int, bool]]:
    """(row, training steps, fine-tuned) of every trained row, cheapest first."""
    rows = [(_label("fine-tune", f), max(1, round(f * steps)), True) for f in cfg.fractions]
    rows += [(_label("scratch", f), max(1, round(f * steps)), False) for f in cfg.scratch_fractions]
    return sorted(rows, key=lambda r: r[1])


def _scored(metrics: dict, **extra) -> dict:
    return {**summary(metrics["methods"]["model"]), **extra}


def run_onboarding(train_cfg: TrainConfig, cfg: OnboardConfig, out_url: str,
                   eval_cfg: EvalConfig | None = None) -> dict:
    if not cfg.targets:
        raise ConfigError("onboard-curve needs the held-out dancers' video ids (--targets)")
    if cfg.face_steps < 0:
        raise ConfigError(f"--face-steps {cfg.face_steps}: give 0 (body only) or more")
    eval_cfg = dataclasses.replace(eval_cfg or EvalConfig(), compare_precision=False)
    runtime = resolve_and_log(eval_cfg.device, eval_cfg.precision, "edn onboard-curve's evaluation")
    name, ref = parse_model_ref(cfg.base, "edn-base")
    base = load_registered(name, ref, train_cfg.tracking_uri or _uri(), runtime.device, runtime.precision)
    seen = sorted(set(cfg.targets) & set(base.meta.references)) if base.meta.dataset_url == train_cfg.dataset_url \
        else []
    if base.meta.kind != "base" or seen:
        raise ConfigError(f"{cfg.base} (version {base.version}) is not a base that never saw "
                          f"{cfg.targets}: kind {base.meta.kind}, trained on {seen or 'none of them'}")
    base_ref = f"{name}@{base.version}"  # every fine-tune of the curve starts from the same version
    results_url = join(out_url, "onboarding.json")
    result = json.loads(read_bytes(results_url)) if exists(results_url) else {}
    if result and result.get("base") != base_ref:
        raise ConfigError(f"{results_url} holds a curve from {result.get('base')}, not {base_ref}: use another --out")
    if result and result.get("face_steps", 0) != cfg.face_steps:
        raise ConfigError(f"{results_url} holds a curve with {result.get('face_steps', 0)} face steps per row, not "
                          f"{cfg.face_steps}: use another --out")
    result.update(base=base_ref, budget_steps=train_cfg.steps, face_steps=cfg.face_steps,
                  base_cost=base_cost(train_cfg, base),
                  runtime=runtime.record(), targets=result.get("targets", {}))
    curve = hashlib.sha1(out_url.encode()).hexdigest()[:8]  # names this curve's training runs (below)
    for target in cfg.targets:
        rows = result["targets"].setdefault(target, {})
        rows.pop("error", None)  # a dancer that failed before is tried again
        try:
            if "zero-shot" not in rows:  # also gives the baselines, which depend on the dancer only
                metrics = evaluate_heldout(train_cfg.dataset_url, zero_shot(base, train_cfg.dataset_url, target),
                                           eval_cfg)
                rows["zero-shot"] = _scored(metrics, steps=0, train_seconds=0.0)
                rows.update({b: summary(metrics["methods"][b]) for b in BASELINES})
                write_metrics(results_url, result)
            for row, steps, tuned in _plan(cfg, train_cfg.steps):
                if row in rows:
                    continue
                started = time.time()
                suffix = row.replace(" ", "-").replace("%", "")
                body_cfg = dataclasses.replace(
                    # a Ray Train run of its own per curve and row: a rerun of this curve resumes it, another
                    # curve (another base or budget) in the same storage does not
                    train_cfg, target=target, model_name=f"edn-{target}-{suffix}", run_name=f"edn-{target}-{suffix}-"
                    f"curve-{curve}", steps=steps,
                    init_from=base_ref if tuned else "", checkpoint_every=min(train_cfg.checkpoint_every, steps))
                trained = train(body_cfg)
                if cfg.face_steps:  # on the body just registered; the base's face GAN where it has one
                    trained = train(dataclasses.replace(
                        body_cfg, stage="face", body_model=trained["version"], run_name=f"{body_cfg.run_name}-face",
                        steps=cfg.face_steps, checkpoint_every=min(train_cfg.checkpoint_every, cfg.face_steps),
                        init_from=base_ref if tuned and base.face is not None else ""))
                seconds = time.time() - started
                model = load_registered(trained["model_name"], trained["version"], trained["tracking_uri"],
                                        runtime.device, runtime.precision)
                rows[row] = _scored(evaluate_heldout(train_cfg.dataset_url, model, eval_cfg), steps=steps,
                                    face_steps=cfg.face_steps, train_seconds=round(seconds, 1))
                write_metrics(results_url, result)
        except Exception as e:  # noqa: BLE001 - one dancer's failure is recorded; the others go on
            log.exception("onboard-curve: %s failed", target)
            rows["error"] = f"{type(e).__name__}: {e}"
            write_metrics(results_url, result)
    result["mean"] = mean_rows(result["targets"])
    print(format_table(result["mean"]))
    write_metrics(results_url, result)
    report = join(out_url, "onboarding.html")
    write_bytes_atomic(report, report_html(result).encode())
    _log_to_mlflow(train_cfg, result, report)
    return {**result, "metrics_file": results_url, "report": report}


def _uri() -> str:
    from edn.tracking import tracking_uri
    return tracking_uri("")


def base_cost(train_cfg: TrainConfig, base) -> dict:
    """What training the base took: its steps, videos and the wall time of its MLflow runs, from
    each run's start to its last logged step; None where none of them is in this registry (a base
    imported from a model folder: its runs are in the registry it was trained in)."""
    client = MlflowClient(train_cfg.tracking_uri or _uri())
    seconds = None
    for run_id in (base.meta.body_run_id, base.meta.face_run_id):
        if run_id:
            last = max((m.timestamp for m in client.get_metric_history(run_id, "lr")), default=None)
            if last is not None:
                seconds = (seconds or 0.0) + (last - client.get_run(run_id).info.start_time) / 1000
    return {"videos": len(base.meta.references), "body_steps": base.meta.body_steps,
            "face_steps": base.meta.face_steps, "run_seconds": None if seconds is None else round(seconds, 1)}


def mean_rows(targets: dict[str, dict]) -> dict[str, dict]:
    """Each row's metrics averaged over the dancers that have it (a failed dancer's error aside).
    A pose distance exists only for dancers the detector found in some frame: `pose_dancers` says
    over how many it was averaged, as rows averaged over different dancers do not compare."""
    names = [n for rows in targets.values() for n in rows if n != "error"]
    out = {}
    for n in dict.fromkeys(names):
        have = [rows[n] for rows in targets.values() if n in rows]
        keys = [k for k in have[0] if isinstance(have[0][k], (int, float))]
        posed = sum(_mean([r.get("pose_distance")]) is not None for r in have)
        out[n] = {k: _mean([r.get(k) for r in have]) for k in keys} | {"dancers": len(have), "pose_dancers": posed}
    return out


def _mean(values) -> float | None:
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(finite) / len(finite) if finite else None


def report_html(result: dict) -> str:
    import html
    mean = result["mean"]
    curves = []
    for key, label in (("body_ssim", "held-out body SSIM ↑ (mean over dancers)"),
                       ("pose_distance", "pose distance ↓ (mean over dancers)")):
        series = {}
        for kind in ("scratch", "fine-tune"):
            points = sorted((r["steps"], r[key]) for n, r in mean.items()
                            if n.startswith(kind) and r.get(key) is not None)
            if points:
                series[kind] = ([p[0] for p in points], [p[1] for p in points])
        top = max([x for xs, _ in series.values() for x in xs] or [1])
        for n in ("zero-shot", *BASELINES):
            if mean.get(n, {}).get(key) is not None:
                series[n] = ([0, top], [mean[n][key]] * 2)
        if not any(k in series for k in ("scratch", "fine-tune")):
            curves.append(f"<p>{html.escape(label)}: no values (a pose distance needs the dancer found)</p>")
            continue
        image = plot(series, label, "training steps", "o", ("zero-shot", *BASELINES))
        curves.append(f'<img src="{image}" alt="{html.escape(label)}">')
    cost = result["base_cost"]
    face = ("face_steps",) if result.get("face_steps") else ()
    stages = f"body, then {result['face_steps']} face GAN steps on it" if face else "body stage only"
    per_dancer = "".join(f"<h3>{html.escape(t)}</h3>" + (f"<p><b>failed:</b> {html.escape(rows['error'])}</p>"
                                                          if "error" in rows else "")
                         + table_html({n: r for n, r in rows.items() if n != "error"},
                                      ("steps", *face, "train_seconds"))
                         for t, rows in result["targets"].items())
    run_time = "training time unknown here (its runs are not in this registry: an imported base)" \
        if cost["run_seconds"] is None else f"{cost['run_seconds']} s of training runs"
    title = "edn onboarding curve"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>{PAGE_STYLE}</style></head><body><h1>{title}</h1>
<p>Base <b>{html.escape(result["base"])}</b>: {cost["videos"]} videos, {cost["body_steps"]} body steps,
{cost["face_steps"] or "no"} face steps,
{run_time}. From-scratch budget {result["budget_steps"]} body steps; each row trained ({stages})
on the dancer's frames before its held-out tail and scored on that tail ({", ".join(k for k, _ in COLUMNS)});
zero-shot: the base with the dancer's appearance reference, no training. Runtime: {html.escape(str(result["runtime"]))}.
</p><h2>Mean over dancers</h2>{table_html(mean, ("steps", *face, "train_seconds", "dancers", "pose_dancers"))}
<h2>Curves</h2>{"".join(curves)}<h2>Per dancer</h2>{per_dancer}</body></html>"""


def _log_to_mlflow(train_cfg: TrainConfig, result: dict, report_url: str) -> None:
    client = MlflowClient(train_cfg.tracking_uri or _uri())
    run_id = run_for(client, train_cfg.experiment, f"onboard-curve-{result['base']}", tags={"edn.base": result["base"]})
    client.log_dict(run_id, result, "onboarding.json")
    client.log_text(run_id, read_bytes(report_url).decode(), "onboarding.html")
    for row, metrics in result["mean"].items():
        for key in ("body_ssim", "pose_distance", "pose_missed"):
            if metrics.get(key) is not None:
                client.log_metric(run_id, f"{row.replace(' ', '_').replace('%', 'pct')}.{key}", metrics[key])
