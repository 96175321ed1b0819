"""`make demo`: synthetic dancers -> poses -> body GAN on Ray Train -> MLflow registry ->
transfer video -> held-out evaluation. Embedded defaults sized for a 2-core CPU machine."""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field

from edn.config import load_config
from edn.data.ingest import IngestConfig, ingest
from edn.eval.run import evaluate_and_report
from edn.registry import load_registered
from edn.render.transfer import transfer
from edn.runtime import resolve_and_log
from edn.storage import join
from edn.synth import synthesize
from edn.train.config import TrainConfig
from edn.train.run import train

log = logging.getLogger(__name__)


def _demo_train() -> TrainConfig:
    return load_config(TrainConfig, "cpu_small")


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
    device: str = "auto"     # where rendering and evaluation run: auto | cpu | cuda (edn.runtime)
    precision: str = "auto"  # auto | fp32 | bf16; training keeps its own (bf16 on GPU only)


def run_demo(cfg: DemoConfig) -> dict:
    import ray

    started = time.time()
    runtime = resolve_and_log(cfg.device, cfg.precision, "edn demo's rendering and evaluation")
    ray.init(ignore_reinit_error=True)
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

    step(f"3/5 training {target}'s body GAN with temporal smoothing on Ray Train ({cfg.train.steps} steps)")
    tcfg = dataclasses.replace(cfg.train, dataset_url=join(out, "dataset"), target=target)
    train(tcfg)
    step(f"3/5 training {target}'s face GAN on the frozen body generator ({cfg.face_steps} steps)")
    trained = train(dataclasses.replace(tcfg, stage="face", steps=cfg.face_steps, checkpoint_every=cfg.face_steps))

    step(f"4/5 transferring {source}'s dance onto {target} (registry: {trained['model_name']}@{tcfg.alias})")
    model = load_registered(trained["model_name"], tcfg.alias, trained["tracking_uri"], runtime.device,
                            runtime.precision)
    video_url = join(out, "transfer.mp4")
    transfer(tcfg.dataset_url, source, model, video_url)

    step("5/5 evaluating on held-out target frames against the nearest-neighbour baseline")
    metrics = evaluate_and_report(tcfg.dataset_url, model, trained["model_name"], out, trained["tracking_uri"],
                                  gate=True, links={"transfer video (source | pose | output)": "transfer.mp4",
                                                    "metrics": "metrics.json"}, sources=[source],
                                  runtime=runtime)
    return {**metrics, "model_name": trained["model_name"], "model_version": model.version,
            "body_steps": model.meta.body_steps, "face_steps": model.meta.face_steps,
            "perceptual_loss": model.meta.perceptual_loss, "demo_seconds": round(time.time() - started, 1),
            "transfer": video_url, "tracking_uri": trained["tracking_uri"]}


def _steps(started: float):
    def step(message: str) -> None:
        log.info("[%5.0fs] %s", time.time() - started, message)
    return step
