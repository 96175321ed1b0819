"""Every knob of a training run, in one place."""
from __future__ import annotations

from dataclasses import dataclass, field

from edn.models.face import FaceGeneratorConfig, face_discriminator_config
from edn.models.networks import DiscriminatorConfig, GeneratorConfig

STAGES = ("body", "face")


@dataclass
class TrainConfig:
    dataset_url: str = ""          # the ingested frame/pose dataset (edn.data.schema)
    target: str = ""               # video id of the target person's video in that dataset
    # a base model (docs/base-model.md): one generator trained on these videos of the dataset, each
    # frame with its own video's appearance reference (edn.data.reference), instead of a target
    videos: list = field(default_factory=list)
    recolour: bool = True          # a base: each pair and its reference by one random turn of hue (edn.train.collate)
    recolour_lightness: bool = False  # and half the time a mirror of lightness: dark clothes shown light
    # registry "name@alias-or-version" of a base model a target starts from: its weights and generator settings
    init_from: str = ""
    # fine-tuning: the discriminator from the base too; off, it starts afresh: with the base's, the
    # base generator's every-hue speckles stayed through 250 steps, afresh they went (docs/base-model.md)
    base_discriminator: bool = False
    model_name: str = ""           # registry name; default edn-<target>
    stage: str = "body"            # "body", then "face" on the frozen body generator
    temporal: bool = True          # temporal smoothing (False: the paper's frame-by-frame ablation)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    # its reference_channels is set by the run: on for a base and for a target fine-tuned from one
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    # its in_channels is set by the run (edn.train.step.body_discriminator_channels)
    face_generator: FaceGeneratorConfig = field(default_factory=FaceGeneratorConfig)
    face_discriminator: DiscriminatorConfig = field(default_factory=face_discriminator_config)
    body_model: str = "candidate"  # face stage: registry alias or version of the body model to freeze
    # coarse-to-fine (pix2pixHD): train a global generator of ngf * 2 at downscale=2 first, then
    # the local enhancer (generator.n_local_enhancers=1) initialised from it, the global part
    # held still for fix_global_steps
    downscale: int = 1             # train (and register) at 1/downscale of the stored frame size
    init_global_from: str = ""     # registry "name@alias-or-version" of the coarse body model
    fix_global_steps: int = 0
    steps: int = 2000
    batch_size: int = 4
    lr: float = 2e-4
    lr_decay_start: float = 0.5    # fraction of steps after which lr falls linearly to 0 (pix2pixHD)
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_feat: float = 10.0      # discriminator feature matching (pix2pixHD)
    lambda_vgg: float = 10.0       # VGG19 perceptual loss (pix2pixHD, the paper)
    vgg_weights_url: str = ""      # VGG19 weights (fsspec URL); default: torchvision's cache
    allow_no_vgg: bool = False     # without VGG19 weights, train without the perceptual loss instead of failing
    lambda_l1: float = 0.0         # L1 to the real frame: not in the paper; a stand-in where no
                                   # VGG19 weights exist for the perceptual loss (docs/training.md)
    holdout_fraction: float = 0.1  # the video's last frames, never trained on (evaluation)
    seed: int = 0
    # Ray Train
    num_workers: int = 1           # 0: Ray Train's local mode, the loop in this process (no worker group;
                                   # one checkpoint kept in a local storage_path: docs/training.md#local-mode)
    use_gpu: bool = False
    amp: bool = True               # bf16 autocast on GPU
    cpu_bf16: bool = False         # bf16 autocast on a CPU that computes it natively too (docs/training.md)
    channels_last: bool = True     # NHWC tensors on GPU (no effect on CPU)
    cpus_per_worker: float = 1.0
    # more resources each worker demands, e.g. a custom resource only one node pool's nodes
    # offer ({"a100": 1}), or one per node to spread the workers across nodes
    resources_per_worker: dict = field(default_factory=dict)
    torch_threads: int = 0         # 0: one per CPU given to the worker
    max_failures: int = 2          # worker/node failures survived by resuming from a checkpoint
    checkpoint_every: int = 200
    storage_path: str = "outputs/ray"  # Ray Train run storage (any fsspec URL)
    run_name: str = ""             # same name + storage path = resume; default edn-<target>
    # MLflow
    tracking_uri: str = ""         # default: $MLFLOW_TRACKING_URI, else SQLite under outputs/
    experiment: str = "edn"
    log_every: int = 10
    image_every: int = 200
    alias: str = "candidate"

    def loss_weights(self, perceptual: bool) -> dict[str, float]:
        """The generator's terms by name; G_vgg only when the perceptual loss is available."""
        return {"G_gan": 1.0, "G_feat": self.lambda_feat, "G_vgg": self.lambda_vgg if perceptual else 0.0,
                "G_l1": self.lambda_l1}

    @property
    def is_base(self) -> bool:
        return bool(self.videos)

    @property
    def registry_name(self) -> str:
        return self.model_name or ("edn-base" if self.is_base else f"edn-{self.target}")

    @property
    def ray_run_name(self) -> str:
        return self.run_name or f"{self.registry_name}-{self.stage}"
