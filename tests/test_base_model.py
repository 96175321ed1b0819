"""A base model on several dancers, a target fine-tuned from it, and a zero-shot render (issue 15):
real Ray Train runs, a real MLflow server, real videos."""
import dataclasses
import json
import logging
import os
import re

import numpy as np
import pandas as pd
import pytest
import torch
from mlflow import MlflowClient

from edn.cli import main
from edn.data.ingest import IngestConfig, ingest
from edn.data.reader import video_poses
from edn.data.reference import video_reference
from edn.errors import ConfigError, DataError
from edn.eval.heldout import EvalConfig
from edn.eval.onboarding import OnboardConfig, base_cost, run_onboarding
from edn.inference import load_model_dir, zero_shot
from edn.models.face import FaceGeneratorConfig, apply_face, face_discriminator_config
from edn.models.networks import DiscriminatorConfig, GeneratorConfig
from edn.pose.face import face_box
from edn.registry import export_model, load_registered
from edn.render.batch import CatalogConfig, render_catalog
from edn.render.catalog import CatalogRow, row_model
from edn.render.manifest import read_manifest
from edn.render.transfer import transfer
from edn.synth import synthesize
from edn.train.config import TrainConfig
from edn.train.init_from import base_weights
from edn.train.loop import build
from edn.train.run import train
from edn.video import read_frames

pytestmark = pytest.mark.slow  # trains or runs jobs: started first (tests/conftest.py)

# the base with appearance figures (off by default): the path of reference channels through training
# and rendering with most in it
TINY = dict(allow_no_vgg=True, lambda_l1=10.0,
            generator=GeneratorConfig(ngf=4, n_downsample=2, n_blocks=1, appearance=True),
            discriminator=DiscriminatorConfig(ndf=8, n_layers=2, num_D=1),
            face_generator=FaceGeneratorConfig(ngf=4, n_downsample=1, n_blocks=1),
            face_discriminator=face_discriminator_config(ndf=8, n_layers=1), batch_size=2,
            num_workers=0)  # Ray Train's local mode: tests/train_helpers.tiny_training


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three dancers at 64x64: the base learns the first two, the third is new to it."""
    home = tmp_path_factory.mktemp("base")
    videos = [f for f in synthesize(str(home / "videos"), dancers=3, frames=32, size=(128, 128), seed=11)
              if f.endswith(".mp4")]
    url = str(home / "dataset")
    assert len(ingest(videos, url, IngestConfig(estimator="groundtruth", width=64, height=64))["done"]) == 3
    return url, home


def _cfg(dataset, mlflow_server, tmp_path, **kw) -> TrainConfig:
    url, home = dataset
    return TrainConfig(**{**TINY, "dataset_url": url, "tracking_uri": mlflow_server,
                          "storage_path": str(home / "ray"), "steps": 4, "checkpoint_every": 4,
                          "image_every": 4, **kw})


@pytest.fixture(scope="module")
def base_run(ray_cluster, mlflow_server, dataset, tmp_path_factory):
    """edn-base trained on dancer_00 and dancer_01, once for the module."""
    return train(_cfg(dataset, mlflow_server, None, videos=["dancer_00", "dancer_01"]))


def test_base_fine_tune_lineage_and_zero_shot(base_run, mlflow_server, dataset, tmp_path, capsys, caplog):
    url, home = dataset
    assert base_run["model_name"] == "edn-base"
    base = load_registered("edn-base", "candidate", mlflow_server)
    assert base.meta.kind == "base" and sorted(base.meta.references) == ["dancer_00", "dancer_01"]
    assert base.body.references and set(base.discriminators) == {"body"}
    # both videos' pairs trained on: 2 x (29 frames before the held-out tail - 1)
    assert base_run["training_data"]["pairs"] == 2 * 28
    for video, frame in base.meta.references.items():  # the frame with the most keypoints seen, first of ties
        index, poses = video_poses(url, video)
        seen = (poses[:, :, 2] > 0).sum(1)[index < 29]
        assert frame == int(np.argmax(seen))

    # a new dancer, fine-tuned from the base: lr 0, so its weights must be the base's exactly; its
    # generator settings are the base's whatever the config says (here: no appearance figures)
    target = _cfg(dataset, mlflow_server, tmp_path, target="dancer_02", init_from="edn-base@candidate", lr=0.0,
                  generator=dataclasses.replace(TINY["generator"], appearance=False))
    with caplog.at_level(logging.WARNING, logger="edn.train.init_from"):
        run = train(target)
    assert re.search(r"edn-dancer_02 \(body stage\) takes the generator settings of edn-base version \d+, its "
                     r"base: appearance=False \(base: True\)", caplog.text)
    fine = load_registered("edn-dancer_02", "candidate", mlflow_server)
    assert fine.meta.generator == base.meta.generator
    for key, value in base.body.state_dict().items():
        assert torch.equal(fine.body.state_dict()[key], value), key
    version = base_run["version"]
    assert fine.meta.kind == "target" and fine.meta.init_from == f"edn-base@{version}"
    assert MlflowClient(mlflow_server).get_run(run["run_id"]).data.tags["edn.init_from"] == f"edn-base@{version}"
    reference = video_reference(url, "dancer_02", 29, (64, 64))
    assert fine.meta.references == {"dancer_02": reference.frame_index}
    assert np.array_equal(fine.reference, reference.stacked())  # kept in the model folder, lossless
    _, frames = fine.renderer()(video_poses(url, "dancer_01")[1][:3])
    assert frames.shape == (3, 64, 64, 3)
    # the discriminator starts afresh (the run's seeded initialisation), the base's only when asked
    as_run = dataclasses.replace(target, generator=fine.meta.generator)  # reference channels on, as the run sets
    fresh_D = build(as_run, torch.device("cpu"))[1].state_dict()
    for keep in (False, True):
        _, states, _, _ = base_weights(dataclasses.replace(as_run, base_discriminator=keep), mlflow_server, (64, 64))
        D = build(as_run, torch.device("cpu"), init=states)[1].state_dict()
        expected = base.discriminators["body"] if keep else fresh_D
        assert ("D" in states) == keep and all(torch.equal(D[k], v) for k, v in expected.items())

    # the face stage needs a base that has one
    with pytest.raises(ConfigError, match=r"edn-base version \d+ does not fit edn-dancer_02 \(face stage\).*no face"):
        train(dataclasses.replace(target, stage="face"))
    # the base's face GAN sees each video's reference face beside the frame's (face_generator.reference)
    train(_cfg(dataset, mlflow_server, tmp_path, videos=["dancer_00", "dancer_01"], stage="face", steps=2,
               checkpoint_every=2, face_generator=dataclasses.replace(TINY["face_generator"], reference=True)))
    base = load_registered("edn-base", "candidate", mlflow_server)
    assert set(base.discriminators) == {"body", "face"} and base.face is not None
    assert base.meta.face_generator.reference and base.face.net.model[1].in_channels == 9
    assert base.meta.face_references == base.meta.references and "face 2 steps from random weights on 2 videos" in \
        base.meta.lineage()
    train(dataclasses.replace(target, stage="face", steps=2, checkpoint_every=2,
                              face_generator=FaceGeneratorConfig(ngf=8, n_downsample=1, n_blocks=1)))
    fine = load_registered("edn-dancer_02", "candidate", mlflow_server)
    assert fine.meta.face_generator == base.meta.face_generator  # the base's face GAN, its settings
    assert fine.meta.face_init_from == f"edn-base@{int(version) + 1}" and fine.meta.init_from == f"edn-base@{version}"
    for key, value in base.face.state_dict().items():
        assert torch.equal(fine.face.state_dict()[key], value), key
    assert np.array_equal(fine.reference, reference.stacked())
    # its reference's face box, centred on the nose as every frame's, kept in the model folder
    index, poses = video_poses(url, "dancer_02")
    x0, y0, x1, y1 = face_box(poses[list(index).index(reference.frame_index)], 64, 64)
    assert np.array_equal(reference.face, reference.frame[y0:y1, x0:x1])
    assert np.array_equal(fine.reference_face, reference.face)
    # and what the face GAN draws depends on it
    crops = torch.rand(3, 1, 3, 64, 64) * 2 - 1
    box = torch.tensor([[x0, y0, x1, y1]])
    with torch.no_grad():
        faces = [apply_face(fine.face, crops[0], crops[1], box, reference_face=ref)[1]["residual"]
                 for ref in (torch.zeros(1, 3, y1 - y0, x1 - x0), crops[2, :, :, y0:y1, x0:x1])]
    assert not torch.equal(*faces)
    _, frames = fine.renderer()(video_poses(url, "dancer_01")[1][:3])
    assert frames.shape == (3, 64, 64, 3)
    # a model folder without it is refused by name, not read as an empty picture
    export_model("edn-dancer_02", "candidate", mlflow_server, str(tmp_path / "fine"))
    os.remove(tmp_path / "fine" / "reference_face.png")
    with pytest.raises(DataError, match=r"fine/reference_face.png: missing or not an image"):
        load_model_dir(str(tmp_path / "fine"))

    # zero-shot: the base and the new dancer's video alone, said plainly
    shot = zero_shot(base, url, "dancer_02")
    assert shot.meta.kind == "zero-shot" and shot.meta.target == "dancer_02" and shot.meta.holdout_start == 29
    assert np.array_equal(shot.reference, reference.stacked()) and np.array_equal(shot.reference_face, reference.face)
    result = transfer(url, "dancer_01", shot, str(tmp_path / "zero.mp4"))
    assert result["frames"] == 32 and "ZERO-SHOT base render" in result["zero_shot"]
    capsys.readouterr()
    assert main(["render", "--dataset", url, "--target", "dancer_02", "--source", "dancer_00", "--model",
                 "edn-base", "--tracking-uri", mlflow_server, "--out", str(tmp_path / "cli.mp4")]) == 0
    assert "ZERO-SHOT" in json.loads(capsys.readouterr().out)["zero_shot"]
    with pytest.raises(ConfigError, match="is a target model, not a base"):
        zero_shot(fine, url, "dancer_00")


def test_fine_tuning_errors_name_both_models(base_run, mlflow_server, dataset, tmp_path):
    """Each mismatch stops the run on the driver, before a worker starts, naming both models."""
    if not MlflowClient(mlflow_server).search_registered_models("name='edn-dancer_02'"):
        train(_cfg(dataset, mlflow_server, tmp_path, target="dancer_02", init_from="edn-base@candidate"))
    with pytest.raises(ConfigError, match=r"edn-dancer_02 version \d+ does not fit edn-dancer_01 \(body stage\): "
                                          r"it is a target model of 'dancer_02', not a base"):
        train(_cfg(dataset, mlflow_server, tmp_path, target="dancer_01", init_from="edn-dancer_02@candidate"))
    with pytest.raises(ConfigError, match=r"edn-base version \d+ does not fit .* renders 64x64, this run trains "
                                          r"at 32x32"):
        train(_cfg(dataset, mlflow_server, tmp_path, target="dancer_01", init_from="edn-base@candidate", downscale=2))
    with pytest.raises(ConfigError, match="give no target or init_from"):
        train(_cfg(dataset, mlflow_server, tmp_path, videos=["dancer_00"], init_from="edn-base@candidate"))
    # a face GAN shown the reference's face needs a body that has a reference: a target from scratch has none
    train(_cfg(dataset, mlflow_server, tmp_path, target="dancer_01", model_name="edn-scratch", steps=2,
               checkpoint_every=2))
    with pytest.raises(ConfigError, match=r"face_generator.reference: edn-scratch@candidate's body renders from no "
                                          "appearance reference"):
        train(_cfg(dataset, mlflow_server, tmp_path, target="dancer_01", model_name="edn-scratch", stage="face",
                   face_generator=dataclasses.replace(TINY["face_generator"], reference=True)))


def test_onboard_curve_smoke(base_run, mlflow_server, dataset, tmp_path):
    """The curve for one held-out dancer at tiny budgets: every row scored, the mean table, the
    report and MLflow's copy; a rerun into the same folder trains nothing again. One fine-tuning
    fraction and one from scratch, body only: each row is a Ray Train run in local
    mode (tests/run_cpu.py measures one); the second curve's row is body and face."""
    url, _ = dataset
    cfg = _cfg(dataset, mlflow_server, tmp_path, steps=4)
    onboard = OnboardConfig(targets=["dancer_02"], base=f"edn-base@{base_run['version']}", fractions=[0.5],
                            scratch_fractions=[1.0], face_steps=0)
    eval_cfg = EvalConfig()
    result = run_onboarding(cfg, onboard, str(tmp_path / "curve"), eval_cfg)
    rows = result["targets"]["dancer_02"]
    assert list(rows) == ["zero-shot", "nearest_neighbour", "mean_frame", "fine-tune 50%", "scratch 100%"]
    assert [rows[r]["steps"] for r in ("zero-shot", "fine-tune 50%", "scratch 100%")] == [0, 2, 4]
    assert all(0 < r["body_ssim"] <= 1 for r in rows.values())
    assert result["mean"]["scratch 100%"]["body_ssim"] == rows["scratch 100%"]["body_ssim"]
    assert result["base_cost"]["videos"] == 2 and result["base_cost"]["run_seconds"] > 0
    client = MlflowClient(mlflow_server)
    tuned = load_registered("edn-dancer_02-fine-tune-50", "candidate", mlflow_server)
    assert tuned.meta.init_from == onboard.base and tuned.meta.body_steps == 2
    assert load_registered("edn-dancer_02-scratch-100", "candidate", mlflow_server).meta.init_from is None
    html = (tmp_path / "curve" / "onboarding.html").read_text()
    assert "Mean over dancers" in html and html.count("data:image/png;base64,") >= 1
    run = client.search_runs([client.get_experiment_by_name("edn").experiment_id],
                             f"tags.`edn.base` = '{onboard.base}'")[0]
    assert run.data.metrics["fine-tune_50pct.body_ssim"] == rows["fine-tune 50%"]["body_ssim"]
    versions = len(client.search_model_versions("name='edn-dancer_02-scratch-100'"))
    again = run_onboarding(cfg, onboard, str(tmp_path / "curve"), eval_cfg)
    assert json.dumps(again["targets"]) == json.dumps(result["targets"])  # NaN where mediapipe found nobody
    assert len(client.search_model_versions("name='edn-dancer_02-scratch-100'")) == versions
    with pytest.raises(ConfigError, match="--face-steps -1: give 0"):
        run_onboarding(cfg, dataclasses.replace(onboard, face_steps=-1), str(tmp_path / "curve"), eval_cfg)
    with pytest.raises(ConfigError, match="holds a curve with 0 face steps per row, not 2"):
        run_onboarding(cfg, dataclasses.replace(onboard, face_steps=2), str(tmp_path / "curve"), eval_cfg)
    # another curve in the same Ray storage trains its rows afresh, in runs of its own (the first's
    # run of the same row, finished, must not be resumed and registered again); its rows with a face
    # GAN on the row's body, from random weights (this base has none)
    other = run_onboarding(cfg, dataclasses.replace(onboard, scratch_fractions=[], face_steps=2),
                           str(tmp_path / "curve-b"), eval_cfg)
    retuned = load_registered("edn-dancer_02-fine-tune-50", "candidate", mlflow_server)
    assert retuned.meta.body_run_id != tuned.meta.body_run_id and retuned.meta.body_steps == 2
    assert retuned.meta.face_steps == 2 and retuned.meta.face_init_from is None and retuned.face is not None
    assert retuned.meta.init_from == onboard.base
    assert list(other["targets"]["dancer_02"])[-1] == "fine-tune 50%"
    assert other["targets"]["dancer_02"]["fine-tune 50%"]["face_steps"] == other["face_steps"] == 2
    assert "then 2 face GAN steps on it" in (tmp_path / "curve-b" / "onboarding.html").read_text()


def test_a_catalog_renders_a_base_zero_shot(base_run, mlflow_server, dataset, tmp_path):
    """A catalog row naming a base and a new performer's video renders it zero-shot, as `edn render`
    does, and says so; a base without a performer, a performer not in its dataset, and a trained
    model given one are refused by name, the other rows rendered."""
    url, _ = dataset
    base = f"edn-base@{base_run['version']}"
    columns = ["source", "dataset", "target", "output", "layout", "target_dataset", "target_video"]
    rows = [("dancer_00", url, base, "as_02.mp4", "output", url, "dancer_02"),
            ("dancer_00", url, base, "as_01.mp4", "output", url, "dancer_01"),
            ("dancer_00", url, base, "nobody.mp4", "output", "", ""),
            ("dancer_00", url, base, "missing.mp4", "output", url, "dancer_09"),
            ("dancer_00", url, base, "half.mp4", "output", "", "dancer_02")]
    pd.DataFrame(rows, columns=columns).to_csv(tmp_path / "catalog.csv", index=False)
    out = str(tmp_path / "catalog")
    # fp32, as the renders it is compared with below (auto would pick bf16 on a CPU with AVX512-BF16)
    result = render_catalog(str(tmp_path / "catalog.csv"), out,
                            CatalogConfig(tracking_uri=mlflow_server, actors=1, precision="fp32"))
    assert result["done"] == 2 and len(result["failed"]) == 3
    manifest = {os.path.basename(e["output"]): e for e in read_manifest(out)}
    for name, performer in (("as_02.mp4", "dancer_02"), ("as_01.mp4", "dancer_01")):
        assert manifest[name]["status"] == "done" and manifest[name]["frames"] == 32
        note = manifest[name]["zero_shot"]
        assert note.startswith("ZERO-SHOT base render") and performer in note
    assert "is a base model: give target_dataset and target_video" in manifest["nobody.mp4"]["error"]
    assert "zero-shot performer 'dancer_09'" in manifest["missing.mp4"]["error"]
    assert manifest["half.mp4"]["stage"] == "catalog" and "go together" in manifest["half.mp4"]["error"]
    assert "ZERO-SHOT" in (tmp_path / "catalog" / "index.html").read_text()
    # each row rendered its own performer: its video is the one `edn render` makes of that performer
    model = load_registered("edn-base", base_run["version"], mlflow_server)
    rendered = {}
    for performer in ("dancer_02", "dancer_01"):
        transfer(url, "dancer_00", zero_shot(model, url, performer), str(tmp_path / f"{performer}.mp4"),
                 layout="output")
        rendered[performer] = np.stack([f for _, _, f in read_frames(str(tmp_path / f"{performer}.mp4"))]).astype(float)
    for name, performer, other in (("as_02.mp4", "dancer_02", "dancer_01"), ("as_01.mp4", "dancer_01", "dancer_02")):
        frames = np.stack([f for _, _, f in read_frames(manifest[name]["output"])]).astype(float)
        own, wrong = np.abs(frames - rendered[performer]).mean(), np.abs(frames - rendered[other]).mean()
        per_frame = np.abs(frames - rendered[performer]).mean(axis=(1, 2, 3)).round(1).tolist()
        assert own < 2 and own < wrong / 3, (name, own, wrong, per_frame)
    # a trained target is not shown a performer
    row = CatalogRow(0, "dancer_00", url, "edn-dancer_02@1", "x.mp4", target_dataset=url, target_video="dancer_01")
    meta = dataclasses.replace(model.meta, kind="target", target="dancer_02")
    assert row_model(row, "edn-dancer_02@1", meta) == \
        "target_video is for a base model; edn-dancer_02@1 is a target model"


def test_export_in_half_and_import(base_run, mlflow_server, dataset, tmp_path, capsys):
    """A base exported in fp16 (what edn/assets/demo-base ships) and imported into a registry: about
    half the bytes, the same networks to fp16's rounding, one version however often it is imported,
    evaluated zero-shot there, and a folder that is not a model refused by name."""
    version, uri = base_run["version"], mlflow_server
    full = export_model("edn-base", version, uri, str(tmp_path / "full"))
    capsys.readouterr()
    assert main(["export-model", "--model", "edn-base", "--alias", version, "--out", str(tmp_path / "half"),
                 "--half", "--tracking-uri", uri]) == 0
    half = json.loads(capsys.readouterr().out)
    assert half["model"] == f"edn-base@{version}" and half["bytes"] < 0.6 * full["bytes"]
    imported = []
    for _ in range(2):
        assert main(["import-model", str(tmp_path / "half"), "--model", "edn-imported-base", "--tracking-uri",
                     uri]) == 0
        imported.append(json.loads(capsys.readouterr().out)["version"])
    assert imported == ["1", "1"]
    base, copy = load_registered("edn-base", version, uri), load_registered("edn-imported-base", "candidate", uri)
    assert copy.meta == base.meta
    for key, value in base.body.state_dict().items():
        assert torch.equal(copy.body.state_dict()[key], value.half().float()), key
    for key, value in base.discriminators["body"].items():
        assert copy.discriminators["body"][key].dtype == value.dtype
        assert torch.equal(copy.discriminators["body"][key], value.half().to(value.dtype)), key
    tags = MlflowClient(uri).get_model_version("edn-imported-base", "1").tags
    assert tags["edn.imported_from"] == str(tmp_path / "half")
    # in another registry, the base's training runs are not there: its cost in time is unknown, not 0 s
    elsewhere = f"sqlite:///{tmp_path}/elsewhere.db"
    assert main(["import-model", str(tmp_path / "half"), "--model", "edn-base", "--tracking-uri", elsewhere]) == 0
    cost = base_cost(TrainConfig(tracking_uri=elsewhere), load_registered("edn-base", "candidate", elsewhere))
    assert cost == {"videos": 2, "body_steps": 4, "face_steps": None, "run_seconds": None}
    # nor can its zero-shot evaluation be logged to them: it goes to the version's own run, the import's
    capsys.readouterr()
    assert main(["evaluate", "--dataset", dataset[0], "--target", "dancer_02", "--model", "edn-base", "--tracking-uri",
                 elsewhere, "--out", str(tmp_path / "zero-shot"), "--set", "compare_precision=false"]) == 0, \
        capsys.readouterr().err
    assert "ZERO-SHOT" in json.loads(capsys.readouterr().out)["zero_shot"]
    client = MlflowClient(elsewhere)
    run_id = client.get_model_version("edn-base", "1").run_id
    assert client.get_run(run_id).data.tags["edn.imported_from"] == str(tmp_path / "half")
    logged = {a.path for a in client.list_artifacts(run_id, "evaluation/zero-shot/dancer_02")}
    assert logged == {"evaluation/zero-shot/dancer_02/metrics.json", "evaluation/zero-shot/dancer_02/report.html"}
    assert main(["import-model", str(tmp_path), "--model", "edn-x", "--tracking-uri", uri]) == 2
    assert f"edn import-model: error: {tmp_path}: not a model folder" in capsys.readouterr().err
