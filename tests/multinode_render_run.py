"""Run by test_multinode.py in a process of its own: a catalog rendered by two render actors on
two different nodes; one of those nodes is removed once the first chunks are staged and a
fresh node joins. Prints a JSON summary: the manifest, each output's frames, and how often
each row was finished.

    python -m tests.multinode_render_run WORK_DIR VIDEO VIDEO
"""
from __future__ import annotations

import glob
import json
import logging
import os
import sys
import tempfile
import threading

import pandas as pd
import ray
from mlflow import MlflowClient

from edn.data.ingest import IngestConfig, ingest, video_id_for
from edn.data.reader import video_record
from edn.inference import write_model_dir
from edn.models.body import BodyGenerator
from edn.models.meta import ModelMeta
from edn.models.networks import GeneratorConfig
from edn.pose.normalize import FloorStats
from edn.registry import register
from edn.render.batch import CatalogConfig, render_catalog
from edn.render.manifest import read_manifest
from edn.tracking import experiment_id
from edn.video import probe
from tests.multinode_run import SLOT, replace_a_node, shut_down, start_cluster


def register_untrained(uri: str, dataset: str, target: str) -> None:
    """A temporal generator as initialised, registered for `target`: rendering costs the same."""
    import torch
    torch.manual_seed(0)
    gen = GeneratorConfig(ngf=16, n_downsample=2, n_blocks=2)
    record = video_record(dataset, target)
    client = MlflowClient(uri)
    run = client.create_run(experiment_id(client, "edn-multinode-render")).info.run_id
    meta = ModelMeta(target=target, width=record["width"], height=record["height"], fps=record["fps"],
                     generator=gen, temporal=True, floor_stats=FloorStats.from_dict(record["floor_stats"]),
                     dataset_url=dataset, holdout_start=record["frames"], body_run_id=run, body_steps=0,
                     perceptual_loss=False, stage="body")
    with tempfile.TemporaryDirectory() as tmp:
        write_model_dir(tmp, BodyGenerator(gen, temporal=True).state_dict(), meta)
        register(client, run, tmp, f"edn-{target}", "production")


class RowsFinished(logging.Handler):
    """Counts the driver's 'row N done' records: a row finished twice would show here."""

    def __init__(self):
        super().__init__()
        self.rows: list[int] = []

    def emit(self, record):
        if record.getMessage().startswith("row ") and " done: " in record.getMessage():
            self.rows.append(int(record.getMessage().split()[1]))


def main(work: str, *videos: str) -> dict:
    cluster, nodes = start_cluster()
    dataset = os.path.join(work, "dataset")
    assert len(ingest(list(videos), dataset, IngestConfig(estimator="groundtruth", width=64, height=64))["done"]) == 2
    uri = f"sqlite:///{work}/mlflow.db"
    ids = [video_id_for(v) for v in videos]
    for target in ids:
        register_untrained(uri, dataset, target)
    rows = [(s, dataset, f"edn-{t}", f"{s}_on_{t}.mp4") for s in ids for t in ids]
    pd.DataFrame(rows, columns=["source", "dataset", "target", "output"]).to_csv(f"{work}/catalog.csv", index=False)
    out = os.path.join(work, "out")
    staged = os.path.join(out, "_work", "chunks", "*", "*.mp4")
    seen, stop = {"worker_nodes": [n.node_id for n in nodes]}, threading.Event()

    def chunks_staged():
        # a chunk staged while a render actor runs on each worker node: an actor that loads its model
        # in a fraction of a second can stage one before the other node's actor is up
        found = glob.glob(staged)
        placement = sorted({a["Address"]["NodeID"] for a in ray._private.state.actors().values()
                            if a["ActorClassName"] == "RenderWorker" and a["State"] == "ALIVE"})
        return found and placement == sorted(seen["worker_nodes"]) and {"placement": placement,
                                                                        "staged_when_removed": len(found)}
    finished = RowsFinished()
    logging.getLogger("edn.render.results").addHandler(finished)
    logging.getLogger("edn.render.results").setLevel(logging.INFO)
    threading.Thread(target=replace_a_node, daemon=True,
                     args=(cluster, nodes[0], chunks_staged, seen, stop, work)).start()
    cfg = CatalogConfig(tracking_uri=uri, chunk_frames=12, warmup_frames=4, batch_chunks=2, actors=2,
                        resources_per_actor={SLOT: 1}, worker_restarts=3)
    try:
        result = render_catalog(f"{work}/catalog.csv", out, cfg)
        seen["actor_restarts"] = sum(int(a.get("NumRestarts", 0)) for a in ray._private.state.actors().values()
                                     if a["ActorClassName"] == "RenderWorker")
    finally:
        shut_down(cluster, seen, stop)
    manifest = read_manifest(out)
    return {**seen, "result": {k: v for k, v in result.items() if k != "manifest"},
            "manifest_rows": [m["row"] for m in manifest], "statuses": [m["status"] for m in manifest],
            "frames": [probe(m["output"]).frames if m["status"] == "done" else 0 for m in manifest],
            "expected_frames": [video_record(dataset, s)["frames"] for s, *_ in rows],
            "rows_finished": sorted(finished.rows)}


if __name__ == "__main__":
    print("SUMMARY " + json.dumps(main(*sys.argv[1:])))
