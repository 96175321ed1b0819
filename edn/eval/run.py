"""`edn evaluate`: score a registered model, write metrics.json and report.html, log both to the
MLflow run that made the version, and optionally apply the promotion gate."""
from __future__ import annotations

from mlflow import MlflowClient

from edn.errors import ConfigError
from edn.eval.cross import evaluate_transfer
from edn.eval.heldout import EvalConfig, evaluate_heldout
from edn.eval.precision import PRECISIONS_TAG, format_comparison
from edn.eval.promote import promote
from edn.eval.report import format_table, write_metrics, write_report
from edn.inference import TargetModel
from edn.models.meta import ModelMeta
from edn.runtime import Runtime
from edn.storage import join, read_bytes
from edn.train.step import LOSS_TERMS


def final_attempt(history: list) -> tuple[list[int], list[float]]:
    """(steps, values) of the attempt that made the model: a run whose workers restarted (from a
    checkpoint, or from step 0 before its first) logged the steps after the restart twice, and the
    value logged last at a step is the one the model was trained along."""
    last = {}
    for m in sorted(history, key=lambda m: m.timestamp):
        last[m.step] = m.value
    steps = sorted(last)
    return steps, [last[s] for s in steps]


def loss_curves(client: MlflowClient, meta: ModelMeta, stages: tuple[str, ...] = ("body", "face")) -> dict:
    """{"body losses": {term: (steps, values)}, "face losses": ...} from the model's training runs
    of `stages`."""
    curves = {}
    for stage in stages:
        run_id = {"body": meta.body_run_id, "face": meta.face_run_id}[stage]
        if run_id:
            history = {k: client.get_metric_history(run_id, k) for k in LOSS_TERMS}
            curves[f"{stage} losses"] = {k: final_attempt(h) for k, h in history.items() if h}
    return curves


def evaluate_and_report(dataset_url: str, model: TargetModel, name: str, out_url: str, tracking_uri: str,
                        cfg: EvalConfig | None = None, gate: bool = False, links: dict | None = None,
                        sources: list[str] | None = None, runtime: Runtime | None = None) -> dict:
    """Held-out self-transfer, plus cross-person transfers from `sources` (video ids); `runtime`,
    the device and precision `model` was loaded in, is recorded with the metrics."""
    cfg = cfg or EvalConfig()
    metrics = evaluate_heldout(dataset_url, model, cfg)
    if runtime is not None:
        metrics["runtime"] = runtime.record()
    strips = metrics.pop("strips")
    metrics["transfers"] = [evaluate_transfer(dataset_url, s, model, cfg.detector) for s in sources or []]
    client = MlflowClient(tracking_uri)
    note = model.zero_shot_note
    if note:  # a base rendering one video: what is judged here is not the registered version's own use
        if gate:
            raise ConfigError(f"{name} version {model.version} is evaluated zero-shot on {model.meta.target!r}: "
                              "the promotion gate judges a target's own model")
        metrics["zero_shot"] = note
    else:
        # what the model may be rendered in: the precision judged here, and the other one if it renders alike
        cleared = metrics.get("precision_comparison", {}).get("cleared", [model.precision])
        client.set_model_version_tag(name, model.version, PRECISIONS_TAG, ",".join(cleared))
        metrics["cleared_precisions"] = cleared
    if gate:
        metrics["promotion"] = promote(client, name, model.version, metrics)
    print(format_table(metrics["methods"]))
    if comparison := metrics.get("precision_comparison"):
        print(format_comparison(comparison))
    if skipped := metrics.get("precision_comparison_skipped"):
        print(f"precision: {skipped}")
    write_metrics(join(out_url, "metrics.json"), metrics)
    report = join(out_url, "report.html")
    title = f"edn evaluation: {model.meta.target}" + (f" ({note})" if note else "")
    write_report(report, title, metrics, strips, curves=loss_curves(client, model.meta), links=links)
    # the run that registered this version: its training run, or an imported folder's import run (whose
    # metadata names training runs of the registry it was exported from, not of this one)
    run_id = client.get_model_version(name, model.version).run_id
    where = f"evaluation/zero-shot/{model.meta.target}" if note else "evaluation"
    client.log_dict(run_id, metrics, f"{where}/metrics.json")
    client.log_text(run_id, read_bytes(report).decode(), f"{where}/report.html")
    return {**metrics, "metrics_file": join(out_url, "metrics.json"), "report": report}
