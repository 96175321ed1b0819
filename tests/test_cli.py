import subprocess
import sys

import pytest

from edn.cli import main, parser

VERBS = ["synth", "ingest", "train", "render", "evaluate", "demo"]


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help_with_an_example(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([verb, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and f"edn {verb}" in out


def test_ray_jobs_modules_take_the_same_arguments():
    out = subprocess.run([sys.executable, "-m", "ray_jobs.train", "--help"], capture_output=True, text=True, check=True)
    assert "--dataset" in out.stdout and "edn train" in out.stdout


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = main(["render", "--dataset", str(tmp_path), "--source", "a", "--target", "nobody",
                 "--tracking-uri", uri, "--out", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert code == 2 and "edn-nobody" in err and "candidate" in err and uri in err
    assert not (tmp_path / "o.mp4").exists()


def test_bad_size_argument_is_explained(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["synth", "out", "--size", "big"])
    assert "WIDTHxHEIGHT" in capsys.readouterr().err
