"""A model scored in both precisions on the same held-out frames (`edn evaluate
--compare-precision`): each render's body SSIM against the real frames and pose distance, and the
SSIM between the two renders. A precision is *cleared* for a model when it was evaluated in it
(the precision the gate judged), or when its renders match that one's within TOLERANCE; the
cleared list is kept on the model version (tag `edn.precisions`) and the catalog renders the model
in a cleared precision (edn.render.worker)."""
from __future__ import annotations

import dataclasses
import logging

import numpy as np

from edn.eval.pose_distance import detected_pose_distance, summarize
from edn.inference import TargetModel
from edn.pose.estimator import make_estimator
from edn.pose.layout import has_pose
from edn.registry import resolve_version
from edn.runtime import Runtime, keep_to_cleared, native_bf16, resolve_and_log

log = logging.getLogger(__name__)

PRECISIONS_TAG = "edn.precisions"
# the other precision is cleared when its held-out body SSIM is this close to the evaluated one's,
# the two renders are this alike, and the detector misses the dancer in no more frames (± 2%)
TOLERANCE = {"body_ssim": 0.005, "renders_ssim": 0.98, "pose_missed": 0.02}


def precision_to_compare(model: TargetModel, compare: bool, emulated: bool) -> tuple[str | None, str | None]:
    """(the precision to render `model` in beside its own, or None; why none, when skipped for
    emulation): bf16 on a device without native bf16 is skipped unless `emulated`, as auto never
    chooses it there and it costs minutes (docs/base-model.md#the-demos-base)."""
    if not compare:
        return None, None
    other = "fp32" if model.precision == "bf16" else "bf16"
    device = model.device.type
    native, why = native_bf16(device)
    if other == "bf16" and not native and not emulated:
        return None, (f"bf16 not compared on {device} ({why}; compare_emulated=false): the model is cleared "
                      f"for {model.precision} only")
    return other, None


def compare_precisions(model: TargetModel, reals: np.ndarray, poses: np.ndarray, renders: dict[str, np.ndarray],
                       detector: str) -> dict:
    """`renders`: the held-out frames rendered in fp32 and bf16 (all frames, in order), `reals`
    and `poses` the real frames and poses; scored where the pose exists, as evaluate_heldout."""
    from edn.eval.heldout import ssim
    scored = has_pose(poses)
    reals, poses = reals[scored], poses[scored]
    result = {}
    estimator = make_estimator(detector)
    try:
        for precision, frames in renders.items():
            frames = frames[scored]
            pose = summarize(detected_pose_distance(estimator, frames, poses, video_id=f"{precision}-heldout"))
            result[precision] = {"body_ssim": float(np.mean([ssim(g, r) for g, r in zip(frames, reals)])),
                                 "pose_distance": pose["mean"], "pose_missed": pose["missed"]}
    finally:
        estimator.close()
    fp32, bf16 = renders["fp32"][scored], renders["bf16"][scored]
    result["renders_ssim"] = float(np.mean([ssim(a, b) for a, b in zip(fp32, bf16)]))
    result["body_ssim_difference"] = result["bf16"]["body_ssim"] - result["fp32"]["body_ssim"]
    evaluated = model.precision
    other = "fp32" if evaluated == "bf16" else "bf16"
    alike = (abs(result["body_ssim_difference"]) <= TOLERANCE["body_ssim"]
             and result["renders_ssim"] >= TOLERANCE["renders_ssim"]
             and result[other]["pose_missed"] <= result[evaluated]["pose_missed"] + TOLERANCE["pose_missed"])
    return {**result, "evaluated_in": evaluated, "tolerance": TOLERANCE,
            "cleared": [evaluated, other] if alike else [evaluated]}


def format_comparison(c: dict) -> str:
    """The comparison as a few console lines."""
    rows = [f"  {p:<5} body SSIM {c[p]['body_ssim']:.4f}  pose distance {c[p]['pose_distance']:.4f}  "
            f"missed {c[p]['pose_missed']:.0%}" for p in ("fp32", "bf16")]
    return "\n".join([f"precision (evaluated in {c['evaluated_in']}):", *rows,
                      f"  bf16 - fp32 body SSIM {c['body_ssim_difference']:+.4f}; SSIM between the renders "
                      f"{c['renders_ssim']:.4f}; cleared: {', '.join(c['cleared'])}"])


def in_precision(model: TargetModel, precision: str) -> TargetModel:
    """The same loaded model, rendering in `precision`."""
    return dataclasses.replace(model, precision=precision)


def registered_runtime(name: str, ref: str, tracking_uri: str, device: str, precision: str,
                       who: str) -> tuple[Runtime, str]:
    """The device and precision to render registered model `name`@`ref` in: resolved here
    (edn.runtime), and with precision auto kept to what its evaluation cleared, as a catalog's
    actors do (edn.render.worker). Also the ref to load: with auto, the version whose tags were
    read, so that an alias moved meanwhile cannot pair one version's precisions with another."""
    runtime = resolve_and_log(device, precision, who)
    if precision != "auto":
        return runtime, ref
    version = resolve_version(name, ref, tracking_uri)
    kept = keep_to_cleared(runtime, precision, cleared_precisions(version.tags))
    if kept != runtime:
        log.info("%s renders %s@%s in %s (%s)", who, name, ref, kept.precision, kept.precision_reason)
    return kept, str(version.version)


def cleared_precisions(tags: dict) -> list[str]:
    """A model version's cleared precisions from its tags; [] when never evaluated (by this rule)."""
    return [p for p in tags.get(PRECISIONS_TAG, "").split(",") if p]
