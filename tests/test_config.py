import json
import re

import pytest

from edn.config import from_dict, load_config, preset_names, to_dict
from edn.errors import ConfigError
from edn.train.config import TrainConfig
from edn.train.resume import SETTINGS_FILE, record_start, resumes


def test_file_and_overrides(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("target: alice\nsteps: 10\ngenerator:\n  ngf: 16\n")
    cfg = load_config(TrainConfig, str(path), ["generator.n_blocks=2", "lr=0.001", "use_gpu=true"])
    assert (cfg.target, cfg.steps, cfg.generator.ngf, cfg.generator.n_blocks) == ("alice", 10, 16, 2)
    assert cfg.lr == 0.001 and cfg.use_gpu is True
    assert cfg.registry_name == "edn-alice" and cfg.ray_run_name == "edn-alice-body"  # one run per stage
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg
    # a command's own flags win over the file, and --set over both
    cfg = load_config(TrainConfig, str(path), ["steps=30"], flags={"target": "bob", "steps": 20})
    assert (cfg.target, cfg.steps) == ("bob", 30)


def test_a_run_started_before_a_setting_existed_resumes_with_its_default(tmp_path):
    cfg = TrainConfig(target="alice", storage_path=str(tmp_path))
    record_start(cfg)
    settings = tmp_path / cfg.ray_run_name / SETTINGS_FILE
    older = json.loads(settings.read_text())
    del older["recolour_lightness"]  # as a run started before c199bcf wrote it
    settings.write_text(json.dumps(older))
    assert resumes(cfg)
    # its default is what it started with: another value is still another run
    with pytest.raises(ConfigError, match="started with recolour_lightness=False; this command gives "
                                          "recolour_lightness=True"):
        resumes(TrainConfig(target="alice", storage_path=str(tmp_path), recolour_lightness=True))


def test_unknown_setting_is_named():
    with pytest.raises(ValueError, match="stepz"):
        load_config(TrainConfig, None, ["stepz=3"])


def test_ablation_presets():
    assert {"frame_by_frame", "temporal", "face"} <= set(preset_names())
    fbf, ts, face = (load_config(TrainConfig, name) for name in ("frame_by_frame", "temporal", "face"))
    assert (fbf.stage, fbf.temporal) == ("body", False) and (ts.stage, ts.temporal) == ("body", True)
    assert face.stage == "face" and face.body_model == "candidate"


def test_a_nested_setting_keeps_the_fields_own_defaults():
    # the face discriminator's default has one scale, its class two: setting ndf keeps one
    cfg = load_config(TrainConfig, None, ["face_discriminator.ndf=32"])
    assert (cfg.face_discriminator.ndf, cfg.face_discriminator.num_D, cfg.face_discriminator.in_channels) == (32, 1, 6)
    assert TrainConfig().face_discriminator.num_D == 1 and TrainConfig().discriminator.num_D == 2
    small = load_config(TrainConfig, "cpu_small")
    face = small.face_discriminator
    assert (face.ndf, face.n_layers, face.num_D) == (32, 2, 1)


def test_values_are_taken_as_their_settings_types_or_named():
    # YAML reads 5e-5 as text: a float setting takes it as the number meant (it reached Adam as text)
    cfg = load_config(TrainConfig, None, ["lr=5e-5", "lambda_l1=10", "steps=300.0", "body_model=3"])
    assert (cfg.lr, type(cfg.lambda_l1), cfg.steps, type(cfg.steps)) == (5e-5, float, 300, int)
    assert cfg.body_model == "3"  # a registered version, as text
    for override, named in [("steps=abc", "setting steps: expected a whole number, not 'abc'"),
                            ("steps=true", "setting steps: expected a whole number, not True"),
                            ("steps=2.5", "setting steps"), ("lr=fast", "setting lr: expected a number"),
                            ("use_gpu=maybe", "setting use_gpu: expected true or false"),
                            ("videos=dancer_00", "setting videos: expected a list"),
                            ("target=yes", "setting target: expected text, not True (quote it"),
                            ("target=1.10", "setting target: expected text, not 1.1 (quote it"),
                            ("generator.ngf=wide", "setting generator.ngf: expected a whole number")]:
        with pytest.raises(ValueError, match=re.escape(named)):
            load_config(TrainConfig, None, [override])
