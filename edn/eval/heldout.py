"""Self-transfer on the target's held-out frames (the video's tail, never trained on): each
frame is rendered from its own pose, so the real frame is the ground truth. Every method is
scored with the same metrics, on the whole frame and on the face box, as in the paper:

    model               the registered model (with its face GAN when it has one)
    model_without_face  the same body generator alone (only for a model with a face GAN)
    nearest_neighbour   the paper's baseline: the target's training frame of the nearest pose
    mean_frame          the average training frame: knows the background, not the pose
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from edn.data.reader import video_frames, video_poses, video_record
from edn.errors import DataError
from edn.eval.lpips_metric import LpipsMetric, LpipsUnavailable, lpips_status
from edn.eval.nearest_neighbour import NearestNeighbour
from edn.eval.pose_distance import detected_pose_distance, per_frame, summarize
from edn.eval.precision import compare_precisions, in_precision, precision_to_compare
from edn.eval.stability import stability
from edn.inference import TargetModel
from edn.pose.estimator import make_estimator
from edn.pose.face import face_box
from edn.pose.layout import has_pose
from edn.progress import Progress

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    detector: str = "mediapipe"   # run on generated frames for the pose distance
    lpips_weights_url: str = ""   # LPIPS's AlexNet backbone; default: torchvision's cache
    strip_frames: int = 4
    device: str = "auto"          # where the model runs: auto | cpu | cuda (edn.runtime)
    precision: str = "auto"       # auto | fp32 | bf16
    compare_precision: bool = True  # also render in the other precision and score both (edn.eval.precision)
    compare_emulated: bool = True   # ... even where this device would emulate it (bf16 on most CPUs: ~50x slower)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def _at_size(images: np.ndarray, w: int, h: int) -> np.ndarray:
    """Frames at the model's size: a model trained at a coarser scale (downscale) is scored there."""
    if images.shape[1:3] == (h, w):
        return images
    return np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA) for im in images])


def _heldout(dataset_url: str, model: TargetModel, without_face: bool = True
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Held-out indices, real frames and poses at the model's size, and each method's frames
    (the model without its face GAN too, if it has one and `without_face`)."""
    target, start = model.meta.target, model.meta.holdout_start
    w, h = model.size
    index, reals, poses, outputs, without_face_outputs, figures = [], [], [], [], [], []
    render = model.renderer()
    render_body = model.renderer(use_face=False) if model.face is not None and without_face else None
    total = video_record(dataset_url, target)["frames"] - start
    with Progress(f"evaluate {target}: render held-out in {model.precision}", total, "frames") as progress:
        for i, images, p in video_frames(dataset_url, target, start=start):
            p = p * np.array([w / images.shape[2], h / images.shape[1], 1], np.float32)
            images = _at_size(images, w, h)
            fig, out = render(p)
            index.append(i), reals.append(images), poses.append(p), outputs.append(out), figures.append(fig)
            if render_body:
                without_face_outputs.append(render_body(p)[1])
            progress.update(len(i))
    if not index:
        raise DataError(f"{dataset_url}: target {target!r} has no held-out frames from index {start}")
    methods = {"model": np.concatenate(outputs)}
    if render_body:
        methods["model_without_face"] = np.concatenate(without_face_outputs)
    return np.concatenate(index), np.concatenate(reals), np.concatenate(poses), \
        {**methods, "figures": np.concatenate(figures)}


def _training_frames(dataset_url: str, model: TargetModel, wanted: np.ndarray) -> tuple[dict, np.ndarray]:
    """The training frames at `wanted` indices, and the mean training frame, at the model's size."""
    w, h = model.size
    picked, total, count = {}, None, 0
    need = set(wanted.tolist())
    for index, images, _ in video_frames(dataset_url, model.meta.target, stop=model.meta.holdout_start):
        images = _at_size(images, w, h)
        total = images.sum(0, dtype=np.float64) + (0 if total is None else total)
        count += len(images)
        picked.update({int(i): im for i, im in zip(index, images) if int(i) in need})
    return picked, (total / count).round().astype(np.uint8)


def _face_crops(frames: np.ndarray, boxes: list) -> np.ndarray:
    return np.stack([f[b[1]:b[3], b[0]:b[2]] for f, b in zip(frames, boxes) if b is not None]) \
        if any(b is not None for b in boxes) else np.zeros((0, 1, 1, 3), np.uint8)


def evaluate_heldout(dataset_url: str, model: TargetModel, cfg: EvalConfig | None = None) -> dict:
    """Every method's metrics on the held-out frames, and (pose | model | NN | real) strips."""
    cfg = cfg or EvalConfig()
    w, h = model.size
    index, reals, poses, methods = _heldout(dataset_url, model)
    comparison = None
    other, skipped = precision_to_compare(model, cfg.compare_precision, cfg.compare_emulated)
    if other:  # the same frames in the other precision, scored beside these
        other_model = _heldout(dataset_url, in_precision(model, other), without_face=False)[3]["model"]
        comparison = compare_precisions(model, reals, poses, {model.precision: methods["model"], other: other_model},
                                        cfg.detector)
    # rendered in order (the temporal generator needs every frame), scored where the target's
    # pose exists: a frame without the dancer has nothing to transfer
    scored = has_pose(poses)
    if not scored.any():
        raise DataError(f"{dataset_url}: target {model.meta.target!r} has no pose in any of its {len(index)} "
                         f"held-out frames (from index {index[0]}): nothing to score")
    without_pose = int((~scored).sum())
    index, reals, poses = index[scored], reals[scored], poses[scored]
    methods = {name: frames[scored] for name, frames in methods.items()}
    figures = methods.pop("figures")

    record = video_record(dataset_url, model.meta.target)
    train_index, train_poses = video_poses(dataset_url, model.meta.target)
    keep = (train_index < model.meta.holdout_start) & has_pose(train_poses)  # no dancer: no neighbour
    train_index = train_index[keep]
    train_poses = train_poses[keep] * np.array([w / record["width"], h / record["height"], 1], np.float32)
    # raw positions, not normalized ones: self-transfer is scored against frames of the same
    # camera, so the nearest frame should also have the dancer in the same place
    nearest = NearestNeighbour(normalize=False).fit(train_poses).query(poses)
    picked, mean_frame = _training_frames(dataset_url, model, train_index[np.maximum(nearest, 0)])
    blank = np.zeros_like(reals[0])
    methods["nearest_neighbour"] = np.stack([picked.get(int(train_index[n]), blank) if n >= 0 else blank
                                             for n in nearest])
    methods["mean_frame"] = np.repeat(mean_frame[None], len(reals), 0)

    boxes = [face_box(p, w, h) for p in poses]
    real_faces = _face_crops(reals, boxes)
    status = lpips_status(cfg.lpips_weights_url or None)
    try:
        lpips = LpipsMetric.load(cfg.lpips_weights_url or None) if status["available"] else None
    except LpipsUnavailable as e:
        status, lpips = {**status, "available": False, "reason": str(e)}, None
    if lpips is None:
        log.warning("LPIPS is not reported: %s", status["reason"])
    detector = make_estimator(cfg.detector)
    results = {}
    progress = Progress(f"evaluate {model.meta.target}: score", len(methods) * len(reals), "frames")
    try:
        for name, frames in methods.items():
            faces = _face_crops(frames, boxes)
            distances = detected_pose_distance(detector, frames, poses, video_id=f"{name}-heldout")
            pose = summarize(distances)
            ssims = [ssim(g, r) for g, r in zip(frames, reals)]
            results[name] = {
                "body_ssim": float(np.mean(ssims)),
                "face_ssim": float(np.mean([ssim(g, r) for g, r in zip(faces, real_faces)])) if len(faces) else None,
                "body_lpips": float(lpips(frames, reals).mean()) if lpips else None,
                "face_lpips": float(lpips(faces, real_faces).mean()) if lpips and len(faces) else None,
                "pose_distance": pose["mean"], "pose_missed": pose["missed"],
                **{k: v for k, v in stability(frames, reals).items() if k in ("change_ratio", "flicker")},
                "ssim_per_frame": [round(v, 4) for v in ssims],
                # None: the detector found nobody there; a tracking detector's one misreading can last
                # for a run of frames, which the mean alone does not show (docs/base-model.md)
                "pose_distance_per_frame": per_frame(distances),
            }
            progress.update(len(frames), method=name)
    finally:
        progress.close()
        detector.close()
    chosen = np.linspace(0, len(reals) - 1, min(cfg.strip_frames, len(reals))).round().astype(int)
    strips = [(int(index[c]), np.concatenate([figures[c], methods["model"][c], methods["nearest_neighbour"][c],
                                              reals[c]], axis=1)) for c in chosen]
    return {"target": model.meta.target, "model_version": model.version, "lineage": model.meta.lineage(),
            "precision": model.precision,
            "heldout_frames": len(index),
            "heldout_frames_without_pose": without_pose,
            "heldout_first_frame": int(index[0]), "face_frames": int(len(real_faces)), "lpips": status,
            "pose_detector": cfg.detector, "methods": results, "strips": strips,
            **({"precision_comparison": comparison} if comparison else {}),
            **({"precision_comparison_skipped": skipped} if skipped else {})}
