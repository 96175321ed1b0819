import json

from edn.cli import main


def test_bench_ingest_smoke(ray_cluster, tmp_path, capsys):
    """The seconds-long version of `edn bench ingest` (about 40 s on 2 idle cores) runs and writes
    its figures; their values are not judged here."""
    assert main(["bench", "ingest", "--smoke", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "KEY RATIO" in out
    result = json.loads((tmp_path / "ingest.json").read_text())
    ratio, memory = result["key_ratios"]
    assert ratio["name"].startswith("ingest fps / detector-only fps") and ratio["value"] > 0
    for label in ("short", "long"):
        assert result["figures"][f"memory_groundtruth_{label}"]["peak"]["ingest"] > 0
    assert memory["value"] > 0
    assert result["figures"]["memory_long_video"]["frames"] > result["figures"]["memory_short_video"]["frames"]
    assert result["machine"]["cpu_count"] >= 1 and "ray" in result["machine"]["packages"]


def test_bench_train_smoke(ray_cluster, tmp_path, capsys):
    """The seconds-long version of `edn bench train` (64x32 frames, one round of each part) runs
    and writes its figures; speeds are not judged here, only that every ratio is a positive number."""
    assert main(["bench", "train", "--smoke", "--out", str(tmp_path)]) == 0
    assert "KEY RATIO" in capsys.readouterr().out
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
    assert figures["pipeline"]["batches_per_epoch"] > 0 and figures["pipeline"]["ratio_steady"] > 0
    scaling = figures["scaling"]
    assert set(scaling["runs"]) == {"1", "2"}  # JSON keys: worker counts
    assert scaling["grad_bytes"]["G"] > 0 and scaling["allreduce_s"] > 0 and scaling["bus_GBps"] > 0
    assert scaling["projection"]["NVLink 4, 8x H100 SXM in a node"]["per_n"]["8"]["images_per_s"] > 0
    assert result["config"]["smoke"] and result["machine"]["cpu_count"] >= 1 and "torch" in result["machine"]["packages"]


def test_bench_render_smoke(ray_cluster, tmp_path, capsys):
    """The seconds-long version of `edn bench render` (64x64, a tiny generator) renders its catalog
    with 1 and 2 actors and writes its figures; speeds are not judged, only that they are positive."""
    assert main(["bench", "render", "--smoke", "--out", str(tmp_path)]) == 0
    assert "KEY RATIO" in capsys.readouterr().out
    result = json.loads((tmp_path / "render.json").read_text())
    names = [k["name"] for k in result["key_ratios"]]
    assert names[0].startswith("catalog job fps / (2 x bare generator fps)") and len(names) == 2
    for k in result["key_ratios"]:
        assert isinstance(k["value"], float) and k["value"] > 0, k
    figures = result["figures"]
    assert figures["bare"]["fps"] > 0 and figures["rendered_frames"] > figures["output_frames"] > 0
    for actors in ("1", "2"):  # JSON keys: actor counts
        job = figures["jobs"][actors]
        assert job["frames"] == figures["output_frames"] and job["fps"] > 0 and job["audio"] == ["copied"]
    assert figures["scaling"] > 0 and figures["profile"]["phases_s"]["generator"] > 0
    assert result["config"]["smoke"] and "torch" in result["machine"]["packages"]
