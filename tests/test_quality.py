"""The trained model must beat the mean-training-frame baseline on held-out target frames:
proof that training learns the target's appearance from poses, not only the background.

Frame by frame (the paper's FBF ablation): at this budget (800 steps, 64x64) temporal smoothing
beat the baseline by +0.014 SSIM in one run and by only +0.0015 in another (the generator must
also learn to use its previous frame), too noisy for a bound; frame by frame it is steadier."""
import numpy as np
from mlflow import MlflowClient

from edn.data.ingest import IngestConfig, ingest
from edn.eval.heldout import evaluate_heldout
from edn.models.networks import DiscriminatorConfig, GeneratorConfig
from edn.registry import load_registered
from edn.synth import synthesize
from edn.train.config import TrainConfig
from edn.train.run import train

QUALITY_STEPS = 800   # about a minute on 2 cores at 64x64
QUALITY_MARGIN = 0.01  # measured: +0.016 SSIM after 600 steps of the same set-up


def test_model_beats_mean_frame_baseline(ray_cluster, tmp_path):
    videos = synthesize(str(tmp_path / "videos"), dancers=1, frames=240, size=(128, 128), seed=5)
    dataset = str(tmp_path / "dataset")
    assert ingest([v for v in videos if v.endswith(".mp4")], dataset,
                  IngestConfig(estimator="groundtruth", width=64, height=64))["done"] == ["dancer_00"]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = TrainConfig(dataset_url=dataset, target="dancer_00", temporal=False,
                      generator=GeneratorConfig(ngf=16, n_downsample=3, n_blocks=4),
                      discriminator=DiscriminatorConfig(ndf=32, n_layers=3, num_D=2), lambda_l1=10.0, allow_no_vgg=True,
                      steps=QUALITY_STEPS, batch_size=4, cpus_per_worker=1, torch_threads=2,
                      checkpoint_every=QUALITY_STEPS, image_every=QUALITY_STEPS,
                      storage_path=str(tmp_path / "ray"), tracking_uri=uri)
    result = train(cfg)
    # losses fall: the reconstruction term over the first and the last 50 steps (logged every 10)
    history = MlflowClient(uri).get_metric_history(result["run_id"], "G_l1")
    l1 = [m.value for m in sorted(history, key=lambda m: m.step)]
    print(f"G_l1 first 50 steps {np.mean(l1[:5]):.4f}, last 50 steps {np.mean(l1[-5:]):.4f}")
    assert len(l1) == QUALITY_STEPS // 10 and np.mean(l1[-5:]) < 0.7 * np.mean(l1[:5])
    metrics = evaluate_heldout(dataset, load_registered("edn-dancer_00", "candidate", uri))
    ssim = {name: row["body_ssim"] for name, row in metrics["methods"].items()}
    assert metrics["heldout_frames"] == 24
    print(f"held-out SSIM {ssim}")
    assert ssim["model"] > ssim["mean_frame"] + QUALITY_MARGIN, ssim
