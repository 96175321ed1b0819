"""The promotion gate: the registry alias `production` moves to a model version only when the
model beats the nearest-neighbour baseline on held-out body SSIM and pose distance; the reason,
either way, is recorded on the version (tag `edn.promotion`).

The pose distance is a mean over the frames where the detector found the dancer, so a model
whose frames the detector mostly misses could win on the few it finds: the model must also be
missed in no more frames than the baseline, give or take `MISS_TOLERANCE` of the frames."""
from __future__ import annotations

import math

from mlflow import MlflowClient

MISS_TOLERANCE = 0.02


def decide(metrics: dict) -> tuple[bool, str]:
    model, nn = metrics["methods"]["model"], metrics["methods"]["nearest_neighbour"]
    ssim_ok = model["body_ssim"] > nn["body_ssim"]
    found_ok = model["pose_missed"] <= nn["pose_missed"] + MISS_TOLERANCE
    pose_ok = found_ok and not math.isnan(model["pose_distance"]) and (
        math.isnan(nn["pose_distance"]) or model["pose_distance"] < nn["pose_distance"])
    verdict = "promoted to production" if ssim_ok and pose_ok else "not promoted"
    return ssim_ok and pose_ok, (
        f"{verdict}: held-out body SSIM {model['body_ssim']:.4f} vs nearest neighbour {nn['body_ssim']:.4f} "
        f"({'better' if ssim_ok else 'not better'}); pose distance {model['pose_distance']:.4f} vs "
        f"{nn['pose_distance']:.4f} body heights, dancer missed in {model['pose_missed']:.0%} vs "
        f"{nn['pose_missed']:.0%} of frames ({'better' if pose_ok else 'not better'}), "
        f"{metrics['heldout_frames']} frames, rendered in {metrics['precision']}")


def promote(client: MlflowClient, name: str, version: str, metrics: dict, alias: str = "production") -> dict:
    ok, reason = decide(metrics)
    client.set_model_version_tag(name, version, "edn.promotion", reason)
    if ok:
        client.set_registered_model_alias(name, alias, version)
    return {"promoted": ok, "alias": alias if ok else None, "reason": reason}
