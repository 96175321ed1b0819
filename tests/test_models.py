import dataclasses
import json

import numpy as np
import pytest
import torch

from edn.inference import TargetModel
from edn.models.body import BodyGenerator, _positions
from edn.models.losses import FeatureMatchingLoss, LSGANLoss
from edn.models.meta import ModelMeta
from edn.models.networks import DiscriminatorConfig, GeneratorConfig, GlobalGenerator, MultiscaleDiscriminator
from edn.train.step import GANStep, body_judged

# what a registered model carries, for networks made in the test at 16x16
META_16 = ModelMeta(target="t", width=16, height=16, fps=30.0, generator=GeneratorConfig(), temporal=True,
                    floor_stats=None, dataset_url="", holdout_start=0, body_run_id="", body_steps=0,
                    perceptual_loss=False, stage="body")


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


def _batch(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.rand(n, 3, size, size, generator=g) * 2 - 1 for k in ("pose_prev", "pose", "image_prev", "image")}


@pytest.mark.parametrize("temporal", [True, False])
def test_gan_step_updates_both_networks_and_leaves_d_trainable(temporal):
    torch.manual_seed(0)
    G = BodyGenerator(GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1), temporal)
    D = MultiscaleDiscriminator(DiscriminatorConfig(in_channels=12 if temporal else 6, ndf=8, n_layers=2, num_D=2))
    g0 = [p.clone() for p in G.parameters()]
    d0 = [p.clone() for p in D.parameters()]
    step = GANStep(lambda b: body_judged(G, b, temporal), D, torch.optim.Adam(G.parameters(), 1e-3),
                   torch.optim.Adam(D.parameters(), 1e-3), {"G_gan": 1.0, "G_feat": 10.0, "G_l1": 0.0})
    losses = step(_batch())
    assert set(losses) == {"G_gan", "G_feat", "D_fake", "D_real"}  # no G_l1 at weight 0
    assert all(torch.isfinite(v) and not v.requires_grad for v in losses.values())
    assert all(not torch.equal(a, b) for a, b in zip(g0, G.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(d0, D.parameters()))
    assert all(p.requires_grad for p in D.parameters())


def _poses(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    poses = np.zeros((n, 137, 3), np.float32)
    poses[:, :25, :2] = rng.uniform(2, size - 2, (n, 25, 2))
    poses[:, :25, 2] = 1.0
    return poses


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def _image(y: torch.Tensor) -> np.ndarray:
    return ((y.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def test_temporal_generator_feeds_back_its_previous_frame():
    torch.manual_seed(0)
    G = BodyGenerator(GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1), temporal=True).eval()
    model = TargetModel(G, None, META_16, "test")
    poses = _poses(5)
    figures, seq = model.renderer()(poses)
    assert seq.shape == (5, 16, 16, 3)
    x = _tensor(figures)
    with torch.no_grad():
        first = G(x[:1])                          # blank previous frame
        second = G(x[1:2], first)
        assert np.array_equal(seq[0], _image(first)[0]) and np.array_equal(seq[1], _image(second)[0])
        assert not np.array_equal(seq[1], _image(G(x[1:2]))[0])  # the previous frame matters
    # rendering in two calls of one stream, carrying the last frame, equals one call
    render = model.renderer()
    assert np.array_equal(np.concatenate([render(poses[:2])[1], render(poses[2:])[1]]), seq)
    judged = body_judged(G, _batch(), temporal=True)
    assert judged.d_fake.shape == (2, 12, 32, 32) and judged.fake.shape == (4, 3, 32, 32)


def test_frames_without_a_pose_show_the_empty_scene_and_feed_it_forward():
    torch.manual_seed(0)
    G = BodyGenerator(GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1), temporal=True).eval()
    plate = np.random.default_rng(1).integers(0, 255, (16, 16, 3), np.uint8)
    poses = _poses(4)
    poses[1:3] = 0  # the source's dancer left the frame
    _, out = TargetModel(G, None, META_16, "test", plate).renderer()(poses)
    assert np.array_equal(out[1], plate) and np.array_equal(out[2], plate)
    # frame 3 comes from the plate, as if the video had shown the empty scene before it
    figures, _ = TargetModel(G, None, META_16, "test").renderer()(poses[3:])
    with torch.no_grad():
        y = G(_tensor(figures), _tensor(plate[None]))
    assert np.array_equal(out[3], _image(y)[0])
    # a model registered before plates renders those frames with the generator, as it did
    _, old = TargetModel(G, None, META_16, "test").renderer()(poses)
    assert not np.array_equal(old[1], plate)


def test_generator_fits_a_mapping():
    """The step's G objective drives the output towards the real frames (losses fall)."""
    torch.manual_seed(0)
    G = BodyGenerator(GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1), temporal=False)
    D = MultiscaleDiscriminator(DiscriminatorConfig(ndf=8, n_layers=2, num_D=1))
    step = GANStep(lambda b: body_judged(G, b, False), D, torch.optim.Adam(G.parameters(), 2e-3, betas=(0.5, 0.999)),
                   torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999)), {"G_gan": 1.0, "G_feat": 10.0})
    pose = torch.zeros(4, 3, 32, 32)
    pose[:, :, 8:24, 12:20] = 1.0
    real = -torch.ones(4, 3, 32, 32)
    real[:, 0, 8:24, 12:20] = 0.8
    batch = {"pose_prev": pose, "pose": pose, "image_prev": real, "image": real}
    before = (G(pose) - real).abs().mean().item()
    for _ in range(60):
        step(batch)
    after = (G(pose) - real).abs().mean().item()
    assert after < 0.5 * before, (before, after)


def test_learning_rate_schedule():
    from edn.train.config import TrainConfig
    from edn.train.loop import learning_rate
    cfg = TrainConfig(steps=100, lr=1e-3, lr_decay_start=0.5)
    assert [learning_rate(cfg, s) for s in (0, 50, 75, 99)] == pytest.approx([1e-3, 1e-3, 5e-4, 2e-5])


def test_local_enhancer_is_coarse_to_fine():
    from edn.models.networks import LocalEnhancer
    torch.manual_seed(0)
    fine_cfg = GeneratorConfig(ngf=4, n_downsample=2, n_blocks=1, n_local_enhancers=1, n_blocks_local=1)
    G = LocalEnhancer(fine_cfg)
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    y = G(x)
    assert y.shape == (2, 3, 32, 48) and y.abs().max() <= 1 and G.stride == 8
    # a global generator trained at half resolution (ngf * 2) loads into it: same features
    coarse = GlobalGenerator(GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1))
    G.load_global(coarse.state_dict())
    half = torch.nn.functional.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
    assert torch.equal(G.global_net(half), coarse.model[:-3](half))
    assert len(G.global_parameters()) == len(list(coarse.parameters())) - 2  # its output conv dropped


def test_position_channels_carry_x_and_y(tmp_path):
    from edn.inference import load_model_dir, write_model_dir
    pos = _positions(torch.zeros(2, 3, 4, 5))
    assert pos.shape == (2, 2, 4, 5)
    assert torch.equal(pos[1, 0, 3], torch.linspace(-1, 1, 5))
    assert torch.equal(pos[0, 1, :, 2], torch.linspace(-1, 1, 4))
    cfg = GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1)
    assert BodyGenerator(cfg, temporal=True).net.model[1].in_channels == 8      # pose, previous frame, x, y
    assert BodyGenerator(cfg, temporal=False).net.model[1].in_channels == 5
    # a model registered before the setting existed: its config lacks the key and loads without them
    old_cfg = dataclasses.replace(cfg, position_channels=False)
    old = BodyGenerator(old_cfg, temporal=True)
    write_model_dir(str(tmp_path), old.state_dict(), dataclasses.replace(META_16, generator=old_cfg))
    stored = json.loads((tmp_path / "edn_model.json").read_text())
    del stored["generator"]["position_channels"]
    (tmp_path / "edn_model.json").write_text(json.dumps(stored))
    loaded = load_model_dir(str(tmp_path)).body
    assert not loaded.positions and loaded.net.model[1].in_channels == 6
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.equal(loaded(x), old.eval()(x))


def test_a_reference_model_lays_its_picture_over_the_empty_scene(tmp_path):
    cfg = GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1, reference_channels=True)
    G = BodyGenerator(cfg, temporal=True).eval()
    assert G.net.model[-2].out_channels == 4  # RGB and opacity
    reference, pose = torch.rand(1, 9, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    opacity = G.net.model[-2].bias
    with torch.no_grad():
        opacity[3] = -1e4  # transparent: the frame is the reference's scene, whatever the pose
        assert torch.equal(G(pose, None, reference), reference[:, :3].expand(2, -1, -1, -1))
        opacity[3] = 1e4   # opaque: the network's picture alone
        assert torch.equal(G(pose, None, reference), G.net(torch.cat(
            [pose, torch.zeros_like(pose), _positions(pose), reference.expand(2, -1, -1, -1)], 1))[:, :3])
    # a model without reference channels, or a base registered before compositing: the picture is the frame
    assert BodyGenerator(dataclasses.replace(cfg, reference_channels=False), True).net.model[-2].out_channels == 3
    assert BodyGenerator(dataclasses.replace(cfg, composite=False), True).net.model[-2].out_channels == 3


def test_appearance_figures_are_three_more_input_channels():
    cfg = GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1, reference_channels=True, appearance=True)
    G = BodyGenerator(cfg, temporal=True).eval()
    # pose, previous frame, x and y, the reference's 9, the appearance figure's 3
    assert G.net.model[1].in_channels == 3 + 3 + 2 + 9 + 3
    reference, pose = torch.rand(1, 9, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    with pytest.raises(ValueError, match="appearance figures"):
        G(pose, None, reference)
    appearance = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert not torch.equal(G(pose, None, reference, appearance), G(pose, None, reference, -appearance))
    # without reference channels the setting does nothing: a model from scratch has no reference to colour from
    assert BodyGenerator(dataclasses.replace(cfg, reference_channels=False), True).net.model[1].in_channels == 8
