"""`edn <verb>`: the command line. Every verb is also runnable as `python -m ray_jobs.<verb>`.

Building the parser imports neither torch, Ray, MLflow, pyarrow, OpenCV nor numpy
(tests/test_cli.py): `edn --help` answers at once, and a verb imports what it needs when it runs.
Errors: an EdnError (edn.errors), raised here or in a Ray task or training worker, is printed as
`edn VERB: error: <message>` (exit 2); anything else as one line naming its type and a log file
holding its traceback (exit 1); `--debug` or EDN_DEBUG=1 print the traceback as well.
Output: stdout carries the verb's JSON result alone (after the log, for `edn cluster logs`), so
`edn VERB ... > result.json` is a JSON file; tables, progress, logs and whatever Ray's workers
print go to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import traceback

from edn import cli_flags
from edn.errors import ConfigError, raise_on_sigterm, root_cause, stopped, user_error
from edn.ray_init import init_ray


def cmd_synth(a) -> dict:
    from edn.synth import synthesize
    return {"files": synthesize(a.out, a.dancers, a.frames, a.size, a.seed, a.fps, a.audio, a.hard, a.palette,
                                a.first)}


def cmd_ingest(a) -> dict:
    from edn.config import load_config
    from edn.data.ingest import IngestConfig, ingest
    width, height = a.size or (0, 0)
    flags = _flags(estimator=a.estimator, concurrency=a.concurrency, width=width, height=height)
    cfg = load_config(IngestConfig, a.config, a.set, flags=flags)
    init_ray()
    result = ingest(a.videos, a.out, cfg)
    for failure in result["failed"]:
        print(f"edn ingest: failed: {failure['error']}", file=sys.stderr)
    return result


def cmd_upgrade_dataset(a) -> dict:
    from edn.data.upgrade import upgrade_dataset
    return upgrade_dataset(a.dataset)


def _flags(**given) -> dict:
    """A verb's own options that were given, as config settings (later overridden by --set)."""
    return {k: v for k, v in given.items() if v}


def _train_config(a):
    from edn.config import load_config
    from edn.train.config import TrainConfig
    cfg = load_config(TrainConfig, a.config, a.set, flags=_flags(
        dataset_url=a.dataset, target=a.target, stage=a.stage, model_name=a.model, tracking_uri=a.tracking_uri,
        videos=[v for v in getattr(a, "videos", "").split(",") if v], init_from=getattr(a, "init_from", "")))
    if not cfg.dataset_url or not (cfg.target or cfg.videos):
        raise ConfigError(f"{a.verb} needs --dataset and --target, or --videos for a base model "
                          "(or dataset_url and target or videos in --config)")
    return cfg


def cmd_train(a) -> dict:
    from edn.train.run import train
    cfg = _train_config(a)
    init_ray()
    return train(cfg)


def _model(a, runtime, ref: str = ""):
    """The registered model; a base model (--model edn-base) renders --target zero-shot."""
    from edn.inference import zero_shot
    from edn.registry import load_registered
    from edn.tracking import tracking_uri
    model = load_registered(a.model or f"edn-{a.target}", ref or a.alias, tracking_uri(a.tracking_uri),
                            runtime.device, runtime.precision)
    return zero_shot(model, a.dataset, a.target) if model.meta.kind == "base" else model


def cmd_render(a) -> dict:
    from edn.eval.precision import registered_runtime
    from edn.render.transfer import transfer
    from edn.tracking import tracking_uri
    runtime, ref = registered_runtime(a.model or f"edn-{a.target}", a.alias, tracking_uri(a.tracking_uri),
                                      a.device or "auto", a.precision or "auto", "edn render")
    return {**transfer(a.dataset, a.source, _model(a, runtime, ref), a.out, layout=a.layout), **runtime.record()}


def cmd_render_catalog(a) -> dict:
    from edn.config import load_config
    from edn.render.batch import CatalogConfig, render_catalog
    cfg = load_config(CatalogConfig, a.config, a.set,
                      flags=_flags(tracking_uri=a.tracking_uri, device=a.device, precision=a.precision))
    init_ray()
    return render_catalog(a.catalog, a.out, cfg)


def _eval_config(a, url: str | None, settings: list[str]):
    from edn.config import load_config
    from edn.eval.heldout import EvalConfig
    return load_config(EvalConfig, url, settings, flags=_flags(
        detector=a.estimator, lpips_weights_url=a.lpips_weights, device=a.device, precision=a.precision))


def cmd_evaluate(a) -> dict:
    from edn.eval.report import summary
    from edn.eval.run import evaluate_and_report
    from edn.runtime import resolve_and_log
    from edn.tracking import tracking_uri
    cfg = _eval_config(a, a.config, a.set)
    runtime = resolve_and_log(cfg.device, cfg.precision, "edn evaluate")
    metrics = evaluate_and_report(a.dataset, _model(a, runtime), a.model or f"edn-{a.target}", a.out,
                                  tracking_uri(a.tracking_uri), cfg, a.promote, sources=a.source, runtime=runtime)
    return {**metrics, "methods": {m: summary(r) for m, r in metrics["methods"].items()}}


def cmd_ablate(a) -> dict:
    from edn.eval.ablation import run_ablation
    cfg = _train_config(a)
    eval_cfg = _eval_config(a, None, [])  # --config and --set are the training's
    init_ray()
    result = run_ablation(cfg, a.face_steps, a.out, eval_cfg)
    return {"rows": list(result["methods"]), "report": f"{a.out}/ablation.html"}


def cmd_onboard_curve(a) -> dict:
    from edn.config import load_config
    from edn.eval.onboarding import OnboardConfig, run_onboarding
    from edn.train.config import TrainConfig
    cfg = load_config(TrainConfig, a.config, a.set, flags=_flags(dataset_url=a.dataset, tracking_uri=a.tracking_uri))
    onboard = OnboardConfig(targets=[t for t in a.targets.split(",") if t], base=a.base,
                            fractions=cli_flags.fractions(a.fractions, "--fractions"),
                            scratch_fractions=cli_flags.fractions(a.scratch_fractions, "--scratch-fractions"),
                            face_steps=a.face_steps)
    init_ray()
    result = run_onboarding(cfg, onboard, a.out, _eval_config(a, None, []))
    return {"mean": result["mean"], "metrics": result["metrics_file"], "report": result["report"]}


def cmd_demo(a) -> dict:
    from edn.config import load_config
    from edn.demo import DemoConfig, run_demo
    train = _flags(steps=a.steps, tracking_uri=a.tracking_uri)
    cfg = load_config(DemoConfig, a.config, a.set, flags=_flags(out=a.out, frames=a.frames, train=train,
                                                                device=a.device, precision=a.precision))
    result = run_demo(cfg)
    print(f"\ntransfer video : {result['transfer']}\nmetrics        : {result['metrics_file']}\n"
          f"report         : {result['report']}\n"
          f"promotion      : {result['promotion']['reason']}\n"
          f"MLflow UI      : .venv/bin/mlflow ui --backend-store-uri {result['tracking_uri']}\n"
          f"registry       : {result['model_name']} version {result['model_version']}\n")
    return {k: v for k, v in result.items() if k != "methods"}


def cmd_export_model(a) -> dict:
    from edn.registry import export_model
    from edn.tracking import tracking_uri
    return export_model(a.model, a.alias, tracking_uri(a.tracking_uri), a.out, a.half)


def cmd_import_model(a) -> dict:
    from edn.registry import import_model_dir
    from edn.tracking import tracking_uri
    version, _ = import_model_dir(a.folder, a.model, a.alias, tracking_uri(a.tracking_uri))
    return {"model": a.model, "version": version, "alias": a.alias, "folder": a.folder}


def cmd_bench(a) -> dict:
    import importlib

    from edn.bench.settings import bench_settings
    return importlib.import_module(f"edn.bench.{a.bench}").run(bench_settings(a), a.out)


def cmd_cluster(a) -> dict:
    from edn import cluster
    conn = cluster.Connection(a.kubeconfig, a.context)
    api = cluster.api_client(conn)
    if a.action == "submit":
        env = dict(item.split("=", 1) for item in a.env if "=" in item)
        if len(env) != len(a.env):
            raise ConfigError(f"--env takes KEY=VALUE, not {[e for e in a.env if '=' not in e]}")
        job = cluster.load_rayjob(a.rayjob)
        namespace = a.namespace or job["metadata"].get("namespace") or cluster.default_namespace(conn)
        return cluster.submit(api, cluster.apply_overrides(job, cluster.Overrides(
            a.name, namespace, a.image, a.entrypoint, env)))
    namespace = a.namespace or cluster.default_namespace(conn)
    if a.action == "logs":
        pod, text = cluster.logs(api, a.name, namespace, a.tail)
        print(text, end="" if text.endswith("\n") or not text else "\n", file=a.stdout)  # the log is its output
        return {"name": a.name, "namespace": namespace, "pod": pod}
    return {"status": cluster.status, "stop": cluster.stop}[a.action](api, a.name, namespace)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="edn", description="Everybody Dance Now motion transfer on Ray.")
    top.add_argument("--debug", action="store_true", help="print the traceback of an error (also EDN_DEBUG=1)")
    sub = top.add_subparsers(dest="verb", required=True)

    def verb(name, fn, help_, example):
        p = sub.add_parser(name, help=help_, description=help_, epilog=f"example:\n  {example}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(fn=fn)
        return p

    p = verb("synth", cmd_synth, "Render synthetic dancers: an mp4 and ground-truth keypoints per dancer.",
             "edn synth outputs/dancers --dancers 2 --frames 300 --size 256x256 --seed 1")
    p.add_argument("out", help="output folder URL")
    p.add_argument("--dancers", type=int, default=2)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--size", type=cli_flags.size_arg, default=(256, 256), help="WIDTHxHEIGHT")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--first", type=int, default=0,
                   help="number of the first dancer's files (dancer_100, ...: another set beside dancer_00, ...)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--audio", action="store_true", help="add music: a click on every beat of each dance")
    p.add_argument("--hard", type=cli_flags.hard, default="", metavar="OPTIONS",
                   help="harder footage, a comma list of turn, exit, occluder, passerby, shake, light, blur, "
                   "compression, or all; adds per-frame ground truth to the keypoints files")
    p.add_argument("--palette", choices=("any", "base", "heldout"), default="any",
                   help="clothes and room colours: base and heldout draw from disjoint sets, so a base model "
                   "can be judged on dancers unlike any it saw (give the two sets different seeds, e.g. 1 and 2)")

    p = verb("ingest", cmd_ingest, "Decode videos and detect poses into a Parquet frame/pose dataset (Ray Data).",
             "edn ingest outputs/dancers/ --out outputs/dataset --size 128x128")
    p.add_argument("videos", nargs="+", help="video files or folders (local paths, gs://, memory://)")
    p.add_argument("--out", required=True, help="dataset URL")
    cli_flags.estimator_arg(p, use="run on the videos' frames")
    p.add_argument("--size", type=cli_flags.size_arg, default=None,
                   help="stored frame size WIDTHxHEIGHT (scale + centre crop)")
    p.add_argument("--concurrency", type=int, default=0, help="pose-detector actors (default 1)")
    cli_flags.config_args(p, "IngestConfig", "cleanup.smoothing=one-euro")

    p = verb("upgrade-dataset", cmd_upgrade_dataset, "Rewrite a dataset's videos written in an older layout, "
             "in place (face boxes recomputed from the stored keypoints; other columns copied).",
             "edn upgrade-dataset outputs/dataset")
    p.add_argument("dataset", help="dataset URL")

    p = verb("train", cmd_train, "Train a target's body GAN (then, --stage face, its face GAN) on Ray Train; "
             "register edn-<target> in MLflow. With --videos, a base model on many videos (edn-base); with "
             "--init-from, a target fine-tuned from a base.",
             "edn train --dataset outputs/dataset --target dancer_00 --set steps=500 --set num_workers=2\n"
             "  edn train --dataset outputs/dataset --target dancer_00 --stage face --set steps=200\n"
             "  edn train --dataset outputs/dataset --videos dancer_00,dancer_01,dancer_02 --config cpu_small\n"
             "  edn train --dataset outputs/dataset --target newbie --config cpu_small --init-from edn-base@candidate")
    cli_flags.dataset_args(p, required=False)
    p.add_argument("--videos", default="", help="comma list of video ids: train a base model on all of them")
    p.add_argument("--init-from", default="", help="registered base model NAME@ALIAS-OR-VERSION a target starts "
                   "from (its weights and generator settings)")
    p.add_argument("--stage", choices=["body", "face"], default=None,
                   help="body (default), then face: the face GAN on the frozen body model (body_model alias)")
    cli_flags.model_arg(p)
    cli_flags.tracking_arg(p)
    cli_flags.config_args(p, "TrainConfig", "generator.ngf=32", presets=True)

    p = verb("render", cmd_render, "Transfer a source video's dance onto a registered target model (mp4); "
             "with a base model (--model edn-base), onto the --target video's person zero-shot, with no training.",
             "edn render --dataset outputs/dataset --source dancer_01 --target dancer_00 --out outputs/t.mp4\n"
             "  edn render --dataset outputs/dataset --source dancer_01 --target newbie --model edn-base "
             "--out outputs/z.mp4")
    cli_flags.registered_args(p)
    p.add_argument("--source", required=True, help="source video id in the dataset")
    p.add_argument("--out", required=True, help="output mp4 URL")
    p.add_argument("--layout", choices=["side_by_side", "output"], default="side_by_side")
    cli_flags.runtime_args(p)

    p = verb("render-catalog", cmd_render_catalog, "Render a catalog of source -> target transfers (CSV or "
             "Parquet, a row each) on Ray: chunked, batched per target, with the sources' sound; a manifest of "
             "every row and an index.html gallery, both rewritten as rows finish; a rerun skips finished rows "
             "and retries failed ones.",
             "edn render-catalog --catalog catalog.csv --out outputs/catalog --set actors=2\n"
             "  catalog.csv:\n    source,target,output,dataset,layout,face_gan,resolution\n"
             "    dancer_01,edn-dancer_00@candidate,d01_on_d00.mp4,outputs/dataset,side_by_side,,\n"
             "    gs://bucket/clips/salsa.mp4,edn-alice@production,salsa_alice.mp4,,output,true,512x512")
    p.add_argument("--catalog", required=True, help="catalog table URL (.csv or .parquet; edn/render/catalog.py)")
    p.add_argument("--out", required=True, help="folder URL: manifest.parquet, index.html, relative outputs, _work/")
    cli_flags.tracking_arg(p)
    cli_flags.runtime_args(p)
    cli_flags.config_args(p, "CatalogConfig", "chunk_frames=240")

    p = verb("evaluate", cmd_evaluate, "Score a registered model on its target's held-out frames against the "
             "nearest-neighbour baseline (SSIM, LPIPS, pose distance, stability; report; promotion gate).",
             "edn evaluate --dataset outputs/dataset --target dancer_00 --out outputs/eval --promote")
    cli_flags.registered_args(p)
    p.add_argument("--out", required=True, help="folder URL for metrics.json and report.html")
    p.add_argument("--source", action="append", default=[],
                   help="also score the transfer of this source video id onto the target (repeatable)")
    p.add_argument("--promote", action="store_true",
                   help="move the alias production to this version if it beats the nearest-neighbour baseline")
    cli_flags.eval_args(p)
    cli_flags.config_args(p, "EvalConfig", "strip_frames=8")

    p = verb("ablate", cmd_ablate, "Train and score the paper's ablation (frame-by-frame, +temporal smoothing, "
             "+face GAN) with one budget, beside the nearest-neighbour baseline; print the table.",
             "edn ablate --dataset outputs/dataset --target dancer_00 --set steps=1500 --face-steps 300 "
             "--out outputs/ablation")
    cli_flags.dataset_args(p, required=False)
    p.set_defaults(stage=None, model="")  # each row is its own model and stage (edn/eval/ablation.py)
    p.add_argument("--out", required=True, help="folder URL for ablation.json and ablation.html")
    p.add_argument("--face-steps", type=int, default=300, help="face GAN steps on top of the temporal body model")
    cli_flags.eval_args(p)
    cli_flags.tracking_arg(p)
    cli_flags.config_args(p, "TrainConfig", "steps=1500", presets=True)

    p = verb("onboard-curve", cmd_onboard_curve, "What a new performer costs with a base model: for each "
             "held-out dancer, train from scratch and fine-tune from the base at fractions of one budget (steps), "
             "render the base zero-shot, and score all beside the baselines (onboarding.json, onboarding.html).",
             "edn onboard-curve --dataset outputs/heldout --targets dancer_00,dancer_01,dancer_02 "
             "--base edn-base@candidate --config cpu_small --set steps=1500 --out outputs/onboarding")
    p.add_argument("--dataset", default="", help="ingested dataset URL holding the held-out dancers")
    p.add_argument("--targets", required=True, help="comma list of the held-out dancers' video ids")
    p.add_argument("--base", default="edn-base@candidate", help="registered base NAME@ALIAS-OR-VERSION")
    p.add_argument("--fractions", default="0.05,0.1,0.25,1",
                   help="fine-tuning budgets, a comma list of fractions of steps (empty: none)")
    p.add_argument("--scratch-fractions", default="1",
                   help="from-scratch budgets, a comma list of fractions of steps (empty: none)")
    p.add_argument("--face-steps", type=int, default=300,
                   help="face GAN steps of every trained row, on its body (0: body only)")
    p.add_argument("--out", required=True, help="folder URL for onboarding.json and onboarding.html")
    cli_flags.eval_args(p)
    cli_flags.tracking_arg(p)
    cli_flags.config_args(p, "TrainConfig", "steps=1500", presets=True)

    p = verb("demo", cmd_demo, "Run everything end to end on synthetic dancers with embedded defaults.",
             "edn demo --out outputs/demo")
    p.add_argument("--out", default="", help="folder URL for everything the demo writes (default outputs/demo)")
    p.add_argument("--steps", type=int, default=0, help="body training steps (default: the demo's)")
    p.add_argument("--frames", type=int, default=0, help="frames per dancer (default: the demo's)")
    cli_flags.tracking_arg(p)
    cli_flags.runtime_args(p)
    cli_flags.config_args(p, "DemoConfig", "train.steps=100")

    p = verb("export-model", cmd_export_model, "Write a registered model's folder (weights, metadata, "
             "references) to a local folder, e.g. to ship it or carry it to another registry.",
             "edn export-model --model edn-base --alias production --out base-model --half")
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--alias", default="candidate", help="registry alias or version number (default candidate)")
    p.add_argument("--out", required=True, help="local folder to write")
    p.add_argument("--half", action="store_true", help="store the weights in fp16 (half the bytes)")
    cli_flags.tracking_arg(p)

    p = verb("import-model", cmd_import_model, "Register a model folder (edn export-model's, or the base shipped "
             "in edn/assets/demo-base) as a version of --model; the same folder twice is one version.",
             "edn import-model edn/assets/demo-base --model edn-base --alias candidate")
    p.add_argument("folder", help="local model folder")
    p.add_argument("--model", required=True, help="registered model name")
    p.add_argument("--alias", default="candidate", help="registry alias to point at the version (default candidate)")
    cli_flags.tracking_arg(p)

    p = verb("bench", cmd_bench, "Benchmarks: print a table and write a JSON result file (edn/bench/).",
             "edn bench ingest --out outputs/bench")
    from edn.bench.settings import add_bench_parsers
    add_bench_parsers(p.add_subparsers(dest="bench", required=True))

    p = verb("cluster", cmd_cluster, "RayJobs on a KubeRay cluster (Kubernetes API, kubeconfig or in-cluster): "
             "submit a RayJob YAML, read its status or its submitter's log, stop it.",
             "edn cluster submit cluster/rayjob-train.yaml --name edn-train-bob --image IMAGE\n"
             "  edn cluster status edn-train-bob -n edn\n  edn cluster logs edn-train-bob -n edn --tail 100\n"
             "  edn cluster stop edn-train-bob -n edn")
    cli_flags.cluster_actions(p)
    return top


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    args = parser().parse_args(argv)
    raise_on_sigterm()
    try:
        # stdout is the result's alone: during the verb, prints (tables, Ray's worker and raylet
        # lines, which Ray writes to whatever sys.stdout is then) go to stderr
        args.stdout = sys.stdout  # where a verb whose output is text writes it (edn cluster logs)
        with contextlib.redirect_stdout(sys.stderr):
            result = args.fn(args)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM raised as Stopped
        stop = stopped(e)
        print(f"edn {args.verb}: stopped by {stop.signame}{'; ' if stop.note else ''}{stop.note}", file=sys.stderr)
        return stop.exit_code
    except Exception as e:  # noqa: BLE001 - every failure ends as one line and an exit code
        return _report(args.verb, e, args.debug or os.environ.get("EDN_DEBUG", "") not in ("", "0"))
    print(json.dumps(result, indent=1, default=str))
    return 1 if result.get("failed") else 0


def _report(verb: str, error: Exception, debug: bool) -> int:
    """An EdnError (wherever it was raised) as its message, exit 2; anything else as its type and
    message, the traceback in a log file (or printed, when debugging), exit 1."""
    text = "".join(traceback.format_exception(error))
    if debug:
        print(text, file=sys.stderr, end="")
    cause = user_error(error)
    if cause is not None:
        print(f"edn {verb}: error: {cause}", file=sys.stderr)
        return 2
    root = root_cause(error)
    message = (str(root).strip().splitlines() or [""])[0]
    where = "above" if debug else _write_log(verb, text)
    print(f"edn {verb}: error: {type(root).__name__}: {message} (traceback: {where})", file=sys.stderr)
    return 1


def _write_log(verb: str, text: str) -> str:
    folder = os.path.join(tempfile.gettempdir(), "edn-logs")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"edn-{verb}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
    with open(path, "w") as f:
        f.write(text)
    return path


if __name__ == "__main__":
    sys.exit(main())
