"""The inference API: a target's model as one folder, loaded and rendered with, in order.

A model folder needs no training code's state to use:
    generator.pt       the body generator's state_dict (tensors only; loaded with weights_only=True)
    face_generator.pt  the face generator's, once the face stage has run
    edn_model.json     what rendering needs and where the model came from (edn.models.meta.ModelMeta)
    background.png     the target's empty scene (edn.data.plate), shown where a source has no
                       pose; models registered before it render those frames with the generator
    reference.png, reference_pose.png
                       a target with reference channels (fine-tuned from a base): the frame and
                       pose figure of its appearance reference (with background.png: edn.data.reference)
    reference_face.png that reference frame's face box, for a target's face generator with a reference
    discriminator.pt, face_discriminator.pt
                       a base model's discriminators, which a fine-tuned target starts from

The registry (edn.registry) stores these folders as MLflow model versions.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from edn.data.reference import appearance_colours, appearance_figures
from edn.errors import ConfigError, DataError
from edn.models.body import BodyGenerator
from edn.models.face import FaceGenerator, apply_face, boxes_to_tensor
from edn.models.meta import META_FILE, ModelMeta
from edn.models.networks import to_model_range
from edn.pose.draw import draw_pose
from edn.pose.face import face_box
from edn.pose.layout import has_pose
from edn.pose.normalize import FloorStats
from edn.runtime import autocast, for_autocast, keep_freed_memory

BACKGROUND = "background.png"
REFERENCE_IMAGES = ("reference.png", "reference_pose.png")
REFERENCE_FACE = "reference_face.png"
DISCRIMINATORS = {"body": "discriminator.pt", "face": "face_discriminator.pt"}


def _write_png(path: str, rgb: np.ndarray) -> None:
    cv2.imwrite(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _read_png(path: str) -> np.ndarray:
    image = cv2.imread(path)
    if image is None:  # cv2 says nothing of a file missing or unreadable
        raise DataError(f"{path}: missing or not an image, and the model folder needs it")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_model_dir(path: str, body_state: dict, meta: ModelMeta, face_state: dict | None = None,
                    background: np.ndarray | None = None, reference: np.ndarray | None = None,
                    discriminators: dict[str, dict] | None = None, half: bool = False,
                    reference_face: np.ndarray | None = None) -> None:
    """`reference`: (H, W, 9) plate | frame | figure (edn.data.reference), its plate the `background`,
    and `reference_face` (S, S, 3) its frame's face box;
    `discriminators`: stage -> state_dict, kept by a base model. `half`: weights stored in fp16, half
    the bytes (a model shipped in the repository); loading casts them back to the networks' fp32."""
    def save(state: dict, name: str) -> None:
        if half:
            state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        torch.save(state, os.path.join(path, name))

    os.makedirs(path, exist_ok=True)
    save(body_state, "generator.pt")
    if face_state is not None:
        save(face_state, "face_generator.pt")
    for stage, state in (discriminators or {}).items():
        save(state, DISCRIMINATORS[stage])
    if background is not None:
        _write_png(os.path.join(path, BACKGROUND), background)
    if reference is not None:
        for name, i in zip(REFERENCE_IMAGES, (3, 6)):
            _write_png(os.path.join(path, name), reference[..., i:i + 3])
    if reference_face is not None:
        _write_png(os.path.join(path, REFERENCE_FACE), reference_face)
    meta.write(os.path.join(path, META_FILE))


@dataclass
class TargetModel:
    body: BodyGenerator
    face: FaceGenerator | None
    meta: ModelMeta
    version: str
    background: np.ndarray | None = None  # (H, W, 3) uint8: the target's empty scene
    precision: str = "fp32"  # what its generators run in: fp32, or bf16 under autocast (edn.runtime)
    reference: np.ndarray | None = None  # (H, W, 9) uint8, with reference channels (edn.data.reference)
    discriminators: dict[str, dict] | None = None  # a base's, by stage: what fine-tuning starts from
    reference_face: np.ndarray | None = None  # (S, S, 3) uint8, for a face generator with a reference
    # per precision, the generators as rendering runs them (generators()); shared by the copies
    # dataclasses.replace makes (another precision, a zero-shot performer), which share the networks
    _generators: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def size(self) -> tuple[int, int]:
        return self.meta.size

    @property
    def device(self) -> torch.device:
        """Where its generators are."""
        return next(self.body.parameters()).device

    @property
    def floor(self) -> FloorStats | None:
        """The target's floor statistics; None when its feet were never seen (no normalization)."""
        return self.meta.floor_stats

    @property
    def zero_shot_note(self) -> str | None:
        """What every output of a zero-shot model says about it; None for a trained model."""
        return zero_shot_note(self.meta, self.version)

    def figures(self, poses: np.ndarray) -> np.ndarray:
        w, h = self.size
        return np.stack([draw_pose(p, w, h) for p in poses])

    def generators(self) -> tuple[BodyGenerator, FaceGenerator | None]:
        """(body, face) as rendering runs them in this model's precision (edn.runtime.for_autocast),
        made once per precision."""
        if self.precision not in self._generators:
            self._generators[self.precision] = (for_autocast(self.body, self.precision),
                                                None if self.face is None else for_autocast(self.face, self.precision))
        return self._generators[self.precision]

    def renderer(self, use_face: bool = True) -> "Renderer":
        return Renderer(self, use_face and self.face is not None)


def generate(body: BodyGenerator, x: torch.Tensor, prev: torch.Tensor | None, precision: str,
             reference: torch.Tensor | None = None, appearance: torch.Tensor | None = None) -> torch.Tensor:
    """The body generator's frames from pose figures `x` in `precision` (edn.runtime: fp32, or bf16
    under autocast), turned back to float32 before they become pixels."""
    with autocast(x.device.type, precision):
        return body(x, prev, reference, appearance).float()


def to_tensor(images: np.ndarray, device) -> torch.Tensor:
    """(..., H, W, C) uint8 -> (..., C, H, W) float in [-1, 1] on `device`."""
    return to_model_range(torch.from_numpy(np.ascontiguousarray(images)).to(device))


class Renderer:
    """Renders videos' poses in order, in as many calls as wanted: with temporal smoothing each
    frame is generated from the previous output of the same stream, carried across calls.

    `__call__` renders consecutive frames of one stream; `step` renders one frame of each of
    several streams in one batch (chunks of long videos rendered side by side on one device)."""

    def __init__(self, model: TargetModel, use_face: bool):
        self.model, self.use_face = model, use_face
        self.body, self.face = model.generators()
        self.prev: dict = {}  # stream -> its last output frame (1, 3, H, W)
        self.device = model.device
        if self.device.type == "cpu":  # every frame's activations in the same memory, not fresh pages
            keep_freed_memory()
        self.plate = None if model.background is None else to_tensor(model.background[None], self.device)
        self.reference = None if model.reference is None else to_tensor(model.reference[None], self.device)
        if model.body.references and self.reference is None:
            raise ConfigError(f"model version {model.version} ({model.meta.kind}) renders from an appearance "
                              "reference and has none: a base model renders a target video zero-shot "
                              "(edn render --model <base> --target <video>)")
        self.colours = appearance_colours(model.reference) if model.body.appearance else None
        self.reference_face = to_tensor(model.reference_face[None], self.device) \
            if self.use_face and model.face.cfg.reference else None

    def _input(self, poses: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        figures = self.model.figures(poses)
        return figures, to_tensor(figures, self.device)

    def _generate(self, poses: np.ndarray, x: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
        """The body generator's frames; the target's empty scene where a pose is missing (the
        source's dancer out of the frame), which is also what the next frame is generated from."""
        appearance = None if self.colours is None else \
            to_tensor(appearance_figures(poses, self.colours, *self.model.size), self.device)
        y = generate(self.body, x, prev, self.model.precision, self.reference, appearance)
        missing = ~has_pose(poses)
        if self.plate is not None and missing.any():
            y = torch.where(torch.from_numpy(missing).to(self.device)[:, None, None, None], self.plate, y)
        return y

    def _output(self, poses: np.ndarray, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        if self.use_face:
            w, h = self.model.size
            boxes, valid = boxes_to_tensor([face_box(p, w, h) for p in poses])
            with autocast(self.device.type, self.model.precision):
                ref = None if self.reference_face is None else self.reference_face.expand(len(y), -1, -1, -1)
                y, _ = apply_face(self.face, x, y, boxes.to(y.device), valid.to(y.device), reference_face=ref)
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


def _state(file: str, device: str) -> dict:
    """A saved state dict, fp32 also where stored in fp16; the file mapped, not read into fresh
    memory (0.37 s -> 0.05 s for pix2pixHD's global generator; a bf16 renderer reads it once)."""
    state = torch.load(file, map_location=device, weights_only=True, mmap=True)
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def load_model_dir(path: str, version: str = "local", device: str = "cpu", precision: str = "fp32") -> TargetModel:
    meta = ModelMeta.read(os.path.join(path, META_FILE))

    def load(network, name: str) -> torch.nn.Module:
        # built on the meta device, the weights then assigned: no random initialization to throw
        # away (0.85 s for the 182 M parameters of pix2pixHD's global generator)
        with torch.device("meta"):
            module = network()
        module.load_state_dict(_state(os.path.join(path, name), device), assign=True)
        return module.to(device).eval()

    body = load(lambda: BodyGenerator(meta.generator, meta.temporal), "generator.pt")
    face = load(lambda: FaceGenerator(meta.face_generator), "face_generator.pt") if meta.face_generator else None
    plate = os.path.join(path, BACKGROUND)
    background = _read_png(plate) if os.path.exists(plate) else None
    reference = None
    if meta.generator.reference_channels and meta.kind == "target":
        reference = np.concatenate([background, *(_read_png(os.path.join(path, n)) for n in REFERENCE_IMAGES)], 2)
    reference_face = None
    if meta.face_generator and meta.face_generator.reference and meta.kind == "target":
        reference_face = _read_png(os.path.join(path, REFERENCE_FACE))
    discriminators = {stage: _state(os.path.join(path, name), "cpu")
                      for stage, name in DISCRIMINATORS.items() if os.path.exists(os.path.join(path, name))}
    return TargetModel(body, face, meta, version, background, precision, reference, discriminators or None,
                       reference_face)


def zero_shot(base: TargetModel, dataset_url: str, video: str) -> TargetModel:
    """A base model rendering `video`'s person in `video`'s room with no training: the base's
    networks, that video's appearance reference, empty scene and floor statistics, all taken from
    its frames before the held-out tail (the base's holdout fraction), as a fine-tuned model's are."""
    import dataclasses

    meta, ref = zero_shot_meta(base.meta, base.version, dataset_url, video)
    model = dataclasses.replace(base, meta=meta, background=ref.plate, reference=ref.stacked(), discriminators=None,
                                reference_face=ref.face)
    logging.getLogger(__name__).warning("%s", model.zero_shot_note)
    return model


def zero_shot_note(meta: ModelMeta, version: str) -> str | None:
    """What every output of a zero-shot model (`meta`, of base model `version`) says about it;
    None for a trained model."""
    if meta.kind != "zero-shot":
        return None
    t = meta.target
    return (f"ZERO-SHOT base render: base model version {version} shown the appearance reference of {t!r} "
            f"(frame {meta.references[t]} and the empty scene of its video); never trained on {t!r}")


def zero_shot_meta(base: ModelMeta, version: str, dataset_url: str, video: str):
    """What a zero-shot render of `video` by base model `version` knows of it, without the
    networks: (its ModelMeta, the video's appearance reference: edn.data.reference.Reference).
    A catalog checks its zero-shot rows with it before any actor loads the base."""
    import dataclasses

    # here, not at the top: the dataset readers (pyarrow) are not needed to render a registered model
    from edn.data.reader import split_point, video_poses, video_record
    from edn.data.reference import video_reference
    from edn.pose.normalize import floor_stats_or_reason

    if base.kind != "base":
        raise ConfigError(f"model version {version} of {base.target!r} is a {base.kind} model, "
                          "not a base: only a base renders a new person zero-shot")
    record = video_record(dataset_url, video)
    if (record["width"], record["height"]) != base.size:
        raise ConfigError(f"{dataset_url}: video {video!r} is {record['width']}x{record['height']}; the base model "
                          f"(version {version}) renders {base.size[0]}x{base.size[1]}: ingest it at that size")
    stop = split_point(record["frames"], base.holdout_fraction)
    index, poses = video_poses(dataset_url, video)
    ref = video_reference(dataset_url, video, stop, base.size, (index, poses))
    floor, floor_error = floor_stats_or_reason(poses[index < stop], *base.size)
    meta = dataclasses.replace(base, kind="zero-shot", target=video, dataset_url=dataset_url, fps=record["fps"],
                               holdout_start=stop, floor_stats=floor, floor_stats_error=floor_error,
                               references={video: ref.frame_index})
    return meta, ref
