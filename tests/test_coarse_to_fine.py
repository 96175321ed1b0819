"""pix2pixHD's coarse-to-fine training through edn's own runs: a global generator trained at
half resolution, then a local enhancer at full resolution initialised from it."""
import numpy as np
import pytest
import torch

from edn.data.ingest import IngestConfig, ingest
from edn.eval.heldout import EvalConfig, evaluate_heldout
from edn.models.networks import DiscriminatorConfig, GeneratorConfig
from edn.registry import load_registered
from edn.train.config import TrainConfig
from edn.train.run import train

pytestmark = pytest.mark.slow  # trains or runs jobs: started first (tests/conftest.py)


def test_local_enhancer_starts_from_the_coarse_global_generator(ray_cluster, dancers, tmp_path):
    dataset = str(tmp_path / "dataset")
    assert ingest(dancers[:1], dataset, IngestConfig(estimator="groundtruth", width=64, height=64))["done"]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    base = dict(dataset_url=dataset, target="dancer_00", allow_no_vgg=True, temporal=False,
                discriminator=DiscriminatorConfig(ndf=8, n_layers=2, num_D=1), steps=4, batch_size=2, num_workers=0,
                checkpoint_every=4, image_every=4, storage_path=str(tmp_path / "ray"), tracking_uri=uri)
    train(TrainConfig(**base, model_name="edn-dancer_00-coarse", downscale=2,
                      generator=GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1)))
    coarse = load_registered("edn-dancer_00-coarse", "candidate", uri)
    assert coarse.size == (32, 32) and coarse.floor.width == 32
    # scored at its own scale
    assert evaluate_heldout(dataset, coarse, EvalConfig(compare_precision=False))["heldout_frames"] == 5

    fine_cfg = GeneratorConfig(ngf=4, n_downsample=2, n_blocks=1, n_local_enhancers=1, n_blocks_local=1)
    train(TrainConfig(**base, generator=fine_cfg, init_global_from="edn-dancer_00-coarse@candidate",
                      fix_global_steps=4))
    fine = load_registered("edn-dancer_00", "candidate", uri)
    assert fine.size == (64, 64)
    # the global part was held still for all 4 steps: the coarse weights, output layer dropped
    coarse_state = coarse.body.net.state_dict()
    for key, value in fine.body.net.global_net.state_dict().items():
        assert torch.equal(value, coarse_state[key]), key
    assert fine.renderer()(np.zeros((1, 137, 3), np.float32))[1].shape == (1, 64, 64, 3)
