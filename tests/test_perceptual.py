"""The VGG19 perceptual loss and its weight loading (edn.models.perceptual).

No ImageNet VGG19 weights exist on this machine, so the tests save torchvision's real VGG19
architecture with seeded random weights in torchvision's state_dict format and check that the
loader finds that file where it should, loads exactly those tensors, and rejects what is not one.
"""
from __future__ import annotations

import os

import fsspec
import pytest
import torch
import torchvision
from torch.nn import functional as F

from edn.models import perceptual
from edn.models.perceptual import (
    PerceptualWeightsInvalid,
    PerceptualWeightsMissing,
    VGGPerceptualLoss,
    load_vgg19_features,
    perceptual_status,
)

FILENAME = "vgg19-dcbb9e9d.pth"  # what torchvision downloads; the module derives it from the URL


@pytest.fixture(scope="module")
def saved_vgg(tmp_path_factory):
    """torchvision's VGG19 (seeded random weights), its state_dict saved as torchvision's file is."""
    torch.manual_seed(1234)
    model = torchvision.models.vgg19(weights=None).eval()
    path = tmp_path_factory.mktemp("vgg") / FILENAME
    torch.save(model.state_dict(), path)
    state = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("features.")}
    return model, str(path), state


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub dir, through $TORCH_HOME as a user would set it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = torch.hub.get_dir()
    assert hub == str(tmp_path / "torch" / "hub"), "torch.hub.set_dir was called elsewhere in this process"
    return hub


def _assert_features_equal(features, state):
    loaded = features.state_dict()
    assert sorted(loaded) == sorted(k[len("features."):] for k in state)
    for k, v in state.items():
        assert torch.equal(loaded[k[len("features."):]], v), k


def test_filename_comes_from_torchvision():
    assert perceptual.VGG19.filename == FILENAME
    assert perceptual.VGG19.url == torchvision.models.VGG19_Weights.IMAGENET1K_V1.url


def test_loads_a_local_file(saved_vgg):
    _, path, state = saved_vgg
    features = load_vgg19_features(path)
    _assert_features_equal(features, state)
    assert not features.training
    assert all(not p.requires_grad for p in features.parameters())
    status = perceptual_status(path)
    assert status["available"] and status["source"] == path


def test_loads_features_only_from_memory_url(saved_vgg):
    _, _, state = saved_vgg
    url = "memory://edn-test-perceptual/vgg19-features.pth"
    fs = fsspec.filesystem("memory")
    with fs.open("/edn-test-perceptual/vgg19-features.pth", "wb") as f:
        torch.save(state, f)
    try:
        _assert_features_equal(load_vgg19_features(url), state)
        assert perceptual_status(url)["available"]
    finally:
        fs.rm("/edn-test-perceptual", recursive=True)


def test_finds_torchvisions_cache(saved_vgg, hub_dir):
    _, path, state = saved_vgg
    os.makedirs(os.path.join(hub_dir, "checkpoints"))
    cached = os.path.join(hub_dir, "checkpoints", FILENAME)
    os.link(path, cached)
    assert perceptual.VGG19.cache_path() == cached
    status = perceptual_status()
    assert status == {"available": True, "source": cached, "reason": status["reason"]}
    _assert_features_equal(load_vgg19_features(), state)
    # torchvision itself looks at the same file: found there, nothing is downloaded
    tv = torch.hub.load_state_dict_from_url(perceptual.VGG19.url, weights_only=True, progress=False)
    assert torch.equal(tv["features.0.weight"], state["features.0.weight"])


def test_missing_cache_raises_naming_the_path(hub_dir):
    cached = os.path.join(hub_dir, "checkpoints", FILENAME)
    with pytest.raises(PerceptualWeightsMissing) as info:
        load_vgg19_features()
    msg = str(info.value)
    assert cached in msg and perceptual.VGG19.url in msg and "vgg_weights_url" in msg
    status = perceptual_status()
    assert status["available"] is False and status["source"] == cached and cached in status["reason"]
    with pytest.raises(PerceptualWeightsMissing):
        VGGPerceptualLoss.from_weights()


def test_missing_url_raises_naming_it(tmp_path, hub_dir):
    for url in (str(tmp_path / "nope.pth"), "memory://edn-test-perceptual/nope.pth"):
        with pytest.raises(PerceptualWeightsMissing, match=url):
            load_vgg19_features(url)
        status = perceptual_status(url)
        assert status["available"] is False and status["source"] == url and url in status["reason"]


def test_corrupt_or_wrong_file_raises_naming_it(saved_vgg, tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a torch checkpoint")
    with pytest.raises(PerceptualWeightsInvalid, match=str(corrupt)):
        load_vgg19_features(str(corrupt))

    # a VGG16 (another architecture, same key names): strict loading rejects it
    vgg16 = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in torchvision.models.vgg.make_layers(
        torchvision.models.vgg.cfgs["D"]).state_dict().items()}, vgg16)
    with pytest.raises(PerceptualWeightsInvalid, match=str(vgg16)):
        load_vgg19_features(str(vgg16))

    # VGG19 with a layer missing, or one too many: strict loading rejects both
    state = saved_vgg[2]
    for name, broken in (("truncated", {k: v for k, v in state.items() if not k.startswith("features.34.")}),
                         ("extra", {**state, "features.37.weight": torch.zeros(1)})):
        bad = tmp_path / f"{name}.pth"
        torch.save(broken, bad)
        with pytest.raises(PerceptualWeightsInvalid, match=str(bad)):
            load_vgg19_features(str(bad))

    # some other model's state_dict
    other = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), other)
    with pytest.raises(PerceptualWeightsInvalid, match=str(other)):
        load_vgg19_features(str(other))

    # not a state_dict at all
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(PerceptualWeightsInvalid, match=str(tensor)):
        load_vgg19_features(str(tensor))


@pytest.fixture(scope="module")
def loss_fn(saved_vgg):
    return VGGPerceptualLoss.from_weights(saved_vgg[1])


def _images(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, 32, 32, generator=g) * 2 - 1


def test_zero_for_identical_positive_for_different(loss_fn):
    x = _images(0)
    assert loss_fn(x, x.clone()).item() == 0.0
    assert loss_fn(x, _images(1)).item() > 0.0


def test_equals_pix2pixhd_weighted_sum_by_hand(saved_vgg, loss_fn):
    """sum_i w_i * L1(relu_i_1(fake), relu_i_1(real)), w = 1/32 .. 1, on ImageNet-normalised input,
    computed here with torchvision's own VGG19 module."""
    model = saved_vgg[0]
    fake, real = _images(2), _images(3)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def relus(x):
        h, out = ((x + 1) / 2 - mean) / std, []
        for i, layer in enumerate(model.features):
            h = layer(h.clone())
            if i in (1, 6, 11, 20, 29):  # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
                out.append(h)
        return out

    with torch.no_grad():
        terms = [F.l1_loss(f, r) for f, r in zip(relus(fake), relus(real))]
        expected = sum(w * t for w, t in zip([1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0], terms))
        got = loss_fn(fake, real)
    assert all(t > 0 for t in terms)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    # the weighting matters: an unweighted sum is a different number
    assert abs(got.item() - sum(terms).item()) > 1e-3 * got.item()


def test_gradient_reaches_fake_only(loss_fn):
    fake = _images(4).requires_grad_(True)
    real = _images(5).requires_grad_(True)
    loss_fn.train()  # stays frozen
    assert not loss_fn.training and not any(m.training for m in loss_fn.modules())
    loss_fn(fake, real).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert real.grad is None  # real features are detached
    params = list(loss_fn.parameters())
    assert len(params) == 2 * 13  # conv weights and biases up to relu5_1 (conv5_1 is the 13th)
    assert all(not p.requires_grad and p.grad is None for p in params)
