import dataclasses
import platform
import subprocess
import sys

import numpy as np
import pytest
import torch

from edn.errors import ConfigError
from edn.eval.precision import in_precision, precision_to_compare
from edn.inference import TargetModel, generate
from edn.models.body import BodyGenerator
from edn.models.networks import GeneratorConfig
from edn.runtime import Runtime, keep_to_cleared, resolve
from tests.test_models import META_16, _poses


def test_auto_picks_bf16_only_where_the_cpu_computes_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    auto = resolve()
    assert (auto.device, auto.precision) == ("cpu", "bf16" if native else "fp32")
    assert auto.precision_reason.startswith("auto: CPU ")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    plain = resolve("auto", "auto")
    assert plain.precision == "fp32" and "without AVX512-BF16 or AMX" in plain.precision_reason
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert resolve().record() == {"device": "cpu", "precision": "bf16", "precision_reason": "auto: CPU with AMX"}


def test_explicit_choices_are_honoured_and_bad_ones_are_config_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    asked = {"device": "cpu", "precision": "fp32", "precision_reason": "fp32 asked for"}
    assert resolve("cpu", "fp32").record() == asked
    assert resolve("cpu", "bf16").precision == "bf16"
    with pytest.raises(ConfigError, match="no GPU"):
        resolve("cuda")
    with pytest.raises(ConfigError, match="precision must be one of"):
        resolve("cpu", "fp16")
    with pytest.raises(ConfigError, match="device must be one of"):
        resolve("tpu")


@pytest.mark.parametrize("temporal", [False, True])
def test_bf16_renderer_runs_in_bf16_and_stays_close_to_fp32(temporal):
    torch.manual_seed(0)
    body = BodyGenerator(GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1), temporal).eval()
    meta = dataclasses.replace(META_16, width=32, height=32, temporal=temporal)
    seen = []
    body.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    poses = _poses(6, size=32)
    _, fp32 = TargetModel(body, None, meta, "test").renderer()(poses)
    assert set(seen) == {torch.float32}
    seen.clear()
    _, bf16 = TargetModel(body, None, meta, "test", precision="bf16").renderer()(poses)
    assert set(seen) == {torch.bfloat16} and bf16.dtype == np.uint8 and bf16.shape == fp32.shape
    # bf16 keeps 8 bits of mantissa: a pixel in [0, 255] moves by about one step (measured: mean
    # 0.5-0.6, max 3-4). An untrained temporal generator compounds that through its fed-back
    # frames (mean 3.5 by the sixth), so only its first frame is held to the same tolerance.
    frames = slice(0, 1) if temporal else slice(None)
    diff = np.abs(bf16[frames].astype(int) - fp32[frames].astype(int))
    assert diff.mean() < 1.0 and diff.max() <= 5, (diff.mean(), diff.max())


def test_bf16_weights_are_cast_once_and_give_autocasts_bits():
    """A bf16 renderer runs a copy of the generators with their convolutions' weights cast to
    bf16 once (edn.runtime.for_autocast), instead of autocast casting them at every frame: the
    same output bits as autocast over the fp32 weights, the model's own weights left in fp32."""
    torch.manual_seed(0)
    body = BodyGenerator(GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1), True).eval()
    model = TargetModel(body, None, dataclasses.replace(META_16, width=32, height=32), "test", precision="bf16")
    cast = model.renderer().body
    assert cast is not body and model.renderer().body is cast  # made once per precision
    convs = [m for m in cast.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert convs and {p.dtype for m in convs for p in m.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in body.parameters()} == {torch.float32}
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    prev = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(generate(cast, x, prev, "bf16"), generate(body, x, prev, "bf16"))
    assert in_precision(model, "fp32").renderer().body is body  # fp32: the network itself


def test_auto_keeps_to_the_precisions_a_models_evaluation_cleared():
    chose_bf16 = Runtime("cpu", "bf16", "auto: CPU with AMX")
    kept = keep_to_cleared(chose_bf16, "auto", ["fp32"])  # evaluated in fp32, bf16 not cleared
    assert kept.precision == "fp32" and kept.precision_reason.startswith("the model was evaluated in fp32 only")
    assert "not in the bf16 auto chose (auto: CPU with AMX)" in kept.precision_reason
    both = keep_to_cleared(chose_bf16, "auto", ["fp32", "bf16"])
    assert both.precision == "bf16" and both.precision_reason.endswith("; the model's evaluation cleared fp32, bf16")
    assert keep_to_cleared(chose_bf16, "auto", []) == chose_bf16  # never evaluated
    asked = Runtime("cpu", "bf16", "bf16 asked for")
    assert keep_to_cleared(asked, "bf16", ["fp32"]) == asked  # an explicit choice is the user's


def test_the_other_precision_is_compared_where_native_or_when_asked(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    body = BodyGenerator(GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1), False)
    fp32, bf16 = TargetModel(body, None, META_16, "1"), TargetModel(body, None, META_16, "1", precision="bf16")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)  # bf16 emulated
    other, skipped = precision_to_compare(fp32, compare=True, emulated=False)
    assert other is None and skipped == ("bf16 not compared on cpu (CPU without AVX512-BF16 or AMX: bf16 would "
                                         "be emulated, slower than fp32; compare_emulated=false): the model is "
                                         "cleared for fp32 only")
    assert precision_to_compare(fp32, compare=True, emulated=True) == ("bf16", None)
    assert precision_to_compare(bf16, compare=True, emulated=False) == ("fp32", None)  # fp32 is never emulated
    assert precision_to_compare(fp32, compare=False, emulated=True) == (None, None)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert precision_to_compare(fp32, compare=True, emulated=False) == ("bf16", None)


_FAULTS = """
import dataclasses, resource, torch
from edn.inference import TargetModel
from edn.models.body import BodyGenerator
from edn.models.networks import GeneratorConfig
from tests.test_models import META_16

torch.manual_seed(0)
body = BodyGenerator(GeneratorConfig(ngf=16, n_downsample=4, n_blocks=2), temporal=True).eval()
x = torch.rand(4, 3, 128, 128)

def faults_per_pass():
    with torch.no_grad():
        body(x, x)  # the first pass takes new pages either way
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(3):
            body(x, x)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 3

returned = faults_per_pass()
TargetModel(body, None, dataclasses.replace(META_16, width=128, height=128), "test").renderer()
print(returned, faults_per_pass())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_a_cpu_renderer_keeps_freed_memory_instead_of_faulting_it_back_in():
    # in a process of its own: the setting is process-wide and for good
    out = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True, check=True).stdout
    returned, kept = map(float, out.split())
    # measured: ~9,000 page faults a pass of this generator as glibc sets itself, ~130 once the
    # renderer has set it (glibc 2.36)
    assert returned > 3000 and kept < returned / 10, (returned, kept)


def test_training_runs_in_bf16_on_cpu_only_when_asked_and_native():
    """cpu_bf16 puts the training step under bf16 autocast where this CPU computes bf16 natively;
    without it, or on a CPU without, the step stays fp32."""
    from edn.models.networks import DiscriminatorConfig
    from edn.runtime import native_bf16
    from edn.train.config import TrainConfig
    from edn.train.loop import build, make_step

    cpu = torch.device("cpu")
    cfg = TrainConfig(generator=GeneratorConfig(ngf=4, n_downsample=1, n_blocks=1),
                      discriminator=DiscriminatorConfig(ndf=4, n_layers=1, num_D=1))
    nets = build(cfg, cpu)
    for asked in (False, True):
        step = make_step(dataclasses.replace(cfg, cpu_bf16=asked), *nets, cpu)
        with step.autocast():
            assert torch.is_autocast_enabled("cpu") == (asked and native_bf16("cpu")[0])
