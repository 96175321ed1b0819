"""`edn`: help without heavy imports, one meaning per flag on every verb, and one way of reporting
errors, wherever they were raised (the driver, a Ray task or actor, a Ray Train worker)."""
import argparse
import json
import re
import subprocess
import sys
import tempfile

import pytest

from edn.cli import main, parser
from edn.errors import EdnError, root_cause, user_error
from edn.video import VideoError


def _verbs(p: argparse.ArgumentParser, prefix: tuple = ()) -> list[tuple]:
    """Every verb and sub-verb (`bench ingest`, `cluster submit`), as argv prefixes."""
    found = []
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [(*prefix, name), *_verbs(sub, (*prefix, name))]
    return found


VERBS = [v for v in _verbs(parser()) if len(v) == 1]


@pytest.mark.parametrize("verb", [v[0] for v in VERBS])
def test_every_verb_has_help_with_an_example(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([verb, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and f"edn {verb}" in out


def test_help_imports_neither_torch_ray_mlflow_pyarrow_opencv_nor_numpy():
    """`edn --help` and every `edn VERB --help` only build the parser: the heavy libraries are
    imported by the verbs that run (this is what keeps `edn --help` under a second)."""
    heavy = ("torch", "ray", "mlflow", "pyarrow", "cv2", "mediapipe", "numpy")
    script = f"""
import sys
from edn.cli import main
for argv in [[], *{[list(v) for v in _verbs(parser())]!r}]:
    try:
        main([*argv, "--help"])
    except SystemExit:
        pass
print(sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "[]"


def test_ray_jobs_modules_take_the_same_arguments():
    out = subprocess.run([sys.executable, "-m", "ray_jobs.train", "--help"], capture_output=True, text=True, check=True)
    assert "--dataset" in out.stdout and "edn train" in out.stdout


@pytest.mark.parametrize("verb", ["render", "evaluate"])
def test_missing_model_is_a_clear_error(verb, tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = main([verb, "--dataset", str(tmp_path), "--source", "a", "--target", "nobody", "--tracking-uri", uri,
                 "--out", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err.splitlines()[-1]
    assert code == 2 and err.startswith(f"edn {verb}: error: ")
    assert "edn-nobody" in err and "candidate" in err and uri in err
    assert not (tmp_path / "o.mp4").exists()


def test_bad_size_argument_is_explained(capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["synth", "out", "--size", "big"])
    assert "WIDTHxHEIGHT" in capsys.readouterr().err


def test_evaluate_takes_config_and_set_as_an_eval_config(tmp_path, capsys):
    """--config and --set reach EvalConfig, and are read before anything is loaded."""
    config = tmp_path / "eval.yaml"
    config.write_text("strip_frames: 2\n")
    code = main(["evaluate", "--dataset", str(tmp_path), "--target", "t", "--out", str(tmp_path / "o"),
                 "--config", str(config), "--set", "strips=3"])
    assert code == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith("edn evaluate: error: EvalConfig: unknown settings ['strips']") and "strip_frames" in err


def test_the_same_flag_means_the_same_on_every_verb(monkeypatch, tmp_path):
    """--tracking-uri names the MLflow server of every verb that uses one; --model the registered
    name; --estimator (or --detector) the pose detector; --set the verb's own config."""
    import edn.demo
    import edn.eval.ablation
    import edn.render.batch
    import edn.train.run

    seen = {}

    def called(verb, result):  # stands in for the verb's entry point: what the CLI gave it
        def entry(*args):
            seen[verb] = args
            return result
        return entry

    uri, dataset = "http://mlflow.example:5000", str(tmp_path)
    monkeypatch.setattr("edn.cli.init_ray", lambda: None)
    monkeypatch.setattr(edn.train.run, "train", called("train", {}))
    monkeypatch.setattr(edn.eval.ablation, "run_ablation", called("ablate", {"methods": {}}))
    monkeypatch.setattr(edn.render.batch, "render_catalog", called("render-catalog", {}))
    monkeypatch.setattr(edn.demo, "run_demo", called("demo", {
        "transfer": "t.mp4", "metrics_file": "m.json", "report": "r.html", "promotion": {"reason": "r"},
        "tracking_uri": uri, "model_name": "edn-dancer_00", "model_version": "1"}))
    assert main(["train", "--dataset", dataset, "--target", "t", "--model", "m", "--tracking-uri", uri,
                 "--set", "steps=7"]) == 0
    assert main(["ablate", "--dataset", dataset, "--target", "t", "--out", "o", "--tracking-uri", uri,
                 "--detector", "groundtruth", "--device", "cpu", "--precision", "fp32"]) == 0
    assert main(["render-catalog", "--catalog", "c.csv", "--out", "o", "--tracking-uri", uri,
                 "--device", "cpu", "--precision", "bf16"]) == 0
    assert main(["demo", "--tracking-uri", uri, "--steps", "5", "--set", "train.batch_size=1",
                 "--precision", "fp32"]) == 0
    (train,), (ablate, _, _, ablate_eval), (_, _, catalog), (demo,) = (
        seen["train"], seen["ablate"], seen["render-catalog"], seen["demo"])
    assert [train.tracking_uri, ablate.tracking_uri, catalog.tracking_uri, demo.train.tracking_uri] == [uri] * 4
    assert (train.registry_name, train.steps, ablate.registry_name) == ("m", 7, "edn-t")
    assert ablate_eval.detector == "groundtruth"
    assert [(c.device, c.precision) for c in (ablate_eval, catalog, demo)] == [
        ("cpu", "fp32"), ("cpu", "bf16"), ("auto", "fp32")]
    assert (demo.train.steps, demo.train.batch_size, demo.out) == (5, 1, "outputs/demo")


def test_render_and_evaluate_load_the_model_where_device_and_precision_say(monkeypatch, tmp_path, capsys):
    """--device and --precision (or --set for evaluate) reach the model's loading, and the
    resolved choice with its reason is in the result; cuda without a GPU is a user error."""
    import edn.eval.run
    import edn.render.transfer

    loaded, evaluated = [], {}
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr("edn.cli._model", lambda a, runtime, ref="": loaded.append(runtime) or "model")
    monkeypatch.setattr(edn.render.transfer, "transfer", lambda *args, **kw: {"output": "t.mp4"})
    monkeypatch.setattr(edn.eval.run, "evaluate_and_report",
                        lambda *args, **kw: evaluated.update(kw) or {"methods": {}})
    common = ["--dataset", str(tmp_path), "--target", "t"]
    assert main(["render", *common, "--source", "s", "--out", "t.mp4", "--device", "cpu", "--precision", "bf16"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "output": "t.mp4", "device": "cpu", "precision": "bf16", "precision_reason": "bf16 asked for"}
    assert main(["evaluate", *common, "--out", "o", "--set", "precision=fp32"]) == 0
    assert evaluated["runtime"] == loaded[-1] and (loaded[-1].device, loaded[-1].precision) == ("cpu", "fp32")
    assert main(["render", *common, "--source", "s", "--out", "t.mp4", "--device", "cuda"]) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("edn render: error: device cuda was asked for")


def test_train_without_a_dataset_is_a_user_error(capsys):
    assert main(["train", "--target", "t"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "edn train: error: train needs --dataset and --target, or --videos for a base model (or dataset_url and "
        "target or videos in --config)")


def test_an_edn_error_in_a_ray_data_actor_reaches_the_user_as_its_message(ray_cluster, dancers, tmp_path, capsys):
    """The pose detector's constructor fails inside Ray Data's actor: Ray keeps only the text of
    that error (ActorDiedError); the user still reads edn's message, exit 2, no traceback."""
    model = tmp_path / "nowhere" / "pose.onnx"
    code = main(["ingest", dancers[0], "--out", str(tmp_path / "dataset"), "--size", "64x64",
                 "--estimator", "openpose", "--set", f"estimator_options={{model_url: {model}}}"])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert last.startswith(f"edn ingest: error: OpenPose ONNX model {model} does not exist. OpenPose weights are not")


def test_edn_errors_are_found_under_rays_wrappers(ray_cluster):
    """A task's error crosses processes whole (VideoError keeps its url and reason); a training
    worker's is found among the ranks' failures, before another rank's collateral error."""
    import ray
    from ray.train import ControllerError, WorkerGroupError

    @ray.remote(num_cpus=0)
    def read_video():
        raise VideoError("clip.mp4", "not a readable video")

    with pytest.raises(ray.exceptions.RayTaskError) as raised:
        ray.get(read_video.remote())
    found = user_error(raised.value)
    assert isinstance(found, VideoError) and (found.url, found.reason) == ("clip.mp4", "not a readable video")
    workers = WorkerGroupError("2 workers failed", {0: RuntimeError("collective aborted"), 1: raised.value})
    assert user_error(workers) is found and user_error(ControllerError(workers)) is found
    bug = WorkerGroupError("1 worker failed", {1: ZeroDivisionError("division by zero"), 0: KeyError("x")})
    assert user_error(bug) is None and isinstance(root_cause(bug), KeyError)  # the lowest rank's
    assert user_error(RuntimeError("wrapped")) is None
    try:
        raise RuntimeError("rendering failed") from EdnError("the model has no face generator")
    except RuntimeError as e:
        assert str(user_error(e)) == "the model has no face generator"


RAY_FORWARDED = re.compile(r"(\x1b\[\d+m)?\(.*\bpid=[^)]+\)")  # a line of a Ray worker's log, copied to this stderr


def own_lines(err: str) -> list[str]:
    """stderr without the lines the session's Ray cluster forwards from its workers: they may
    arrive late, from an earlier test's actors."""
    return [line for line in err.splitlines() if not RAY_FORWARDED.match(line)]


def _corrupt_dataset(tmp_path):
    (tmp_path / "dataset" / "videos").mkdir(parents=True)
    (tmp_path / "dataset" / "videos" / "a.json").write_text("{not json")
    return str(tmp_path / "dataset")


def test_other_errors_are_one_line_with_their_traceback_in_a_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("EDN_DEBUG", raising=False)
    assert main(["upgrade-dataset", _corrupt_dataset(tmp_path)]) == 1
    err = own_lines(capsys.readouterr().err)
    prefix = "edn upgrade-dataset: error: JSONDecodeError: Expecting property name enclosed in double quotes"
    assert len(err) == 1 and err[0].startswith(prefix) and "Traceback" not in err[0]
    log = err[0].split("(traceback: ")[1].rstrip(")")
    assert log.startswith(str(tmp_path / "edn-logs" / "edn-upgrade-dataset-"))
    text = open(log).read()
    assert text.startswith("Traceback (most recent call last)") and "upgrade_dataset" in text


def test_debug_prints_the_traceback(tmp_path, monkeypatch, capsys):
    missing = str(tmp_path / "nowhere")
    assert main(["upgrade-dataset", missing]) == 2
    assert own_lines(capsys.readouterr().err) == [
        f"edn upgrade-dataset: error: {missing}: not an edn dataset (no videos/ folder)"]
    assert main(["--debug", "upgrade-dataset", missing]) == 2
    err = "\n".join(own_lines(capsys.readouterr().err))
    assert err.startswith("Traceback (most recent call last)") and "edn.errors.DataNotFoundError" in err
    assert err.splitlines()[-1] == f"edn upgrade-dataset: error: {missing}: not an edn dataset (no videos/ folder)"
    monkeypatch.setenv("EDN_DEBUG", "1")
    assert main(["upgrade-dataset", _corrupt_dataset(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last)") and err.splitlines()[-1].endswith("(traceback: above)")


def test_results_are_json_on_stdout(tmp_path, capsys):
    (tmp_path / "dataset" / "videos").mkdir(parents=True)
    assert main(["upgrade-dataset", str(tmp_path / "dataset")]) == 0
    assert json.loads(capsys.readouterr().out) == {"upgraded": [], "current": []}


def test_stdout_holds_the_json_result_alone(monkeypatch, tmp_path, capsys):
    """What a verb prints while it works (its table, Ray's worker lines) goes to stderr, so that
    `edn VERB ... > result.json` is a JSON file."""
    import edn.eval.run

    monkeypatch.setattr("edn.cli._model", lambda a, runtime, ref="": "model")
    monkeypatch.setattr(edn.eval.run, "evaluate_and_report",
                        lambda *args, **kw: print("method  body SSIM\nmodel   0.9") or {"methods": {"model": {}}})
    assert main(["evaluate", "--dataset", str(tmp_path), "--target", "t", "--out", "o"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["methods"] == {"model": {}} and "body SSIM" in err
