import pytest
import torch

from edn.models.losses import FeatureMatchingLoss, LSGANLoss
from edn.models.networks import DiscriminatorConfig, GeneratorConfig, GlobalGenerator, MultiscaleDiscriminator
from edn.train.step import BodyGANStep


def test_generator_shapes_and_range():
    G = GlobalGenerator(GeneratorConfig(ngf=8, n_downsample=3, n_blocks=2))
    y = G(torch.randn(2, 3, 64, 48))
    assert y.shape == (2, 3, 64, 48) and y.abs().max() <= 1 and G.stride == 8


def test_multiscale_discriminator_outputs():
    D = MultiscaleDiscriminator(DiscriminatorConfig(in_channels=6, ndf=8, n_layers=3, num_D=3))
    out = D(torch.randn(2, 6, 64, 64))
    assert len(out) == 3 and all(len(s) == 5 for s in out)  # first conv, 3 layers, prediction
    assert out[0][-1].shape[1] == 1
    # pix2pixHD padding: 64 -> 33 at the first scale; the next scale sees 32 -> 17
    assert out[0][0].shape[-1] == 33 and out[1][0].shape[-1] == 17


def test_losses():
    pred = [[torch.zeros(1, 4, 2, 2), torch.ones(1, 1, 3, 3)]] * 2
    assert LSGANLoss()(pred, True).item() == 0.0
    assert LSGANLoss()(pred, False).item() == 1.0
    # two scales, n_layers = len - 2 = 0 -> weight 4/(0+1)/2 = 2 per scale, one compared layer each
    fake = [[torch.ones(1, 4, 2, 2), torch.zeros(1, 1, 3, 3)]] * 2
    real = [[torch.zeros(1, 4, 2, 2), torch.zeros(1, 1, 3, 3)]] * 2
    assert FeatureMatchingLoss()(fake, real).item() == 4.0


def test_gan_step_updates_both_networks_and_leaves_d_trainable():
    torch.manual_seed(0)
    G = GlobalGenerator(GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1))
    D = MultiscaleDiscriminator(DiscriminatorConfig(ndf=8, n_layers=2, num_D=2))
    g0 = [p.clone() for p in G.parameters()]
    d0 = [p.clone() for p in D.parameters()]
    step = BodyGANStep(G, D, torch.optim.Adam(G.parameters(), 1e-3), torch.optim.Adam(D.parameters(), 1e-3),
                       {"G_gan": 1.0, "G_feat": 10.0, "G_l1": 0.0})
    losses = step(torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1)
    assert set(losses) == {"G_gan", "G_feat", "D_fake", "D_real"}  # no G_l1 at weight 0
    assert all(torch.isfinite(v) and not v.requires_grad for v in losses.values())
    assert all(not torch.equal(a, b) for a, b in zip(g0, G.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(d0, D.parameters()))
    assert all(p.requires_grad for p in D.parameters())


def test_generator_fits_a_mapping():
    """The step's G objective drives the output towards the real frames (losses fall)."""
    torch.manual_seed(0)
    G = GlobalGenerator(GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1))
    D = MultiscaleDiscriminator(DiscriminatorConfig(ndf=8, n_layers=2, num_D=1))
    step = BodyGANStep(G, D, torch.optim.Adam(G.parameters(), 2e-3, betas=(0.5, 0.999)),
                       torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999)),
                       {"G_gan": 1.0, "G_feat": 10.0})
    pose = torch.zeros(4, 3, 32, 32)
    pose[:, :, 8:24, 12:20] = 1.0
    real = -torch.ones(4, 3, 32, 32)
    real[:, 0, 8:24, 12:20] = 0.8
    before = (G(pose) - real).abs().mean().item()
    for _ in range(60):
        step(pose, real)
    after = (G(pose) - real).abs().mean().item()
    assert after < 0.5 * before, (before, after)


def test_learning_rate_schedule():
    from edn.train.config import TrainConfig
    from edn.train.loop import learning_rate
    cfg = TrainConfig(steps=100, lr=1e-3, lr_decay_start=0.5)
    assert [learning_rate(cfg, s) for s in (0, 50, 75, 99)] == pytest.approx([1e-3, 1e-3, 5e-4, 2e-5])
