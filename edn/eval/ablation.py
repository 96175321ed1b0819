"""The paper's ablation, one command: frame-by-frame (FBF), FBF + temporal smoothing (TS), and
FBF + TS + face GAN (FG), trained with the same body budget on the same target and scored on the
same held-out frames, beside the nearest-neighbour and mean-frame baselines."""
from __future__ import annotations

import dataclasses

from mlflow import MlflowClient

from edn.eval.heldout import EvalConfig, evaluate_heldout
from edn.eval.report import format_table, write_metrics, write_report
from edn.eval.run import loss_curves
from edn.registry import load_registered
from edn.runtime import resolve_and_log
from edn.storage import join
from edn.train.config import TrainConfig
from edn.train.run import train

ROWS = (("frame_by_frame", "fbf", False, False), ("temporal", "ts", True, False), ("temporal+face", "ts", True, True))


def run_ablation(base: TrainConfig, face_steps: int, out_url: str, eval_cfg: EvalConfig | None = None) -> dict:
    """Trains each variant as its own registered model (edn-<target>-fbf, edn-<target>-ts) and
    returns {"methods": {row: metrics}} with the baselines, as the report's table. The report's
    strips are the full model's (the last row); its loss curves every row's own stage."""
    # the variants are compared with each other in one precision; `edn evaluate` compares precisions
    eval_cfg = dataclasses.replace(eval_cfg or EvalConfig(), compare_precision=False)
    runtime = resolve_and_log(eval_cfg.device, eval_cfg.precision, "edn ablate's evaluation")
    rows, curves, lineages, first = {}, {}, {}, None
    for row, suffix, temporal, face in ROWS:
        cfg = dataclasses.replace(base, temporal=temporal, model_name=f"edn-{base.target}-{suffix}", run_name="")
        if face:
            cfg = dataclasses.replace(cfg, stage="face", steps=face_steps, checkpoint_every=face_steps)
        trained = train(cfg)
        model = load_registered(trained["model_name"], str(trained["version"]), trained["tracking_uri"],
                                runtime.device, runtime.precision)
        metrics = evaluate_heldout(base.dataset_url, model, eval_cfg)
        rows[row] = metrics["methods"]["model"]
        lineages[row] = metrics["lineage"]
        stage_curves = loss_curves(MlflowClient(trained["tracking_uri"]), model.meta, (cfg.stage,))
        curves.update({f"{row}: {stage}": c for stage, c in stage_curves.items()})
        first = first or metrics
        strips = metrics["strips"]
    rows["nearest_neighbour"] = first["methods"]["nearest_neighbour"]
    rows["mean_frame"] = first["methods"]["mean_frame"]
    result = {k: v for k, v in first.items() if k not in ("methods", "strips")}
    result.update(methods=rows, model_version="ablation: " + ", ".join(r[0] for r in ROWS),
                  lineage="; ".join(f"{row}: {lineage}" for row, lineage in lineages.items()),
                  budget={"body_steps": base.steps, "face_steps": face_steps}, runtime=runtime.record())
    print(format_table(rows))
    write_metrics(join(out_url, "ablation.json"), result)
    write_report(join(out_url, "ablation.html"), f"edn ablation: {base.target}", result, strips, curves=curves)
    return result
