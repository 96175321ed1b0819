"""The flags several `edn` verbs share, each with one meaning and one help text (edn.cli), and
their argument types. Imports nothing heavy: `edn --help` builds every verb's parser."""
from __future__ import annotations

import argparse

from edn.config import parse_size, preset_names
from edn.errors import ConfigError
from edn.pose.estimator_names import estimator_names


def size_arg(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def hard(text: str):
    from edn.synth.hard import HardOptions
    try:
        return HardOptions.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# Every verb that takes one of these flags takes it with this meaning (and these words of help).

def tracking_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", default="", help="MLflow URI (default $MLFLOW_TRACKING_URI, else outputs/mlflow)")


def dataset_args(p: argparse.ArgumentParser, required: bool) -> None:
    where = "" if required else " (overrides the config's)"
    p.add_argument("--dataset", required=required, default="", help=f"ingested dataset URL{where}")
    p.add_argument("--target", required=required, default="", help=f"target video id{where}")


def model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="", help="registered model name (default edn-<target>)")


def registered_args(p: argparse.ArgumentParser) -> None:
    """A registered target model to read (render, evaluate)."""
    dataset_args(p, required=True)
    model_arg(p)
    p.add_argument("--alias", default="candidate", help="registry alias or version number (default candidate)")
    tracking_arg(p)


def runtime_args(p: argparse.ArgumentParser) -> None:
    """Where and in what precision the verb runs its models (edn.runtime; validated there)."""
    p.add_argument("--device", default="", help="auto (default: a GPU when one is visible), cpu or cuda")
    p.add_argument("--precision", default="", help="auto (default: bf16 where the device computes it natively: "
                   "a GPU, a CPU with AVX512-BF16 or AMX; else fp32), fp32 or bf16")


def estimator_arg(p: argparse.ArgumentParser, *aliases: str, use: str) -> None:
    p.add_argument("--estimator", *aliases, dest="estimator", default="",
                   help=f"pose detector {use}: {', '.join(estimator_names())} (default mediapipe), or module:Class")


def eval_args(p: argparse.ArgumentParser) -> None:
    estimator_arg(p, "--detector", use="run on generated frames for the pose distance")
    runtime_args(p)
    p.add_argument("--lpips-weights", default="",
                   help="LPIPS AlexNet backbone weights URL (default: torchvision cache)")


def config_args(p: argparse.ArgumentParser, name: str, example: str, presets: bool = False) -> None:
    named = f", or a preset of edn/configs/ by name ({', '.join(preset_names())})" if presets else ""
    p.add_argument("--config", default=None, help=f"YAML/JSON file (URL) of {name} settings{named}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a setting, e.g. {example} (repeatable; wins over the flags above)")


def fractions(text: str, flag: str) -> list[float]:
    """"0.05,0.1" -> [0.05, 0.1]; "" -> []: fractions of a budget, each above 0 (1: all of it)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = [-1.0]
    if any(not 0 < v <= 10 for v in values):
        raise ConfigError(f"{flag} takes a comma list of positive fractions of the budget, e.g. 0.1,0.25, "
                          f"not {text!r}")
    return values


def cluster_actions(p: argparse.ArgumentParser) -> None:
    """edn cluster's actions: submit, status, logs, stop."""
    actions = p.add_subparsers(dest="action", required=True)
    for action, help_ in (("submit", "create the RayJob of a YAML file (path or URL)"),
                          ("status", "Ray's jobStatus and KubeRay's jobDeploymentStatus"),
                          ("logs", "the log of the job's submitter pod (else its head pod)"),
                          ("stop", "delete the RayJob, and with it its Ray cluster")):
        q = actions.add_parser(action, help=help_, description=help_)
        submitted = action == "submit"
        q.add_argument("rayjob" if submitted else "name", help="RayJob YAML" if submitted else "RayJob name")
        q.add_argument("-n", "--namespace", default="", help="default: the file's, else the kubeconfig context's")
        q.add_argument("--kubeconfig", default="", help="default: $KUBECONFIG, ~/.kube/config, else in-cluster")
        q.add_argument("--context", default="", help="kubeconfig context (default: the current one)")
    submit = actions.choices["submit"]
    submit.add_argument("--name", default="", help="RayJob name (default: the file's)")
    submit.add_argument("--image", default="", help="container image for every pod of the job")
    submit.add_argument("--entrypoint", default="", help="replace the job's entrypoint command")
    submit.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="environment variable for the job (runtimeEnvYAML env_vars; repeatable)")
    actions.choices["logs"].add_argument("--tail", type=int, default=None, help="only the last N lines")
