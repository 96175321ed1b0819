"""One motion transfer in this process: a source video's poses, normalized to the target,
rendered by its model in a single pass (`edn render`; a catalog renders many, in chunks)."""
from __future__ import annotations

import logging

from edn.data.reader import video_record
from edn.inference import TargetModel
from edn.render.chunks import Chunk, SourceChunk, compose, normalization, render_chunks
from edn.render.output import TransferWriter

log = logging.getLogger(__name__)


def transfer(dataset_url: str, source: str, model: TargetModel, out_url: str, layout: str = "side_by_side",
             use_face: bool = True, resolution: tuple[int, int] | None = None) -> dict:
    """Render source video `source` (ingested in `dataset_url`) onto `model`'s target."""
    record = video_record(dataset_url, source)
    frames = record["frames"]
    whole = SourceChunk(dataset_url, source, record.get("floor_stats"), Chunk(0, frames, 0))
    render = model.renderer(use_face)
    with TransferWriter(dataset_url, source, out_url) as writer:
        for _, index, image, figure, output in render_chunks(render, [whole]):
            writer.write(compose(layout, image, figure, output, resolution))
            if (index + 1) % 100 == 0:
                log.info("transfer %s -> %s: %d/%d frames", source, model.meta.target, index + 1, frames)
    return {"source": source, "target": model.meta.target, "model_version": model.version,
            "frames": writer.written, "frames_without_pose": record.get("frames_without_pose"),
            "normalization": normalization(bool(record.get("floor_stats")), model.floor is not None),
            "face_gan": render.use_face, "audio": writer.audio,
            "output": out_url, **({"zero_shot": model.zero_shot_note} if model.zero_shot_note else {})}

