"""The benchmarks' settings and flags, importable without torch or Ray (`edn --help` builds them).

Each benchmark's settings are a dataclass read by edn.config.load_config as every verb's are:
its defaults, a --config file, then its flags (--smoke's preset under the others), then
--set key=value. A size may be written WIDTHxHEIGHT and a list "1,2", in a flag, a file or --set.
"""
from __future__ import annotations

import argparse
import dataclasses

from edn.config import load_config, parse_size
from edn.errors import ConfigError


def size_of(value) -> tuple[int, int]:
    if isinstance(value, str):
        return parse_size(value)
    if len(value) != 2 or min(value) <= 0:
        raise ConfigError(f"expected WIDTHxHEIGHT, e.g. 256x256, not {value!r}")
    return int(value[0]), int(value[1])


def list_of(value, item=str) -> tuple:
    """"1,2", [1, 2] or 2 -> (1, 2), (1, 2), (2,) with `item` int."""
    parts = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    return tuple(item(v.strip() if isinstance(v, str) else v) for v in parts)


@dataclasses.dataclass
class IngestBench:
    """`edn bench ingest`: ingest throughput against the detector alone, and streaming memory.

1. Throughput on one synthetic dancer video: the detector alone (frames decoded into memory
   first, then estimate on each, in this process) against edn.data.ingest.ingest of the video on
   Ray with each count of `concurrency` detector actors. "Steady": frames 2..N / their time (for
   ingest: first to last frame detected inside its actors, by ingest_parts.TimedEstimator given as
   its detector), the key ratio; "end to end": N / wall with every start-up inside; the ingest's
   wall split into lead, frames and tail; best of `repeats`. Then the same ingest in this process
   without Ray, its stages timed under cProfile.
2. Memory: peak RSS of the ingest of a short and a long video (one clip looped) in a fresh process
   with its own Ray, with each of `memory_estimators` (clip: the clip's poses looped, so the
   detector's memory is constant); ingest_memory.py says what is sampled.
"""
    frames: int = 300
    size: tuple = (256, 256)            # the synthetic source video
    stored_size: tuple = (128, 128)     # ingest's stored frame size
    estimator: str = "mediapipe"
    concurrency: tuple = (1, 2)         # detector actors, one ingest timing each
    repeats: int = 3
    short_minutes: float = 1.0
    long_minutes: float = 10.0
    memory_size: tuple = (128, 128)     # source and stored size of the memory videos
    memory_estimators: tuple = ("groundtruth", "clip")
    clip_frames: int = 300              # the clip looped into the memory videos
    fps: float = 30.0
    seed: int = 1
    smoke: bool = False

    def __post_init__(self):
        self.size, self.stored_size, self.memory_size = map(size_of, (self.size, self.stored_size, self.memory_size))
        self.concurrency, self.memory_estimators = list_of(self.concurrency, int), list_of(self.memory_estimators)
        if self.frames < 2 or not self.concurrency or min(self.concurrency) < 1 or self.repeats < 1:
            raise ConfigError("edn bench ingest needs frames >= 2, repeats >= 1 and actor counts >= 1")


@dataclasses.dataclass
class TrainBench:
    """`edn bench train`: edn's training step against a plain eager loop, the input pipeline
against batches in memory, and 1 vs 2 Ray Train workers with the all-reduce's cost.

1. Step: images/s of a full G+D step (body stage, temporal; face stage on a frozen body) at each
   of `sizes`: train_parts.PlainStep, pix2pixHD's loop written plainly (fp32, NCHW, three D
   forwards, for-loop Adam), against edn's step as the trainer builds it (bf16 autocast,
   channels_last and fused Adam on GPU; there also compiled). Same networks (`nets`), weights and
   batch; the sides take turns (ABBA), medians of `rounds`. FLOPs counted, FLOP/s measured, and
   edn's step split into phases by hooks on the networks and optimizers.
2. Input pipeline: epochs of the body step fed by Ray Data from the Parquet dataset, as the
   trainer reads it, against the same batches in memory, taking turns.
3. Scaling: the body step on each count of `workers` Ray Train workers (gloo on CPU, NCCL on
   GPUs), and the all-reduce of one step's gradients timed in the workers' group. Projections to
   more GPUs, from assumed speeds and bandwidths, are in docs/bench-projections.md.
`threads` torch threads per process: 1 by default, since on a shared machine 2 threads stall on
every op while OpenMP waits for the descheduled one.
"""
    sizes: tuple = ((256, 128),)        # WIDTHxHEIGHT; the paper's 512x256 and 1024x512 by --sizes
    stages: tuple = ("body", "face")
    nets: str = ""                      # demo or paper; "": demo on CPU, paper on GPU
    batch: int = 0                      # 0: train_parts.BATCH by device and width
    rounds: int = 6                     # timing rounds of each side (ABBA), medians kept
    steps_per_round: int = 1
    warmup: int = 1
    compile: bool = True                # GPU: also time edn's step with G and D compiled
    device: str = "auto"
    threads: int = 1
    pipeline: bool = True
    dataset: str = ""                   # for the pipeline; "": a synthetic dancer ingested here
    target: str = ""
    frames: int = 120                   # of the synthetic dancer
    pipeline_rounds: int = 2            # epochs of each side
    scaling: bool = True
    workers: tuple = (1, 2)
    scaling_steps: int = 4
    allreduce_reps: int = 5
    seed: int = 0
    smoke: bool = False

    def __post_init__(self):
        self.sizes = tuple(size_of(s) for s in (self.sizes.split(",") if isinstance(self.sizes, str) else self.sizes))
        self.stages, self.workers = list_of(self.stages), list_of(self.workers, int)
        if self.rounds < 1 or self.threads < 1 or self.batch < 0 or not self.sizes or not self.stages \
                or set(self.stages) - {"body", "face"} or self.nets not in ("", "demo", "paper") \
                or bool(self.dataset) != bool(self.target) or not self.workers or min(self.workers) < 1:
            raise ConfigError("edn bench train needs rounds >= 1, threads >= 1, batch >= 0, sizes, stages among "
                             "body,face, nets demo or paper, worker counts >= 1, and a dataset with its target")


@dataclasses.dataclass
class RenderBench:
    """`edn bench render`: frames per second of a whole catalog job against the bare generator,
and 1 vs 2 render actors.

Setup, no network or weights: `rows` synthetic dancers with music, ingested with their ground
truth; the first `targets` registered in an MLflow registry on SQLite as untrained temporal
generators (pix2pixHD's global generator by default: a trained one costs the same); dancer i is
rendered onto target i mod `targets`, side by side.
1. Job: render_catalog on Ray, once per count of `actors`, into a fresh folder each time: job fps
   = output frames / wall of the call (warm-up frames are overhead, not frames).
2. Bare: `model.body(x, prev)` in this process, `threads` torch threads as an actor has, batches
   of `batch_chunks` streams, for the same output frames; half before and half after the jobs; in
   fp32 and, where the CPU computes bf16 natively (edn.runtime), in bf16 too (bf16 / fp32 fps).
   Before them, the generator with freed memory returned to the OS (glibc's own setting), then
   kept, as every CPU renderer runs it (edn.runtime.keep_freed_memory): fps and page faults of each.
3. Key ratio: job fps with A actors / (A x bare fps in the jobs' precision, auto), one per A; the
   headline the largest A whose actors' threads leave a core free for the job's driver and Ray's
   daemons (with fewer cores these take their CPU from the actors), else the smallest A.
4. Where the time goes: one row rendered in this process by a RenderWorker and join_chunks, as an
   actor and the join task do it, under cProfile.
"""
    size: tuple = (128, 128)            # WIDTHxHEIGHT of the dancers and the model
    frames: int = 160                   # per source dancer
    rows: int = 2                       # catalog rows, one source dancer each
    targets: int = 1                    # registered models (the first dancers' bodies)
    ngf: int = 64                       # generator: GeneratorConfig's defaults (pix2pixHD's global generator)
    n_downsample: int = 4
    n_blocks: int = 9
    actors: tuple = (1, 2)              # one job per count
    threads: int = 1                    # torch threads = CPUs per actor
    chunk_frames: int = 240             # at most: CatalogConfig's default; the job cuts shorter to fill its actors
    warmup_frames: int = 5              # CatalogConfig's 30 scaled to these short videos
    batch_chunks: int = 4               # CatalogConfig's default
    layout: str = "side_by_side"
    profile: bool = True
    seed: int = 0
    smoke: bool = False

    def __post_init__(self):
        self.size, self.actors = size_of(self.size), tuple(sorted(set(list_of(self.actors, int))))
        if self.frames < 2 or self.rows < 1 or not 1 <= self.targets <= self.rows or not self.actors \
                or min(self.actors) < 1 or min(self.threads, self.batch_chunks, self.chunk_frames) < 1 \
                or self.warmup_frames < 0:
            raise ConfigError("edn bench render needs frames >= 2, 1 <= targets <= rows, actor counts >= 1, "
                             "threads, batch_chunks, chunk_frames >= 1 and warmup_frames >= 0")


@dataclasses.dataclass(frozen=True)
class Bench:
    settings: type
    smoke: dict                  # --smoke: a seconds-long version, for tests
    flags: dict[str, str]        # the settings given a flag of their own -> its help
    help: str
    examples: tuple[str, ...]


BENCHES = {
    "ingest": Bench(
        IngestBench,
        {"frames": 30, "size": (128, 128), "stored_size": (64, 64), "concurrency": (1,), "repeats": 1,
         "short_minutes": 2 / 60, "long_minutes": 6 / 60, "memory_size": (64, 64), "clip_frames": 30,
         "memory_estimators": ("groundtruth",), "smoke": True},
        {"frames": "frames of the throughput video", "size": "throughput video's size WIDTHxHEIGHT",
         "stored_size": "ingest's stored size", "estimator": "detector of the throughput part",
         "concurrency": "detector actors to time, comma-separated", "repeats": "runs of each timing, best kept",
         "short_minutes": "short memory video", "long_minutes": "long memory video",
         "memory_size": "memory videos' size"},
        "ingest fps against the detector alone; peak memory, short vs long video",
        ("edn bench ingest --out outputs/bench", "edn bench ingest --smoke --set repeats=2 --out /tmp/bench")),
    "train": Bench(
        TrainBench,
        {"sizes": ((64, 32),), "batch": 2, "rounds": 2, "frames": 24, "pipeline_rounds": 1, "scaling_steps": 1,
         "allreduce_reps": 2, "smoke": True},
        {"sizes": "frame sizes WIDTHxHEIGHT, comma-separated (the paper's: 256x128,512x256,1024x512)",
         "stages": "stages to time, comma-separated",
         "nets": "network sizes, demo or paper (default demo on CPU, paper on GPU)",
         "batch": "batch size at every size (default by device and size)", "rounds": "timing rounds per side",
         "threads": "torch threads here and per worker", "device": "auto, cpu or cuda",
         "compile": "GPU: do not time the torch.compile variant",
         "dataset": "pipeline: an ingested dataset URL (default: a synthetic dancer)",
         "target": "pipeline: the video id in --dataset", "pipeline": "skip the input pipeline section",
         "scaling": "skip the Ray Train scaling section"},
        "training step images/s against a plain eager loop; input pipeline; 1 vs 2 workers",
        ("edn bench train --out outputs/bench",
         "edn bench train --sizes 256x128,512x256,1024x512 --stages body --no-pipeline --no-scaling",
         "edn bench train --smoke --out /tmp/bench")),
    "render": Bench(
        RenderBench,
        {"size": (64, 64), "frames": 24, "ngf": 8, "n_downsample": 2, "n_blocks": 1, "chunk_frames": 12,
         "warmup_frames": 2, "batch_chunks": 2, "smoke": True},
        {"size": "frame size WIDTHxHEIGHT", "frames": "frames per source", "rows": "catalog rows, one source each",
         "targets": "registered target models", "ngf": "generator width", "n_downsample": "generator downsamplings",
         "n_blocks": "generator residual blocks", "actors": "render actor counts, one job each, comma-separated",
         "threads": "torch threads = CPUs per actor", "chunk_frames": "frames per chunk",
         "warmup_frames": "warm-up frames per chunk", "batch_chunks": "chunks side by side",
         "profile": "skip the in-process profile of one row"},
        "catalog job fps against the bare generator forward pass; 1 vs 2 render actors",
        ("edn bench render --out outputs/bench", "edn bench render --size 256x128 --set ngf=32",
         "edn bench render --smoke --out /tmp/bench")),
}


def _shown(field: str, value) -> str:
    """A default as its flag takes it: sizes by name (a pair of ints may be a list: actors 1,2)."""
    if field.endswith("sizes"):
        return ",".join(f"{w}x{h}" for w, h in value)
    if field.endswith("size"):
        return f"{value[0]}x{value[1]}"
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def add_bench_parsers(benches: argparse._SubParsersAction) -> None:
    """`edn bench NAME` for each benchmark: a flag per setting in its `flags` (a True setting's flag
    is --no-NAME), --config, --set, --out and --smoke."""
    for name, bench in BENCHES.items():
        p = benches.add_parser(name, help=bench.help, description=bench.settings.__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter,
                               epilog="examples:\n" + "\n".join(f"  {e}" for e in bench.examples))
        defaults = bench.settings()
        for field, help_ in bench.flags.items():
            default, flag = getattr(defaults, field), field.replace("_", "-")
            if isinstance(default, bool):
                p.add_argument(f"--no-{flag}", dest=field, action="store_false", default=None, help=help_)
                continue
            kind = type(default) if isinstance(default, (int, float)) else str
            shown = "" if "default" in help_ or default == "" else f" (default {_shown(field, default)})"
            p.add_argument(f"--{flag}", dest=field, type=kind, default=None, help=help_ + shown)
        p.add_argument("--config", default=None, help=f"YAML/JSON file (URL) of {bench.settings.__name__} settings")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a setting named in the description, e.g. frames=60 (repeatable)")
        p.add_argument("--out", default="outputs/bench", help=f"result folder ({name}.json in it) or a .json file")
        p.add_argument("--smoke", action="store_true", help="a seconds-long version (tiny sizes), for tests")


def bench_settings(args: argparse.Namespace):
    """The settings of `edn bench NAME` from its defaults, --config, --smoke, its flags and --set."""
    bench = BENCHES[args.bench]
    flags = {**(bench.smoke if args.smoke else {}),
             **{field: getattr(args, field) for field in bench.flags if getattr(args, field, None) is not None}}
    return load_config(bench.settings, args.config, args.set, flags=flags)
