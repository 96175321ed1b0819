"""A registered model's metadata (edn_model.json): the files training wrote before ModelMeta
existed load into it, and what it writes keeps every key they had."""
import dataclasses

import pytest

from edn.errors import DataError
from edn.models.face import FaceGeneratorConfig
from edn.models.meta import ModelMeta, PairCounts, TrainingData
from edn.models.networks import GeneratorConfig
from edn.pose.normalize import FloorStats

# edn_model.json as edn/train/run.py wrote it at c057a14: a body stage, then the face stage on it
BODY_COUNTS = {"frames": 43, "frames_without_pose": 2, "pairs": 40, "pairs_without_pose": 2,
               "pairs_without_face_box": 0}
FACE_COUNTS = {"frames": 43, "frames_without_pose": 2, "pairs": 37, "pairs_without_pose": 2,
               "pairs_without_face_box": 3}
BODY_FILE = {
    "format_version": 2, "target": "dancer_00", "width": 64, "height": 64, "fps": 24.0,
    "generator": {"in_channels": 3, "out_channels": 3, "ngf": 8, "n_downsample": 2, "n_blocks": 1,
                  "n_local_enhancers": 0, "n_blocks_local": 3, "position_channels": True, "composite": True},
    "temporal": True, "face_generator": None,
    "floor_stats": {"close": 60.5, "far": 52.25, "height_close": 41.0, "height_far": 33.5, "width": 64, "height": 64},
    "floor_stats_error": None, "dataset_url": "/data/dataset", "holdout_start": 43,
    "body_run_id": "0123abcd", "body_steps": 60, "perceptual_loss": False,
    "training_data": {"body": BODY_COUNTS}, "stage": "body",
}
FACE_FILE = {
    **BODY_FILE, "face_generator": {"ngf": 8, "n_downsample": 2, "n_blocks": 1, "residual_scale": 2.0},
    "face_run_id": "4567ef01", "face_steps": 4, "face_perceptual_loss": False, "body_version": "1",
    "training_data": {"body": BODY_COUNTS, "face": FACE_COUNTS}, "stage": "face",
}

BODY = ModelMeta(
    target="dancer_00", width=64, height=64, fps=24.0,
    generator=GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1), temporal=True,
    floor_stats=FloorStats(60.5, 52.25, 41.0, 33.5, 64, 64), dataset_url="/data/dataset", holdout_start=43,
    body_run_id="0123abcd", body_steps=60, perceptual_loss=False, stage="body",
    training_data=TrainingData(body=PairCounts(43, 2, 40, 2, 0)))
FACE = dataclasses.replace(
    BODY, face_generator=FaceGeneratorConfig(ngf=8, n_downsample=2, n_blocks=1), face_run_id="4567ef01",
    face_steps=4, face_perceptual_loss=False, body_version="1", stage="face",
    training_data=TrainingData(body=PairCounts(43, 2, 40, 2, 0), face=PairCounts(43, 2, 37, 2, 3)))


@pytest.mark.parametrize("written, meta", [(BODY_FILE, BODY), (FACE_FILE, FACE)], ids=["body", "face"])
def test_todays_files_load_and_are_written_back_with_their_keys(written, meta, tmp_path):
    assert ModelMeta.from_json(written) == meta
    again = meta.to_json()
    # every key today's readers know, with its value; a stage not trained is written as null
    kept = [k for k in written if k not in ("training_data", "generator", "face_generator")]
    assert {k: again[k] for k in kept} == {k: written[k] for k in kept}
    for nested in [k for k in ("generator", "face_generator") if written[k]]:
        assert {k: again[nested][k] for k in written[nested]} == written[nested]
    if written["face_generator"]:  # a face GAN from before it could see a reference's face (issue 15)
        assert again["face_generator"]["reference"] is False
    else:
        assert again["face_generator"] is None
    # what base models added (issue 15), at the values that mean "a target trained from random weights"
    assert (again["kind"], again["references"], again["init_from"], again["generator"]["reference_channels"]) == \
        ("target", {}, None, False)
    assert again["training_data"] == {"face": None, **written["training_data"]}
    meta.write(str(tmp_path / "edn_model.json"))
    assert ModelMeta.read(str(tmp_path / "edn_model.json")) == meta


def test_older_models_load_with_the_defaults_of_what_they_lack():
    older = {k: v for k, v in BODY_FILE.items() if k not in ("floor_stats_error", "training_data")}
    added = ("position_channels", "composite")
    older["generator"] = {k: v for k, v in BODY_FILE["generator"].items() if k not in added}
    meta = ModelMeta.from_json(older)
    # trained before position channels and compositing existed
    assert meta.generator.position_channels is False and meta.generator.composite is False
    assert meta.training_data == TrainingData() and meta.floor_stats_error is None
    assert meta == dataclasses.replace(
        BODY, generator=dataclasses.replace(BODY.generator, position_channels=False, composite=False),
        training_data=TrainingData())


def test_no_floor_statistics():
    meta = ModelMeta.from_json({**BODY_FILE, "floor_stats": None, "floor_stats_error": "no ankle seen"})
    assert meta.floor_stats is None and meta.floor_stats_error == "no ankle seen"


def test_other_formats_and_keys_are_refused():
    with pytest.raises(ValueError, match="model format 3 is not 2"):
        ModelMeta.from_json({**BODY_FILE, "format_version": 3}, "m/edn_model.json")
    with pytest.raises(ValueError, match=r"missing \['holdout_start'\]"):
        ModelMeta.from_json({k: v for k, v in BODY_FILE.items() if k != "holdout_start"})
    with pytest.raises(ValueError, match=r"unknown \['colour'\]"):
        ModelMeta.from_json({**BODY_FILE, "colour": "blue"})


def test_a_file_that_is_not_json_is_refused_by_name(tmp_path):
    path = tmp_path / "edn_model.json"
    path.write_text("{")
    with pytest.raises(DataError, match=f"{path}: not a model's metadata \\(not JSON"):
        ModelMeta.read(str(path))


def test_base_and_fine_tuned_models_round_trip(tmp_path):
    base = dataclasses.replace(BODY, target="", kind="base", references={"dancer_00": 7, "dancer_01": 0},
                               generator=dataclasses.replace(BODY.generator, reference_channels=True))
    tuned = dataclasses.replace(base, target="dancer_05", kind="target", references={"dancer_05": 3},
                                init_from="edn-base@2", face_init_from="edn-base@3")
    for meta in (base, tuned):
        meta.write(str(tmp_path / "edn_model.json"))
        assert ModelMeta.read(str(tmp_path / "edn_model.json")) == meta
    assert base.lineage() == "body 60 steps from random weights on 2 videos, without the VGG19 loss"
    assert dataclasses.replace(tuned, face_steps=4, perceptual_loss=True).lineage() == \
        "body 60 steps fine-tuned from edn-base@2; face 4 steps fine-tuned from edn-base@3"
    assert FACE.lineage() == ("body 60 steps from random weights, without the VGG19 loss; "
                              "face 4 steps from random weights")
