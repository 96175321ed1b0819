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
