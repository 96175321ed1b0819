import argparse
import json
import os
import platform

import pytest

from edn.bench.render import headline_actors
from edn.bench.settings import add_bench_parsers, bench_settings
from edn.cli import main
from edn.runtime import native_bf16

pytestmark = pytest.mark.slow  # trains or runs jobs: started first (tests/conftest.py)


def _settings(argv: list[str]):
    benches = argparse.ArgumentParser().add_subparsers(dest="bench")
    add_bench_parsers(benches)
    return bench_settings(benches._name_parser_map[argv[0]].parse_args(argv[1:], argparse.Namespace(bench=argv[0])))


def test_bench_settings_read_like_every_verbs(tmp_path):
    """Defaults, --config, --smoke's preset, the flags, then --set: each later source wins; sizes
    and lists may be written as text anywhere."""
    config = tmp_path / "render.yaml"
    config.write_text("size: 96x48\nframes: 40\nrows: 3\nactors: [2, 1]\n")
    b = _settings(["render", "--config", str(config), "--frames", "30", "--set", "rows=4", "--no-profile"])
    assert (b.size, b.frames, b.rows, b.actors, b.profile, b.ngf) == ((96, 48), 30, 4, (1, 2), False, 64)
    b = _settings(["render", "--smoke", "--set", "size=[32, 16]", "--set", "actors=3"])
    assert (b.size, b.actors, b.ngf, b.smoke) == ((32, 16), (3,), 8, True)
    b = _settings(["train", "--sizes", "64x32,128x64", "--set", "stages=body", "--no-scaling"])
    assert (b.sizes, b.stages, b.scaling, b.pipeline) == (((64, 32), (128, 64)), ("body",), False, True)
    b = _settings(["ingest", "--stored-size", "32x32", "--concurrency", "1,2,4"])
    assert (b.stored_size, b.concurrency, b.size) == ((32, 32), (1, 2, 4), (256, 256))


@pytest.mark.parametrize("argv, message", [
    (["bench", "render", "--set", "targets=3"], "1 <= targets <= rows"),
    (["bench", "train", "--stages", "body,tail"], "stages among body,face"),
    (["bench", "ingest", "--size", "64by64"], "expected WIDTHxHEIGHT"),
    (["bench", "ingest", "--set", "frame=3"], "unknown settings ['frame']"),
])
def test_bench_settings_a_user_got_wrong(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("edn bench: error:") and message in err


def test_bench_ingest_smoke(ray_cluster, tmp_path, capsys):
    """The seconds-long version of `edn bench ingest` (about 40 s on 2 idle cores) runs and writes
    its figures; their values are not judged here."""
    assert main(["bench", "ingest", "--smoke", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "KEY RATIO" in err and json.loads(out)
    result = json.loads((tmp_path / "ingest.json").read_text())
    ratio, memory = result["key_ratios"]
    assert ratio["name"].startswith("ingest fps / detector-only fps") and ratio["value"] > 0
    for label in ("short", "long"):
        assert result["figures"][f"memory_groundtruth_{label}"]["peak"]["ingest"] > 0
    assert memory["value"] > 0
    assert result["figures"]["memory_long_video"]["frames"] > result["figures"]["memory_short_video"]["frames"]
    profile = result["figures"]["profile_s"]
    for phase in ("plan", "decode", "detect", "resize", "JPEG encode", "rows + Parquet write", "commit_video"):
        assert 0 < profile[phase] < profile["whole"], phase
    assert result["machine"]["cpu_count"] >= 1 and "ray" in result["machine"]["packages"]


def test_bench_train_smoke(ray_cluster, tmp_path, capsys):
    """The seconds-long version of `edn bench train` (64x32 frames, one round of each part) runs
    and writes its figures; speeds are not judged here, only that every ratio is a positive number."""
    assert main(["bench", "train", "--smoke", "--set", "allreduce_reps=1", "--out", str(tmp_path)]) == 0
    assert "KEY RATIO" in capsys.readouterr().err
    result = json.loads((tmp_path / "train.json").read_text())
    names = [k["name"] for k in result["key_ratios"]]
    assert any(n.startswith("edn step / eager images/s (body") for n in names)
    assert any(n.startswith("edn step / eager images/s (face") for n in names)
    assert any("Ray Data / in memory" in n for n in names) and any("2 workers / 1 worker" in n for n in names)
    for k in result["key_ratios"]:
        assert isinstance(k["value"], float) and k["value"] > 0, k
    figures = result["figures"]
    for stage in ("body", "face"):
        step = figures[f"step_{stage}_64x32"]
        assert step["flops"]["eager"] > 0 and step["flops"]["edn"] > 0 and step["images_per_s"]["edn"] > 0
        assert sum(step["phases_s"].values()) > 0
        # the step in bf16 too, where this CPU computes it natively (edn.runtime); else not timed, and said why
        assert ("bf16_ratio" in step) == native_bf16("cpu")[0] and step.get("bf16_ratio", 1) > 0
    assert figures["pipeline"]["batches_per_epoch"] > 0 and figures["pipeline"]["ratio_steady"] > 0
    scaling = figures["scaling"]
    assert set(scaling["runs"]) == {"1", "2"}  # JSON keys: worker counts
    assert scaling["grad_bytes"]["G"] > 0 and scaling["allreduce_s"] > 0 and scaling["bus_GBps"] > 0
    assert result["config"]["smoke"] and result["config"]["allreduce_reps"] == 1
    assert result["machine"]["cpu_count"] >= 1 and "torch" in result["machine"]["packages"]
    assert result["machine"]["cpu_native_bf16"] == native_bf16("cpu")[1]  # which CPU the figures came from


def test_the_render_headline_leaves_a_core_to_the_driver_and_ray():
    """The headline job is the most actors whose threads leave a core free (2 cores: 1 actor of 1
    thread); the fewest where none does."""
    assert [headline_actors([1, 2], 1, cores) for cores in (1, 2, 3, 8)] == [1, 1, 2, 2]
    assert headline_actors([1, 2], 2, 4) == 1 and headline_actors([2, 4], 1, 2) == 2


def test_bench_render_smoke(ray_cluster, tmp_path, capsys):
    """The seconds-long version of `edn bench render` (64x64, a tiny generator) renders its catalog
    with 1 and 2 actors and writes its figures; speeds are not judged, only that they are positive."""
    assert main(["bench", "render", "--smoke", "--out", str(tmp_path)]) == 0
    assert "KEY RATIO" in capsys.readouterr().err
    result = json.loads((tmp_path / "render.json").read_text())
    names = [k["name"] for k in result["key_ratios"]]
    auto = result["figures"]["runtime"]["precision"]
    top = result["figures"]["headline_actors"]
    assert top == headline_actors([1, 2], 1, os.cpu_count()) and len(names) == 2
    assert names[0].startswith(f"catalog job fps / ({top} x bare generator fps, {auto})")
    for k in result["key_ratios"]:
        assert isinstance(k["value"], float) and k["value"] > 0, k
    figures = result["figures"]
    # fp32 always; bf16 beside it (and their ratio) only where the CPU computes it natively
    precisions = {"fp32", "bf16"} if auto == "bf16" else {"fp32"}
    assert set(figures["bare"]) == precisions and all(figures["bare"][p]["fps"] > 0 for p in precisions)
    assert ("bf16_over_fp32" in figures) == (auto == "bf16")
    # two halves per precision, after a pass as glibc sets itself and one with freed memory kept
    assert len(figures["bare_cpu_per_wall"]) == 2 * len(precisions) + 2 and min(figures["bare_cpu_per_wall"]) > 0
    assert len(figures["bare_faults_per_frame"]) == len(figures["bare_cpu_per_wall"])
    kept = figures["memory_kept"]
    assert kept["glibc"] == (platform.libc_ver()[0] == "glibc") and min(kept["fps_returned"], kept["fps_kept"]) > 0
    for actors in ("1", "2"):  # JSON keys: actor counts
        job = figures["jobs"][actors]
        assert job["frames"] == figures["output_frames"] and job["fps"] > 0 and job["audio"] == ["copied"]
        assert job["actor_faults_per_frame"] > 0  # the actors' page faults, their start-up's at least
        # 2 rows of 24 frames in chunks of at most 12: 2 chunks a row, the second 2 warm-up frames early
        assert (job["chunks"], job["rendered_frames"]) == (4, figures["output_frames"] + 2 * 2)
    assert figures["scaling"] > 0
    phases = figures["profile"]["phases_s"]
    for phase in ("Parquet read + JPEG decode", "pose normalization", "figure drawing", "generator",
                  "join (frames copied, audio)"):
        assert phases[phase] > 0, phase
    assert figures["profile"]["beside_s"]["compose + staging encode (H.264), writer thread"] > 0
    assert figures["profile"]["model_load_s"] > 0
    assert result["config"]["smoke"] and "torch" in result["machine"]["packages"]
