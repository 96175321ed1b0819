"""Ingest: videos at fsspec URLs -> the Parquet frame/pose dataset (schema.py).

1. plan: each video is probed and cut into segments at keyframes (Ray tasks, no decoding);
2. extract: segments stream through a pool of pose-detector actors (Ray Data `map_batches` with
   a callable class, so each detector model is loaded once per actor), each staged as Parquet;
3. commit: once all its segments are staged, a video's dancer is tracked, its keypoints cleaned,
   and its parts and record published (commit.py).
A bad video fails alone, with its file and reason in errors/; a rerun skips committed videos
and staged segments.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field

from edn.data.commit import commit_video
from edn.data.segments import ExtractPoses, describe_error, plan_video
from edn.errors import DataError, ResourcesError
from edn.pose.cleanup import CleanupConfig
from edn.pose.track import TrackConfig
from edn.progress import Progress
from edn.storage import exists, filesystem, join, write_bytes_atomic

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm")


@dataclass
class IngestConfig:
    estimator: str = "mediapipe"
    estimator_options: dict = field(default_factory=dict)  # keyword arguments of the detector
    width: int | None = None   # stored frame size; None keeps the source size
    height: int | None = None
    segment_frames: int = 900  # frames per independently decoded segment (cut at the next keyframe)
    concurrency: int = 1       # pose-detector actors
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    rows_per_group: int = 64   # Parquet row group: frames buffered before a write
    actor_start_timeout_s: int = 600  # detector actors that cannot start by then: fail, saying why
    track: TrackConfig = field(default_factory=TrackConfig)
    cleanup: CleanupConfig = field(default_factory=CleanupConfig)

    def staging_settings(self) -> dict:
        """What shapes a staged segment's content."""
        return {"estimator": self.estimator, "options": self.estimator_options, "width": self.width,
                "height": self.height, "segment_frames": self.segment_frames}


def video_id_for(url: str) -> str:
    stem = os.path.splitext(os.path.basename(url.rstrip("/")))[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "video"


def expand_inputs(urls: list[str]) -> list[str]:
    """Files as given (missing ones too: they fail as their own error); folders -> their videos."""
    out = []
    for url in urls:
        fs, path = filesystem(url)
        if fs.isdir(path):
            protocol = url.split("://")[0] + "://" if "://" in url else ""
            out += sorted(protocol + p for p in fs.ls(path, detail=False) if p.lower().endswith(VIDEO_SUFFIXES))
        else:
            out.append(url)
    return out


def _plan(url: str, video_id: str, out_url: str, cfg: IngestConfig) -> dict:
    try:
        return plan_video(url, video_id, out_url, cfg.staging_settings(), cfg.segment_frames)
    except Exception as e:
        return {"error": describe_error(url, e)}


def _commit(out_url: str, video: dict, cfg: IngestConfig) -> dict:
    try:
        return commit_video(out_url, video, cfg.estimator, cfg.estimator_options, cfg.track, cfg.cleanup)
    except Exception as e:
        return {"error": describe_error(video["url"], e)}


def ingest(urls: list[str], out_url: str, cfg: IngestConfig | None = None,
           video_ids: list[str] | None = None) -> dict:
    """Ingest videos into the dataset at `out_url`. Returns {"done", "skipped", "failed"} lists.
    Each video's id is its file name's stem, unless `video_ids` names them (one per URL, files
    only: a cache keyed by content, say)."""
    import ray

    cfg = cfg or IngestConfig()
    if video_ids is None:
        urls = expand_inputs(urls)
    elif len(video_ids) != len(urls):
        raise ValueError(f"{len(video_ids)} video ids for {len(urls)} videos")
    ids = video_ids or [video_id_for(u) for u in urls]
    clashes = {i for i in ids if ids.count(i) > 1}
    if clashes:
        raise DataError(f"videos share a file name, so their ids clash: {sorted(clashes)}")
    todo = {i: u for u, i in zip(urls, ids) if not exists(join(out_url, "videos", f"{i}.json"))}
    skipped = sorted(set(ids) - set(todo))
    if skipped:
        log.info("already complete, skipped: %s", skipped)
    failed: dict[str, str] = {}
    plan_task = ray.remote(num_cpus=0.25)(_plan)
    plans = dict(zip(todo, ray.get([plan_task.remote(u, i, out_url, cfg) for i, u in todo.items()])))
    videos = {}
    for vid, plan in plans.items():
        if "error" in plan:
            failed[vid] = plan["error"]
        else:
            videos[vid] = plan["video"]
    pending = [row for vid in videos for row in plans[vid]["segments"] if not exists(row["staging_file"])]
    remaining, done_frames = defaultdict(int), {vid: v["frames"] for vid, v in videos.items()}
    for row in pending:  # a segment staged by an earlier run counts as done
        remaining[row["video_id"]] += 1
        done_frames[row["video_id"]] -= row["stop"] - row["start"]
    commit_task = ray.remote(num_cpus=0.5)(_commit)
    commits = {vid: commit_task.remote(out_url, v, cfg) for vid, v in videos.items() if not remaining[vid]}
    if pending:
        actors = max(1, min(cfg.concurrency, len(pending)))
        with _detector_slots(cfg, actors) as slots, Progress(
                f"ingest {out_url}", sum(v["frames"] for v in videos.values()), "frames",
                initial=sum(done_frames.values())) as progress:
            results = ray.data.from_items(pending, override_num_blocks=len(pending)).map_batches(
                ExtractPoses, fn_constructor_args=(cfg.estimator, cfg.estimator_options, cfg.rows_per_group),
                batch_size=1, num_cpus=cfg.cpus_per_actor, num_gpus=cfg.gpus_per_actor, scheduling_strategy=slots,
                # one segment in flight per actor: otherwise the first actor up queues the others' work
                compute=ray.data.ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=1))
            for r in results.iter_rows():
                vid = r["video_id"]
                if r["error"]:
                    failed.setdefault(vid, r["error"])
                done_frames[vid] += int(r["frames"])
                remaining[vid] -= 1
                log.info("%s: %d/%d frames", vid, done_frames[vid], videos[vid]["frames"])
                progress.set(sum(done_frames.values()), videos=f"{sum(not n for n in remaining.values())} of "
                                                              f"{len(videos)} extracted")
                if remaining[vid] == 0 and vid not in failed:
                    commits[vid] = commit_task.remote(out_url, videos[vid], cfg)
    done = []
    for vid, record in zip(commits, ray.get(list(commits.values()))):
        if "error" in record:
            failed[vid] = record["error"]
        else:
            done.append(vid)
    for vid, error in failed.items():
        log.error("ingest failed: %s", error)
        write_bytes_atomic(join(out_url, "errors", f"{vid}.json"),
                           json.dumps({"video_id": vid, "url": todo[vid], "error": error}).encode())
    for vid in done:  # a retry that succeeded clears the old failure
        if exists(join(out_url, "errors", f"{vid}.json")):
            fs, path = filesystem(join(out_url, "errors", f"{vid}.json"))
            fs.rm(path)
    return {"done": sorted(done), "skipped": skipped,
            "failed": [{"video_id": vid, "url": todo[vid], "error": error} for vid, error in sorted(failed.items())]}


@contextlib.contextmanager
def _detector_slots(cfg: IngestConfig, actors: int):
    """The detectors' CPUs and GPUs as one placement group, ready within actor_start_timeout_s or an
    error naming what was asked and what was free, not a wait without end; yields the scheduling
    strategy that puts the detectors in it, and removes it when the extraction ends or fails.
    Removing a group withdraws its request: a Ray Data actor pool that gives up waiting leaves its
    actors queued in the cluster (Ray 2.60), where they would take CPUs freed later or stay for ever."""
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    bundle = {k: v for k, v in (("CPU", cfg.cpus_per_actor), ("GPU", cfg.gpus_per_actor)) if v}
    slots = placement_group([bundle] * actors, strategy="SPREAD")
    try:
        if not slots.wait(cfg.actor_start_timeout_s):
            raise ResourcesError(
                f"ingest: the Ray cluster could not start {actors} pose-detector actor(s) of "
                f"{cfg.cpus_per_actor} CPU and {cfg.gpus_per_actor} GPU within {cfg.actor_start_timeout_s} s "
                f"(actor_start_timeout_s): free now {ray.available_resources()} of {ray.cluster_resources()}; "
                "something else holds them (see `ray status`), or ask for less")
        yield PlacementGroupSchedulingStrategy(slots)
    finally:
        remove_placement_group(slots)
