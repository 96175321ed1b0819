"""Where and in what precision a verb runs its models: `--device auto|cpu|cuda` and
`--precision auto|fp32|bf16`, resolved once per verb (and in each catalog render actor, on its
own hardware) into a Runtime that is logged and recorded with the results.

auto device: a GPU when one is visible. auto precision: bf16 where the device computes it
natively (a GPU with bf16; a CPU with AVX512-BF16 or AMX, as torch reports it), else fp32: bf16
emulated on other CPUs is slower than fp32. bf16 runs the generators under torch.autocast, their
convolution and linear layers' weights cast to bf16 once (for_autocast); their outputs are turned
back to float32 before they become pixels. Training keeps its own rule (bf16
autocast on GPU; on CPU only with cpu_bf16: edn.train.loop.train_precision).

A process that renders on CPU keeps the memory its forward passes free (keep_freed_memory).
"""
from __future__ import annotations

import contextlib
import copy
import ctypes
import dataclasses
import functools
import logging
import platform
import resource
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from edn.errors import ConfigError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Runtime:
    device: str            # cpu | cuda
    precision: str         # fp32 | bf16
    precision_reason: str  # why this precision: asked for, or what auto found

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.precision)

    def record(self) -> dict:
        """{device, precision, precision_reason}: the columns and keys results record it as."""
        return asdict(self)


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    """The context to run a model's forward pass in, on `device` ("cpu", "cuda") in `precision`."""
    if precision == "bf16":
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# the layers whose parameters autocast casts to the lower precision at every call (convolutions
# and matmuls are on both CPU and CUDA autocast's lower-precision lists)
AUTOCAST_LAYERS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose1d,
                   torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d, torch.nn.Linear)


def for_autocast(module: torch.nn.Module, precision: str) -> torch.nn.Module:
    """`module` for inference under autocast(precision): with bf16, a copy whose convolution and
    linear layers hold their parameters in bf16. Autocast casts those layers' fp32 parameters at
    every call and keeps a cast only until its context exits (a frame, when frames are rendered
    one at a time): 6% of a 128x128 render on an AVX512-BF16 CPU (docs/performance.md). Cast
    once, they give the same bits (tests/test_runtime.py). fp32: the module itself."""
    if precision != "bf16":
        return module
    # deepcopy takes these layers' parameters from the memo, already cast: the fp32 ones are never copied
    layers = [layer for layer in module.modules() if isinstance(layer, AUTOCAST_LAYERS)]
    memo = {id(p): torch.nn.Parameter(p.detach().to(torch.bfloat16), requires_grad=p.requires_grad)
            for layer in layers for p in layer.parameters(recurse=False)}
    return copy.deepcopy(module, memo)


def native_bf16(device: str) -> tuple[bool, str]:
    """Whether `device` computes bf16 natively, and what torch reports that says so."""
    if device == "cuda":
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"GPU {name} computes bf16 natively"
        return False, f"GPU {name} has no native bf16"
    if torch.cpu._is_amx_tile_supported():
        return True, "CPU with AMX"
    if torch.cpu._is_avx512_bf16_supported():
        return True, "CPU with AVX512-BF16"
    return False, "CPU without AVX512-BF16 or AMX: bf16 would be emulated, slower than fp32"


def resolve(device: str = "auto", precision: str = "auto") -> Runtime:
    """The device and precision to run on here; ConfigError for an unknown choice, or cuda
    asked for where no GPU is visible."""
    if device not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    gpu = torch.cuda.is_available()
    if device == "cuda" and not gpu:
        raise ConfigError("device cuda was asked for, but torch sees no GPU here (use --device cpu or auto)")
    device = "cuda" if device == "auto" and gpu else "cpu" if device == "auto" else device
    if precision != "auto":
        return Runtime(device, precision, f"{precision} asked for")
    native, why = native_bf16(device)
    return Runtime(device, "bf16" if native else "fp32", f"auto: {why}")


def keep_to_cleared(runtime: Runtime, asked: str, cleared: Sequence[str]) -> Runtime:
    """The runtime to render a model in, given the precisions its evaluation cleared (tag
    edn.precisions, edn.eval.precision): with precision `asked` auto, auto's choice if cleared,
    else the first cleared (the one it was evaluated in). A precision asked for explicitly, or a
    model never evaluated, keeps `runtime`."""
    if asked != "auto" or not cleared:
        return runtime
    if runtime.precision in cleared:
        return dataclasses.replace(runtime, precision_reason=f"{runtime.precision_reason}; "
                                   f"the model's evaluation cleared {', '.join(cleared)}")
    return dataclasses.replace(runtime, precision=cleared[0], precision_reason=(
        f"the model was evaluated in {', '.join(cleared)} only (tag edn.precisions), so not in the "
        f"{runtime.precision} auto chose ({runtime.precision_reason})"))


def resolve_and_log(device: str = "auto", precision: str = "auto", who: str = "edn") -> Runtime:
    """resolve(), with the choice and its reason logged once."""
    runtime = resolve(device, precision)
    log.info("%s runs on %s in %s (%s)", who, runtime.device, runtime.precision, runtime.precision_reason)
    return runtime


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def page_faults() -> int:
    """This process's minor page faults so far: what keep_freed_memory saves shows here."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@functools.cache
def keep_freed_memory() -> bool:
    """From now on this process keeps the memory it frees in its heap for its next allocations
    (glibc; elsewhere nothing changes: False). By default glibc hands a forward pass's freed
    activations back to the OS once enough of them are free together, and the next pass takes
    them again, a page fault and a zeroed page every 4 KiB. Fixed here as glibc's own adaptive
    setting ends up (blocks up to 32 MiB from the heap) but never trimming the heap's free top;
    blocks larger than that keep their own mappings, as before. The price: the process holds on
    to its peak heap."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1))
