"""What a registered model carries besides its weights: `edn_model.json` in its folder
(edn.inference), written by training (edn.train.run) and read by everything that uses the
model. The file is read and written here only.

Format 2, the format of every model registered so far. Fields added since it was first written
load with a default where a model lacks them: the generator's position_channels and composite
(False: it was trained without them), floor_stats_error and training_data (not recorded), and the base-model
fields (kind "target", no references, trained from random weights).

Kinds: "target", one person's model (fine-tuned from a base or not); "base", trained on many
videos, renders any video given that video's appearance reference (edn.data.reference); "zero-shot",
a base joined in memory to one new video's reference (edn.inference.zero_shot): never registered.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from edn.errors import DataError
from edn.models.face import FaceGeneratorConfig
from edn.models.networks import GeneratorConfig
from edn.pose.normalize import FloorStats

FORMAT_VERSION = 2
META_FILE = "edn_model.json"


@dataclass(frozen=True)
class PairCounts:
    """What one training stage took of the target's video (edn.train.data.pair_counts)."""
    frames: int                  # frames before the held-out tail
    frames_without_pose: int
    pairs: int                   # (t-1, t) pairs trained on
    pairs_without_pose: int      # left out: the dancer's pose missing in t-1 or t
    pairs_without_face_box: int  # left out by the face stage: no face box in t


@dataclass(frozen=True)
class TrainingData:
    body: PairCounts | None = None
    face: PairCounts | None = None


@dataclass(frozen=True)
class ModelMeta:
    target: str
    width: int                       # the frame size the model renders (its training frames', downscaled)
    height: int
    fps: float
    generator: GeneratorConfig
    temporal: bool                   # each frame generated from the previous output too
    floor_stats: FloorStats | None   # the target's, for pose normalization; None: feet never seen
    dataset_url: str
    holdout_start: int               # the target video's first held-out frame
    body_run_id: str                 # the MLflow run that trained the body generator
    body_steps: int
    perceptual_loss: bool            # whether the body stage trained with the VGG19 loss
    stage: str                       # the last stage trained: body | face
    floor_stats_error: str | None = None  # why there are no floor statistics
    training_data: TrainingData = field(default_factory=TrainingData)
    face_generator: FaceGeneratorConfig | None = None  # set by the face stage, with the fields below
    face_run_id: str | None = None
    face_steps: int | None = None
    face_perceptual_loss: bool | None = None
    body_version: str | None = None  # the registered body model the face stage started from
    kind: str = "target"             # target | base | zero-shot (above)
    # video -> frame index of its appearance reference: a target's own video, or every video of a base
    references: dict[str, int] = field(default_factory=dict)
    holdout_fraction: float = 0.1    # of each video, the tail never trained on (a base's videos: each its own)
    init_from: str | None = None     # "name@version" of the base model the body stage started from
    face_init_from: str | None = None  # the same for the face stage
    # a base's face stage: video -> reference frame of the videos it trained on (may be others than the body's)
    face_references: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    def lineage(self) -> str:
        """How the model was made, in a line: each stage's steps and what it started from."""
        def start(base: str | None) -> str:
            return f"fine-tuned from {base}" if base else "from random weights"
        body = f"body {self.body_steps} steps {start(self.init_from)}" + (
            f" on {len(self.references)} videos" if self.kind == "base" else "") + (
            "" if self.perceptual_loss else ", without the VGG19 loss")
        face = f"face {self.face_steps} steps {start(self.face_init_from)}" + (
            f" on {len(self.face_references)} videos" if self.kind == "base" and self.face_references else "")
        return body if self.face_steps is None else f"{body}; {face}"

    def to_json(self) -> dict:
        return {"format_version": FORMAT_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict, where: str = "edn_model.json") -> ModelMeta:
        data = dict(data)
        version = data.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise DataError(f"{where}: model format {version} is not {FORMAT_VERSION}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        missing = sorted(name for name, f in fields.items() if name not in data
                         and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        if unknown or missing:
            raise DataError(f"{where}: not an edn model's metadata (missing {missing or 'nothing'}, "
                            f"unknown {unknown or 'nothing'})")
        face, floor, counts = data.get("face_generator"), data.get("floor_stats"), data.get("training_data") or {}
        return cls(**{
            **data,
            # models registered before position channels or compositing existed were trained without them
            "generator": GeneratorConfig(**{"position_channels": False, "composite": False, **data["generator"]}),
            "face_generator": FaceGeneratorConfig(**face) if face else None,
            "floor_stats": FloorStats.from_dict(floor) if floor else None,
            "training_data": TrainingData(**{stage: PairCounts(**c) if c else None for stage, c in counts.items()}),
        })

    def write(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(self.to_json(), f, indent=1)

    @classmethod
    def read(cls, path: str) -> ModelMeta:
        with open(path) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}: not a model's metadata (not JSON: {e})") from None
        return cls.from_json(data, path)
