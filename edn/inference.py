"""The inference API: a target's model as one folder, loaded and rendered with, in order.

A model folder needs no training code's state to use:
    generator.pt       the body generator's state_dict (tensors only; loaded with weights_only=True)
    face_generator.pt  the face generator's, once the face stage has run
    edn_model.json     what rendering needs and where the model came from (edn.models.meta.ModelMeta)
    background.png     the target's empty scene (edn.data.plate), shown where a source has no
                       pose; models registered before it render those frames with the generator

The registry (edn.registry) stores these folders as MLflow model versions.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from edn.models.body import BodyGenerator
from edn.models.face import FaceGenerator, apply_face, boxes_to_tensor
from edn.models.meta import META_FILE, ModelMeta
from edn.pose.draw import draw_pose
from edn.pose.face import face_box
from edn.pose.layout import has_pose
from edn.pose.normalize import FloorStats
from edn.runtime import autocast

BACKGROUND = "background.png"


def write_model_dir(path: str, body_state: dict, meta: ModelMeta, face_state: dict | None = None,
                    background: np.ndarray | None = None) -> None:
    os.makedirs(path, exist_ok=True)
    torch.save(body_state, os.path.join(path, "generator.pt"))
    if face_state is not None:
        torch.save(face_state, os.path.join(path, "face_generator.pt"))
    if background is not None:
        cv2.imwrite(os.path.join(path, BACKGROUND), cv2.cvtColor(background, cv2.COLOR_RGB2BGR))
    meta.write(os.path.join(path, META_FILE))


@dataclass
class TargetModel:
    body: BodyGenerator
    face: FaceGenerator | None
    meta: ModelMeta
    version: str
    background: np.ndarray | None = None  # (H, W, 3) uint8: the target's empty scene
    precision: str = "fp32"  # what its generators run in: fp32, or bf16 under autocast (edn.runtime)

    @property
    def size(self) -> tuple[int, int]:
        return self.meta.size

    @property
    def floor(self) -> FloorStats | None:
        """The target's floor statistics; None when its feet were never seen (no normalization)."""
        return self.meta.floor_stats

    def figures(self, poses: np.ndarray) -> np.ndarray:
        w, h = self.size
        return np.stack([draw_pose(p, w, h) for p in poses])

    def renderer(self, use_face: bool = True) -> "Renderer":
        return Renderer(self, use_face and self.face is not None)


def generate(body: BodyGenerator, x: torch.Tensor, prev: torch.Tensor | None, precision: str) -> torch.Tensor:
    """The body generator's frames from pose figures `x` in `precision` (edn.runtime: fp32, or bf16
    under autocast), turned back to float32 before they become pixels."""
    with autocast(x.device.type, precision):
        return body(x, prev).float()


class Renderer:
    """Renders videos' poses in order, in as many calls as wanted: with temporal smoothing each
    frame is generated from the previous output of the same stream, carried across calls.

    `__call__` renders consecutive frames of one stream; `step` renders one frame of each of
    several streams in one batch (chunks of long videos rendered side by side on one device)."""

    def __init__(self, model: TargetModel, use_face: bool):
        self.model, self.use_face = model, use_face
        self.prev: dict = {}  # stream -> its last output frame (1, 3, H, W)
        self.device = next(model.body.parameters()).device
        self.plate = None if model.background is None else \
            torch.from_numpy(model.background).to(self.device).permute(2, 0, 1)[None].float() / 127.5 - 1

    def _input(self, poses: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        figures = self.model.figures(poses)
        return figures, torch.from_numpy(figures).to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1

    def _generate(self, poses: np.ndarray, x: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
        """The body generator's frames; the target's empty scene where a pose is missing (the
        source's dancer out of the frame), which is also what the next frame is generated from."""
        y = generate(self.model.body, x, prev, self.model.precision)
        missing = ~has_pose(poses)
        if self.plate is not None and missing.any():
            y = torch.where(torch.from_numpy(missing).to(self.device)[:, None, None, None], self.plate, y)
        return y

    def _output(self, poses: np.ndarray, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        if self.use_face:
            w, h = self.model.size
            boxes, valid = boxes_to_tensor([face_box(p, w, h) for p in poses])
            with autocast(self.device.type, self.model.precision):
                y, _ = apply_face(self.model.face, x, y, boxes.to(y.device), valid.to(y.device))
            y = y.float()
        return ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()

    @torch.no_grad()
    def __call__(self, poses: np.ndarray, stream=0) -> tuple[np.ndarray, np.ndarray]:
        """(N, 137, 3) consecutive poses of `stream`, in the model's frame size -> (pose figures,
        frames), both (N, H, W, 3) uint8."""
        figures, x = self._input(poses)
        if self.model.body.temporal:  # each frame from the one before: one at a time
            out, prev = [], self.prev.get(stream)
            for i in range(len(x)):
                prev = self._generate(poses[i:i + 1], x[i:i + 1], prev)
                out.append(prev)
            y = torch.cat(out) if out else x.new_zeros((0, 3, *x.shape[2:]))
        else:
            y = self._generate(poses, x, None)
        if len(y):
            self.prev[stream] = y[-1:]
        return figures, self._output(poses, x, y)

    @torch.no_grad()
    def step(self, poses: np.ndarray, streams: list) -> tuple[np.ndarray, np.ndarray]:
        """The next frame of each of `streams` (poses (B, 137, 3), one per stream), in one batch."""
        figures, x = self._input(poses)
        prev = torch.cat([self.prev.get(s, torch.zeros_like(x[:1])) for s in streams]) \
            if self.model.body.temporal else None
        y = self._generate(poses, x, prev)
        for s, frame in zip(streams, y):
            self.prev[s] = frame[None]
        return figures, self._output(poses, x, y)

    def forget(self, stream) -> None:
        self.prev.pop(stream, None)


def load_model_dir(path: str, version: str = "local", device: str = "cpu", precision: str = "fp32") -> TargetModel:
    meta = ModelMeta.read(os.path.join(path, META_FILE))

    def load(module: torch.nn.Module, name: str) -> torch.nn.Module:
        module.load_state_dict(torch.load(os.path.join(path, name), map_location=device, weights_only=True))
        return module.to(device).eval()

    body = load(BodyGenerator(meta.generator, meta.temporal), "generator.pt")
    face = load(FaceGenerator(meta.face_generator), "face_generator.pt") if meta.face_generator else None
    plate = os.path.join(path, BACKGROUND)
    background = cv2.cvtColor(cv2.imread(plate), cv2.COLOR_BGR2RGB) if os.path.exists(plate) else None
    return TargetModel(body, face, meta, version, background, precision)
