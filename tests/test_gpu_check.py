"""edn.bench.gpu_check, the GPU check prepared for a machine with torch but without Ray, MLflow and
the rest: its --quick run on CPU, in a Python from which those packages are hidden."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

# What the GPU machine lacks (issue 16): importing any of them there, even through edn, fails.
ABSENT = ("ray", "mlflow", "mediapipe", "av", "skimage", "fsspec", "gcsfs", "pandas", "yaml", "kubernetes")

# Each finder wrapped so the absent packages are not found, as where they are not installed. Not a
# finder that raises: torch asks importlib.util.find_spec("pandas") whether it is there, and
# expects None, not an error, where it is not.
RUN_WITHOUT = """
import runpy, sys
ABSENT = {absent!r}

class Hiding:
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ABSENT:
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

    def invalidate_caches(self):
        getattr(self.finder, "invalidate_caches", lambda: None)()

assert not set(ABSENT) & {{m.partition(".")[0] for m in sys.modules}}
sys.meta_path[:] = [Hiding(f) for f in sys.meta_path]
runpy.run_module("edn.bench.gpu_check", run_name="__main__", alter_sys=True)
"""

VARIANTS = {"eager", "edn", "edn fp32", "edn NCHW", "edn fp32 NCHW", "edn foreach Adam", "edn compiled"}


def test_gpu_check_quick_on_cpu_without_the_absent_packages(tmp_path):
    out = tmp_path / "x.json"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", RUN_WITHOUT.format(absent=ABSENT), "--device", "cpu", "--quick",
                           "--threads", "1", "--out", str(out)], cwd=root, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "results:" in proc.stdout and "edn compiled" in proc.stdout  # the table
    r = json.loads(out.read_text())
    assert r["complete"] and r["forbidden_loaded"] == []
    assert r["device"]["type"] == "cpu" and r["peak"] is None and r["torch"]
    assert r["git"] is None or r["git"]["commit"]  # None outside a git checkout, no failure

    render = r["render"]
    for precision in ("fp32", "bf16"):
        assert render[precision]["images_per_s"] > 0 and render[precision]["mfu"] is None
    assert render["bf16"]["settings"]["bf16_autocast"] and not render["fp32"]["settings"]["bf16_autocast"]
    assert math.isfinite(render["max_abs_diff"]) and 0 <= render["max_abs_diff"] <= 2  # outputs in [-1, 1]

    (size, train), = r["train"].items()
    assert size == "64x32" and train["batch"] == 2
    assert set(train["variants"]) == VARIANTS
    for name, v in train["variants"].items():
        if "error" in v:  # only torch.compile may fail, and says why
            assert name == "edn compiled" and isinstance(v["error"], str) and v["error"]
            continue
        assert v["images_per_s"] > 0 and v["ratio_to_eager"] > 0 and v["flops_per_step"] > 0, name
        assert v["mfu"] is None and v["peak_used"] is None, name
    assert train["variants"]["eager"]["settings"]["adam"] == "for-loop"
    assert train["variants"]["edn compiled"]["settings"]["compile"] == "eager"  # --quick's backend


def test_gpu_peaks_by_device_name_and_mfu(monkeypatch):
    """The dense peak a GPU's name selects, and MFU against the peak of the precision a variant
    computes in (fp32 convolutions in TF32, cuDNN's default): what the CPU run cannot reach."""
    import torch

    from edn.bench.gpu_check import figures, peak_of
    bf16 = {"NVIDIA H200": 989.4, "NVIDIA H200 NVL": 835.5, "NVIDIA H100 80GB HBM3": 989.4, "NVIDIA H100 PCIe": 756.5,
            "NVIDIA H100 NVL": 835.5, "NVIDIA A100-SXM4-80GB": 312.0, "NVIDIA L4": 121.0, "NVIDIA L40S": 362.1,
            "NVIDIA L40": None, "Tesla T4": None}
    for name, peak in bf16.items():
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_, name=name: name)
        found = peak_of(torch.device("cuda"))
        assert (found and found["tflops"]["bf16"]) == peak, name
    assert peak_of(torch.device("cpu")) is None

    records = {"edn": {"settings": {"bf16_autocast": True}}, "edn fp32": {"settings": {"bf16_autocast": False}}}
    peak = {"tflops": {"bf16": 100.0, "tf32": 50.0, "fp32": 10.0}}
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    figures(records, {"edn": [0.5, 0.4, 0.6], "edn fp32": [1.0]}, 4, dict.fromkeys(records, 10**13), peak, "edn fp32")
    assert records["edn"]["images_per_s"] == 8 and records["edn"]["ratio_to_edn_fp32"] == 2
    assert (records["edn"]["peak_used"], records["edn"]["mfu"]) == ("bf16", 0.2)
    assert (records["edn fp32"]["peak_used"], records["edn fp32"]["mfu"]) == ("tf32", 0.2)
