"""Ingest, part 2: a video's staged segments -> its committed dataset entry.

Needs the whole video's detections, but only keypoints (a few KB a frame): the main dancer is
followed through every person detected, the keypoints cleaned, face boxes and the floor
statistics computed; then each segment's frames are copied into its final part with those
columns, a row group at a time, and the record is written last.
"""
from __future__ import annotations

import datetime
import json
import time
from dataclasses import asdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from edn.data.schema import FRAMES_SCHEMA, LAYOUT, decode_image
from edn.errors import DataError
from edn.pose.cleanup import DETECTED, DROPPED, INTERPOLATED, CleanupConfig, clean_keypoints
from edn.pose.face import face_box, face_box_side
from edn.pose.layout import N_KEYPOINTS, has_pose
from edn.pose.normalize import floor_stats_or_reason
from edn.pose.track import DancerTracker, TrackConfig, torso_colour
from edn.storage import filesystem, join, write_bytes_atomic, written_locally


class NoPersonError(DataError):
    pass


def _open(url: str) -> pq.ParquetFile:
    fs, path = filesystem(url)
    return pq.ParquetFile(fs.open(path, "rb"))


def _segment_people(url: str, track: TrackConfig):
    """A staged segment's frame indices, timestamps, each frame's (P, 137, 3) people and their
    looks (edn.pose.track.torso_colour), read a row group at a time."""
    index, times, people, looks = [], [], [], []
    for batch in _open(url).iter_batches(batch_size=64, columns=["frame_index", "timestamp", "people", "image"]):
        col = batch.column("people")
        flat = np.asarray(col.flatten().flatten(), np.float32).reshape(-1, N_KEYPOINTS, 3)
        frames = np.split(flat, np.cumsum(col.value_lengths().to_numpy())[:-1])
        people += frames
        looks += [[torso_colour(image, p, track.min_confidence) for p in ps]
                  for ps, image in zip(frames, map(decode_image, batch.column("image").to_pylist()))]
        index.append(batch.column("frame_index").to_numpy())
        times.append(batch.column("timestamp").to_numpy())
    return np.concatenate(index), np.concatenate(times), people, looks


def commit_video(out_url: str, video: dict, estimator: str, estimator_options: dict,
                 track: TrackConfig, cleanup: CleanupConfig) -> dict:
    """Publish one fully staged video (`video` is segments.plan_video's plan); returns its record."""
    start = time.time()
    vid, t = video["video_id"], video["transform"]
    w, h = t["width"], t["height"]
    files = [join(video["staging"], f"seg-{a:09d}.parquet") for a, _ in video["segments"]]
    # segment by segment, so only the dancer's pose of each frame is held, not everybody's
    tracker = DancerTracker(w, h, track)
    index, times, chosen, people_counts = [], [], [], []
    for url in files:
        seg_index, seg_times, people, looks = _segment_people(url, track)
        index.append(seg_index)
        times.append(seg_times)
        chosen += [tracker(p, look) for p, look in zip(people, looks)]
        people_counts += [len(p) for p in people]
    index, times = np.concatenate(index), np.concatenate(times)
    people_counts = np.array(people_counts, np.int16)
    if not np.array_equal(index, np.arange(video["frames"])):
        raise ValueError(f"{video['url']}: staged frames are not 0..{video['frames'] - 1} in order")
    found = np.array([p is not None for p in chosen])
    if not found.any():
        raise NoPersonError(f"{video['url']}: no person detected in any of its {len(chosen)} frames")
    raw = np.stack([p if p is not None else np.zeros((N_KEYPOINTS, 3), np.float32) for p in chosen])
    poses, flags = clean_keypoints(raw, times, h, cleanup)
    boxes = [face_box(p, w, h) for p in poses]
    # none when the feet are never in view: the video can still be a source of figures
    stats, stats_error = floor_stats_or_reason(poses, w, h)

    frames_dir = join(out_url, "frames", vid)
    fs, path = filesystem(frames_dir)
    if fs.exists(path):  # leftovers of a commit that was cut off
        fs.rm(path, recursive=True)
    parts = []
    extra = {"keypoints": poses.reshape(len(poses), -1), "keypoint_flags": flags, "person_detected": found,
             "people_detected": people_counts, "face_box": boxes}
    for url, (a, b) in zip(files, video["segments"]):
        parts.append(f"part-{a:09d}.parquet")
        _write_part(url, join(frames_dir, parts[-1]), {k: v[a:b] for k, v in extra.items()})

    counts = {name: int((flags == value).sum()) for name, value in
              (("detected", DETECTED), ("interpolated", INTERPOLATED), ("dropped", DROPPED))}
    record = {
        "video_id": vid, "layout": LAYOUT, "source_url": video["url"], "frames": len(poses),
        "detected_frames": int(found.sum()), "frames_without_pose": int((~has_pose(poses)).sum()),
        "fps": video["fps"], "source_width": video["source_width"], "source_height": video["source_height"],
        "rotation": video["rotation"], "width": w, "height": h,
        "transform": {k: t[k] for k in ("scale", "offset_x", "offset_y")},
        "estimator": estimator, "estimator_options": estimator_options, "parts": parts,
        "segments": video["segments"],
        "keypoints": {"track": asdict(track), "cleanup": asdict(cleanup), "keypoint_counts": counts,
                      "dancer_acquisitions": tracker.acquisitions,
                      "frames_with_several_people": int((people_counts > 1).sum())},
        "face_box_size": face_box_side(w, h), "floor_stats": stats and stats.to_dict(),
        "floor_stats_error": stats_error,
        "seconds": round(time.time() - start, 3),
        "committed_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_bytes_atomic(join(out_url, "videos", f"{vid}.json"), json.dumps(record, indent=1).encode())
    fs, path = filesystem(video["staging"])
    fs.rm(path, recursive=True)
    return record


def _write_part(staged_url: str, part_url: str, columns: dict) -> None:
    staged = _open(staged_url)
    done = 0
    with written_locally(part_url) as local:
        with pq.ParquetWriter(local, FRAMES_SCHEMA) as writer:
            for batch in staged.iter_batches(batch_size=64, columns=[f.name for f in FRAMES_SCHEMA][:6]):
                n = batch.num_rows
                arrays = list(batch.columns) + [
                    pa.array(list(columns["keypoints"][done:done + n]), FRAMES_SCHEMA.field("keypoints").type),
                    pa.array(columns["person_detected"][done:done + n]),
                    pa.array(columns["people_detected"][done:done + n]),
                    pa.array(list(columns["keypoint_flags"][done:done + n]),
                             FRAMES_SCHEMA.field("keypoint_flags").type),
                    pa.array(columns["face_box"][done:done + n], FRAMES_SCHEMA.field("face_box").type),
                ]
                writer.write_table(pa.Table.from_arrays(arrays, schema=FRAMES_SCHEMA))
                done += n
