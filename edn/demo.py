"""`make demo`: synthetic dancers -> poses -> body GAN on Ray Train -> MLflow registry ->
transfer video -> held-out evaluation. Embedded defaults sized for a 2-core CPU machine.

The target's body GAN is fine-tuned from the base model shipped in edn/assets/demo-base (trained on
12 other synthetic dancers by `make demo-base`, docs/base-model.md): from random weights, the
demo's budget gives a model that mostly loses to the nearest neighbour. `--set base=` trains from
random weights, as the paper does (give it the steps: `--steps 1500` or more)."""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field

from edn.config import load_config
from edn.data.ingest import IngestConfig, ingest
from edn.eval.heldout import EvalConfig
from edn.eval.run import evaluate_and_report
from edn.ray_init import init_ray
from edn.registry import import_model_dir, load_registered
from edn.render.transfer import transfer
from edn.runtime import resolve_and_log
from edn.storage import join
from edn.synth import synthesize
from edn.tracking import tracking_uri
from edn.train.config import TrainConfig
from edn.train.run import train

log = logging.getLogger(__name__)


DEMO_BASE = os.path.join(os.path.dirname(__file__), "assets", "demo-base")


def _demo_train() -> TrainConfig:
    # cpu_small's networks, with the shipped base's appearance figures; 600 steps from the base (900
    # scored the same since the discriminator starts afresh: docs/base-model.md#the-demos-base)
    cfg = load_config(TrainConfig, "cpu_small")
    return dataclasses.replace(cfg, steps=600, generator=dataclasses.replace(cfg.generator, appearance=True))


@dataclass
class DemoConfig:
    out: str = "outputs/demo"
    dancers: int = 2
    frames: int = 480
    synth_size: tuple[int, int] = (256, 256)
    train_size: tuple[int, int] = (128, 128)
    seed: int = 7
    estimator: str = "mediapipe"
    train: TrainConfig = field(default_factory=_demo_train)
    face_steps: int = 300
    base: str = DEMO_BASE           # model folder the target is fine-tuned from; '' = random weights
    base_model: str = "edn-demo-base"  # the base's name in the demo's registry
    device: str = "auto"     # where rendering and evaluation run: auto | cpu | cuda (edn.runtime)
    precision: str = "auto"  # auto | fp32 | bf16; training keeps its own (train.cpu_bf16)
    # the evaluation's precision comparison also where bf16 is emulated (most CPUs: minutes for a
    # precision auto never picks there; the model is then cleared for the evaluated one only)
    compare_emulated: bool = False


def run_demo(cfg: DemoConfig) -> dict:
    started = time.time()
    runtime = resolve_and_log(cfg.device, cfg.precision, "edn demo's rendering and evaluation")
    init_ray()
    out = cfg.out if "://" in cfg.out else os.path.abspath(cfg.out)
    step = _steps(started)

    step("1/5 synthesizing dancers")
    videos = synthesize(join(out, "videos"), cfg.dancers, cfg.frames, cfg.synth_size, cfg.seed)
    videos = [v for v in videos if v.endswith(".mp4")]

    step("2/5 detecting poses (ingest on Ray Data)")
    w, h = cfg.train_size
    ingested = ingest(videos, join(out, "dataset"), IngestConfig(estimator=cfg.estimator, width=w, height=h))
    if ingested["failed"]:
        raise RuntimeError(f"ingest failed: {ingested['failed']}")
    target, source = "dancer_00", "dancer_01"

    # the demo's Ray Train runs in its own folder: a demo into another --out is a run of its own, and
    # a rerun into the same one resumes (or skips) its own runs (edn.train.resume)
    storage = join(out, "ray") if cfg.train.storage_path == TrainConfig.storage_path else cfg.train.storage_path
    tcfg = dataclasses.replace(cfg.train, dataset_url=join(out, "dataset"), target=target, storage_path=storage,
                               tracking_uri=tracking_uri(cfg.train.tracking_uri))
    face_from, start = "", "random weights"
    if cfg.base:  # the shipped base into the demo's registry (once: the same folder is one version)
        version, base = import_model_dir(cfg.base, cfg.base_model, "candidate", tcfg.tracking_uri)
        tcfg = dataclasses.replace(tcfg, init_from=f"{cfg.base_model}@{version}")
        start = f"{tcfg.init_from} (imported from {cfg.base})"
        face_from = tcfg.init_from if base.face_generator else ""  # a base without a face stage: from random
    step(f"3/5 training {target}'s body GAN with temporal smoothing on Ray Train ({cfg.train.steps} steps "
         f"from {start})")
    train(tcfg)
    step(f"3/5 training {target}'s face GAN on the frozen body generator ({cfg.face_steps} steps)")
    trained = train(dataclasses.replace(tcfg, stage="face", steps=cfg.face_steps, checkpoint_every=cfg.face_steps,
                                        init_from=face_from))

    step(f"4/5 transferring {source}'s dance onto {target} (registry: {trained['model_name']}@{tcfg.alias})")
    model = load_registered(trained["model_name"], tcfg.alias, trained["tracking_uri"], runtime.device,
                            runtime.precision)
    video_url = join(out, "transfer.mp4")
    transfer(tcfg.dataset_url, source, model, video_url)

    step("5/5 evaluating on held-out target frames against the nearest-neighbour baseline")
    links = {"transfer video (source | pose | output)": "transfer.mp4", "metrics": "metrics.json"}
    metrics = evaluate_and_report(tcfg.dataset_url, model, trained["model_name"], out, trained["tracking_uri"],
                                  EvalConfig(compare_emulated=cfg.compare_emulated), gate=True, links=links,
                                  sources=[source], runtime=runtime)
    return {**metrics, "model_name": trained["model_name"], "model_version": model.version,
            "body_steps": model.meta.body_steps, "face_steps": model.meta.face_steps,
            "init_from": model.meta.init_from, "face_init_from": model.meta.face_init_from,
            "perceptual_loss": model.meta.perceptual_loss, "demo_seconds": round(time.time() - started, 1),
            "transfer": video_url, "tracking_uri": trained["tracking_uri"]}


def _steps(started: float):
    def step(message: str) -> None:
        log.info("[%5.0fs] %s", time.time() - started, message)
    return step
