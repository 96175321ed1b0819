"""The promotion gate: the registry alias `production` moves to a model version only when the
model beats the nearest-neighbour baseline on held-out body SSIM and pose distance; the reason,
either way, is recorded on the version (tag `edn.promotion`)."""
from __future__ import annotations

import math

from mlflow import MlflowClient


def decide(metrics: dict) -> tuple[bool, str]:
    model, nn = metrics["methods"]["model"], metrics["methods"]["nearest_neighbour"]
    ssim_ok = model["body_ssim"] > nn["body_ssim"]
    pose_ok = not math.isnan(model["pose_distance"]) and (
        math.isnan(nn["pose_distance"]) or model["pose_distance"] < nn["pose_distance"])
    verdict = "promoted to production" if ssim_ok and pose_ok else "not promoted"
    return ssim_ok and pose_ok, (
        f"{verdict}: held-out body SSIM {model['body_ssim']:.4f} vs nearest neighbour {nn['body_ssim']:.4f} "
        f"({'better' if ssim_ok else 'not better'}); pose distance {model['pose_distance']:.4f} vs "
        f"{nn['pose_distance']:.4f} body heights ({'better' if pose_ok else 'not better'}), "
        f"{metrics['heldout_frames']} frames")


def promote(client: MlflowClient, name: str, version: str, metrics: dict, alias: str = "production") -> dict:
    ok, reason = decide(metrics)
    client.set_model_version_tag(name, version, "edn.promotion", reason)
    if ok:
        client.set_registered_model_alias(name, alias, version)
    return {"promoted": ok, "alias": alias if ok else None, "reason": reason}
