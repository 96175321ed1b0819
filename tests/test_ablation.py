"""`edn ablate` end to end on tiny networks: three variants trained with one budget, scored on
the same held-out frames beside the nearest-neighbour baseline, one table and one report."""
import json

import pytest

from edn.cli import main
from edn.data.ingest import IngestConfig, ingest

pytestmark = pytest.mark.slow  # trains or runs jobs: started first (tests/conftest.py)


def test_ablation_table_has_every_row(ray_cluster, dancers, tmp_path, capsys):
    dataset = str(tmp_path / "dataset")
    assert ingest(dancers[:1], dataset, IngestConfig(estimator="groundtruth", width=64, height=64))["done"]
    out = tmp_path / "ablation"
    code = main(["ablate", "--dataset", dataset, "--target", "dancer_00", "--out", str(out), "--face-steps", "2",
                 "--set", "steps=3", "--set", "batch_size=2", "--set", "num_workers=0", "--set", "log_every=1",
                 "--set", "allow_no_vgg=true",
                 "--set", f"storage_path={tmp_path / 'ray'}", "--set", f"tracking_uri=sqlite:///{tmp_path}/m.db",
                 "--set", "generator.ngf=4", "--set", "generator.n_downsample=2", "--set", "generator.n_blocks=1",
                 "--set", "discriminator.ndf=4", "--set", "discriminator.num_D=1", "--set", "discriminator.n_layers=2",
                 "--set", "face_generator.ngf=4", "--set", "face_generator.n_downsample=1",
                 "--set", "face_generator.n_blocks=1", "--set", "face_discriminator.ndf=4",
                 "--set", "face_discriminator.n_layers=1"])
    assert code == 0
    printed, table = capsys.readouterr()  # the JSON result on stdout, alone; the table on stderr
    rows = ["frame_by_frame", "temporal", "temporal+face", "nearest_neighbour", "mean_frame"]
    assert json.loads(printed)["rows"] == rows
    assert all(f"\n{r} " in table for r in rows) and "body SSIM" in table and "pose distance" in table
    result = json.loads((out / "ablation.json").read_text())
    assert list(result["methods"]) == rows and result["budget"] == {"body_steps": 3, "face_steps": 2}
    assert result["methods"]["temporal+face"]["face_ssim"] is not None
    report = (out / "ablation.html").read_text()
    assert report.count("<tr>") == len(rows) + 1
    # every variant's own training losses: the body stage for two, the face stage for the third
    assert [c for c in ("frame_by_frame: body losses", "temporal: body losses", "temporal+face: face losses",
                        "temporal+face: body losses") if f'alt="{c}"' in report] == \
        ["frame_by_frame: body losses", "temporal: body losses", "temporal+face: face losses"]
