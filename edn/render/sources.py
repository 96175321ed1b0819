"""Source poses for a catalog: a video of an ingested dataset as it is, or a video file whose
poses are extracted with the ingest code (edn.data.ingest; not a second implementation) into
a cache dataset keyed by the file's content, so a source shared by many targets, or met again
in a later catalog, is processed once."""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from edn.data.ingest import IngestConfig, ingest
from edn.data.reader import video_record
from edn.errors import DataError
from edn.storage import filesystem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    dataset_url: str
    video_id: str
    frames: int
    fps: float
    floor: dict | None        # FloorStats.to_dict; None when the source's feet were never seen
    frames_without_pose: int  # frames where the dancer was not found: rendered as the target's empty scene


def content_id(url: str, block: int = 1 << 22) -> str:
    """"src-" + the first 20 hex digits of the file's SHA-256."""
    fs, path = filesystem(url)
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return "src-" + digest.hexdigest()[:20]


def describe(dataset_url: str, video_id: str) -> Source:
    """The source as rendering needs it, or an error saying why it cannot be rendered."""
    record = video_record(dataset_url, video_id)
    if not record.get("detected_frames"):
        raise DataError(f"{record['source_url']}: no person was detected in the source video")
    return Source(dataset_url, video_id, record["frames"], record["fps"] or 30.0, record.get("floor_stats"),
                  record["frames_without_pose"])


def prepare_sources(video_urls: list[str], cache_url: str, cfg: IngestConfig) -> dict[str, Source | str]:
    """video URL -> its Source in the cache dataset (extracted now unless cached), or the error."""
    import ray

    found = {}
    hash_task = ray.remote(num_cpus=0.25, max_retries=2)(content_id)
    refs = {url: hash_task.remote(url) for url in dict.fromkeys(video_urls)}
    for url, ref in refs.items():
        try:
            found[url] = ray.get(ref)
        except Exception as e:
            cause = getattr(e, "cause", None) or e
            found[url] = f"{url}: cannot read the source video ({type(cause).__name__}: {cause})"
    ids = {url: vid for url, vid in found.items() if vid.startswith("src-")}
    unique = dict(zip(ids.values(), ids))  # one extraction per content, whatever the URL
    errors: dict[str, str] = {}
    if unique:
        result = ingest(list(unique.values()), cache_url, cfg, video_ids=list(unique))
        log.info("source poses: %d extracted, %d cached, %d failed", len(result["done"]),
                 len(result["skipped"]), len(result["failed"]))
        errors = {f["video_id"]: f["error"] for f in result["failed"]}
    out: dict[str, Source | str] = {}
    for url, vid in found.items():
        if not vid.startswith("src-"):
            out[url] = vid
        elif vid in errors:
            out[url] = errors[vid]
        else:
            try:
                out[url] = describe(cache_url, vid)
            except (ValueError, FileNotFoundError) as e:
                out[url] = str(e)
    return out
