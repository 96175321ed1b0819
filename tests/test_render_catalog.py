"""A catalog of transfers rendered on Ray: 3 sources x 2 targets and bad rows, chunked with
warm-up, the sources' music carried over, a manifest, and a rerun that does no work."""
import base64
import dataclasses
import html.parser
import json
import logging
import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pandas as pd
import pytest
import ray
from mlflow import MlflowClient

from edn.data.ingest import IngestConfig, ingest
from edn.data.reader import video_record
from edn.inference import write_model_dir
from edn.models.face import FaceGeneratorConfig, face_discriminator_config
from edn.models.networks import DiscriminatorConfig, GeneratorConfig
from edn.pose.normalize import FloorStats
from edn.registry import load_registered, register
from edn.render.batch import CatalogConfig, render_catalog, row_chunks, staged_chunks, staged_name
from edn.render.chunks import Chunk, SourceChunk, chunk_counts, render_chunks, split
from edn.render.manifest import read_manifest
from edn.runtime import resolve
from edn.synth import synthesize
from edn.tracking import experiment_id
from edn.train.config import TrainConfig
from edn.train.run import train
from edn.video import probe
from tests.audio_helpers import assert_plays_in_sync

pytestmark = pytest.mark.slow  # trains or runs jobs: started first (tests/conftest.py)

FRAMES, SIZE = 96, 64


@pytest.fixture(scope="module")
def studio(ray_cluster, mlflow_server, tmp_path_factory):
    """Three dancers with music; two ingested; a trained temporal+face model for dancer_00 and,
    for dancer_01, the same generators registered with dancer_01's body (floor statistics)."""
    root = tmp_path_factory.mktemp("studio")
    videos = synthesize(str(root / "videos"), dancers=3, frames=FRAMES, size=(SIZE, SIZE), seed=7, audio=True)
    mp4s = sorted(v for v in videos if v.endswith(".mp4"))
    dataset = str(root / "dataset")
    assert len(ingest(mp4s[:2], dataset, IngestConfig(estimator="groundtruth"))["done"]) == 2
    cfg = TrainConfig(dataset_url=dataset, target="dancer_00",
                      generator=GeneratorConfig(ngf=8, n_downsample=2, n_blocks=1),
                      discriminator=DiscriminatorConfig(ndf=8, n_layers=2, num_D=1),
                      steps=60, batch_size=4, num_workers=0, checkpoint_every=60, log_every=30, image_every=60,
                      lambda_l1=10.0, storage_path=str(root / "ray"), tracking_uri=mlflow_server, allow_no_vgg=True)
    train(cfg)
    train(dataclasses.replace(cfg, stage="face", steps=4, checkpoint_every=4,
                              face_generator=FaceGeneratorConfig(ngf=8, n_downsample=2, n_blocks=1),
                              face_discriminator=face_discriminator_config(ndf=8, n_layers=2)))
    model = load_registered("edn-dancer_00", "candidate", mlflow_server)
    meta = dataclasses.replace(model.meta, target="dancer_01",
                               floor_stats=FloorStats.from_dict(video_record(dataset, "dancer_01")["floor_stats"]))
    client = MlflowClient(mlflow_server)
    run = client.create_run(experiment_id(client, "edn-catalog-test")).info.run_id
    write_model_dir(str(root / "m1"), model.body.state_dict(), meta, model.face.state_dict())
    register(client, run, str(root / "m1"), "edn-dancer_01", "production")
    return {"root": root, "dataset": dataset, "mp4s": mp4s, "tracking_uri": mlflow_server}


def _catalog(studio, path) -> str:
    ds, v2 = studio["dataset"], studio["mp4s"][2]
    corrupt = str(studio["root"] / "corrupt.mp4")
    with open(v2, "rb") as f:
        data = f.read()
    with open(corrupt, "wb") as f:  # header kept, the rest noise
        f.write(data[:64] + bytes(np.random.default_rng(0).integers(0, 256, len(data) - 64, dtype=np.uint8)))
    blocked = str(studio["root"] / "a_file")
    open(blocked, "w").close()
    rows = [
        ("dancer_00", ds, "edn-dancer_01", "d00_on_d01.mp4", "", ""),            # default alias: production
        ("dancer_01", ds, "edn-dancer_00@candidate", "d01_on_d00.mp4", "", ""),
        ("dancer_01", ds, "edn-dancer_01@production", "d01_on_d01.mp4", "output", "false"),
        ("dancer_00", ds, "edn-dancer_00@candidate", "d00_on_d00.mp4", "output", "true"),
        (v2, "", "edn-dancer_00@candidate", "d02_on_d00.mp4", "", ""),            # a video file: poses on the fly
        (v2, "", "edn-dancer_01@production", "d02_on_d01.mp4", "", ""),
        ("dancer_00", ds, "edn-nobody@production", "bad_model.mp4", "", ""),
        (corrupt, "", "edn-dancer_00@candidate", "bad_source.mp4", "", ""),
        ("dancer_00", ds, "edn-dancer_00@candidate", f"{blocked}/under_a_file.mp4", "", ""),
        ("dancer_00", ds, "edn-dancer_00@candidate", "bad_layout.mp4", "sideways", ""),
    ]
    columns = ["source", "dataset", "target", "output", "layout", "face_gan"]
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return str(path)


class Gallery(html.parser.HTMLParser):
    """index.html's rows: row, status, video src and poster, and each cell's text."""

    def __init__(self, path):
        super().__init__()
        self.rows, self.cell = [], None
        self.feed(open(path).read())

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-row" in a:
            self.rows.append({"row": int(a["data-row"]), "status": a["data-status"], "cells": []})
        elif tag == "td" and self.rows:
            self.rows[-1]["cells"].append("")
            self.cell = self.rows[-1]["cells"]
        elif tag == "video":
            self.rows[-1] |= {"src": a["src"], "poster": a["poster"]}

    def handle_endtag(self, tag):
        if tag == "td":
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[-1] += data


def check_gallery(out: str, manifest: dict[int, dict]) -> list[dict]:
    """index.html holds every manifest row with its status; a done row's poster is a frame of its
    video and its link leads to the output; a failed row shows its stage and error."""
    rows = Gallery(os.path.join(out, "index.html")).rows
    assert {r["row"]: r["status"] for r in rows} == {n: m["status"] for n, m in manifest.items()}
    for r in rows:
        m = manifest[r["row"]]
        stage, error = r["cells"][6], r["cells"][7]
        assert (r["cells"][2], r["cells"][3]) == (m["source"], m["target"])
        if m["status"] == "done":
            assert os.path.normpath(os.path.join(out, r["src"])) == os.path.normpath(m["output"])
            head, data = r["poster"].split(",", 1)
            assert head == "data:image/jpeg;base64"
            poster = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
            info = probe(m["output"])
            assert poster.shape[:2] == (info.height, info.width) and poster.std() > 5  # a frame, not a blank
        else:
            assert "src" not in r and (stage, error) == (m["stage"] or "", m["error"] or "")
    return rows


def test_catalog_renders_isolates_bad_rows_and_reruns_nothing(studio, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="edn.progress")
    out = str(tmp_path / "out")
    catalog = _catalog(studio, tmp_path / "catalog.csv")
    cfg = CatalogConfig(tracking_uri=studio["tracking_uri"], chunk_frames=40, warmup_frames=16, batch_chunks=3,
                        actors=2, ingest=IngestConfig(estimator="groundtruth"))
    client = MlflowClient(studio["tracking_uri"])  # the session's server: other tests register versions too
    production = client.get_model_version_by_alias("edn-dancer_01", "production").version
    candidate = client.get_model_version_by_alias("edn-dancer_00", "candidate").version
    # dancer_01's model as if its evaluation cleared fp32 only (edn.eval.precision); dancer_00's was never evaluated
    client.set_model_version_tag("edn-dancer_01", production, "edn.precisions", "fp32")
    result = render_catalog(catalog, out, cfg)
    manifest = {r["row"]: r for r in read_manifest(out)}
    assert result["done"] == result["rendered"] == 6 and len(manifest) == 10
    failed = {r["row"]: r for r in result["failed"]}
    assert set(failed) == {6, 7, 8, 9}
    assert failed[6]["stage"] == "model" and "edn-nobody" in failed[6]["error"] and "production" in failed[6]["error"]
    assert failed[7]["stage"] == "source" and "corrupt.mp4" in failed[7]["error"]
    assert failed[8]["stage"] == "output" and "under_a_file.mp4" in failed[8]["error"]
    assert failed[9]["stage"] == "catalog" and "sideways" in failed[9]["error"]
    check_gallery(out, manifest)
    assert "complete" in open(os.path.join(out, "index.html")).read()
    line = [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"catalog {catalog}: ")][-1]
    assert f"{6 * FRAMES}/{6 * FRAMES} frames (100%)" in line and "ETA" in line
    assert "rows 6 done, 4 failed, of 10" in line
    assert manifest[0]["model_version"] == f"edn-dancer_01@{production}"
    assert manifest[1]["model_version"] == f"edn-dancer_00@{candidate}"

    # the shared video file was extracted once, under its content hash
    sources = os.listdir(os.path.join(out, "_work", "sources", "videos"))
    assert len(sources) == 1 and sources[0].startswith("src-")
    # 2 actors, 2 targets: each model loaded at most once per actor
    assert result["model_loads"] <= 4
    # the job's timeline (edn.render.batch.job_timeline), in the order its parts happen
    t = result["timeline"]
    assert 0 < t["validated_s"] <= t["first_render_s"] <= t["renders_done_s"] <= t["total_s"], t
    assert t["actors_ready_s"] <= t["renders_done_s"] and 0 < t["model_load_s"] < t["render_calls_s"], t
    assert t["renders_done_s"] <= t["last_join_started_s"] <= t["total_s"] and 0 < t["joins_s"], t

    for number, row in manifest.items():
        if row["status"] != "done":
            continue
        assert row["frames"] == FRAMES and row["seconds_per_frame"] > 0 and row["audio"] == "copied"
        auto = resolve("cpu")  # what the actors' auto picks on this CPU
        if row["target"].startswith("edn-dancer_01"):  # kept to what its evaluation cleared
            assert (row["device"], row["precision"]) == ("cpu", "fp32")
            assert ("evaluated in fp32 only" if auto.precision == "bf16" else "cleared fp32") in row["precision_reason"]
        else:
            assert (row["device"], row["precision"], row["precision_reason"]) == ("cpu", auto.precision,
                                                                                 auto.precision_reason)
        info = probe(row["output"])
        layout_width = SIZE if number in (2, 3) else 3 * SIZE
        assert (info.width, info.height, info.frames) == (layout_width, SIZE, FRAMES)
    # the music is intact and in sync to the sample, from the source's first frame to the video's end
    for number in (4, 5):
        assert_plays_in_sync(manifest[number]["output"], studio["mp4s"][2], 0.0, FRAMES / 30)
    assert not os.path.exists(os.path.join(out, "_work", "chunks", manifest[0]["row_id"]))  # staging cleaned

    mtimes = {n: os.path.getmtime(r["output"]) for n, r in manifest.items() if r["status"] == "done"}
    again = render_catalog(catalog, out, cfg)
    assert again["done"] == 6 and again["rendered"] == 0 and again["skipped"] == 6
    assert again["model_loads"] == 0 and again["actors"] == 0
    assert {n: os.path.getmtime(manifest[n]["output"]) for n in mtimes} == mtimes
    assert {r["row"] for r in again["failed"]} == {6, 7, 8, 9}  # failed rows were tried again
    assert all(not r["ran"] for r in read_manifest(out) if r["status"] == "done")


def test_a_killed_driver_leaves_the_rows_finished_so_far(studio, tmp_path):
    """`edn render-catalog` killed (SIGKILL) once a row is done: the manifest and index.html hold the
    rows finished so far, done with their videos, the others pending; a rerun keeps those and renders
    the rest. The driver joins the session's Ray cluster, as a driver on a cluster does, and Ray ends
    its job's actors with it: a local Ray of its own took 20 processes starting beside the other
    pytest process's work, and Ray gives a starting node 30 s (once, under load, it was not enough)."""
    ds, out = studio["dataset"], str(tmp_path / "out")
    rows = [(src, ds, target, f"{src}_{target.split('@')[0]}_{face}.mp4", "output", face)
            for src in ("dancer_00", "dancer_01") for target in ("edn-dancer_00@candidate", "edn-dancer_01@production")
            for face in ("false", "true")]
    catalog = str(tmp_path / "catalog.csv")
    pd.DataFrame(rows, columns=["source", "dataset", "target", "output", "layout", "face_gan"]).to_csv(catalog,
                                                                                                    index=False)
    # short chunks with long warm-ups, one at a time: a job of many small steps, to be killed inside
    settings = ["actors=1", "batch_chunks=1", "chunk_frames=8", "warmup_frames=16", "publish_every_s=0"]
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    driver = subprocess.Popen([sys.executable, "-m", "edn.cli", "render-catalog", "--catalog", catalog, "--out", out,
                               "--tracking-uri", studio["tracking_uri"], *[x for s in settings for x in ("--set", s)]],
                              env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "driver.log", "w"),
                              start_new_session=True)
    manifest, deadline = {}, time.monotonic() + 600
    try:
        while driver.poll() is None and time.monotonic() < deadline:
            if os.path.exists(os.path.join(out, "manifest.parquet")):
                manifest = {r["row"]: r for r in read_manifest(out)}
                if any(r["status"] == "done" for r in manifest.values()):
                    break
            time.sleep(0.1)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    manifest = {r["row"]: r for r in read_manifest(out)}
    states = {n: json.loads(open(path).read()) for n, r in manifest.items()
              if os.path.exists(path := os.path.join(out, "_work", "rows", f"{r['row_id']}.json"))}
    page = {r["row"]: r["status"] for r in Gallery(os.path.join(out, "index.html")).rows}
    # each is written after the one before: a row's state, then the page, then the manifest
    in_manifest, on_page = [{n for n, s in m.items() if s == "done"}
                            for m in ({n: r["status"] for n, r in manifest.items()}, page)]
    assert len(manifest) == 8 and set(page) == set(manifest), (tmp_path / "driver.log").read_text()
    assert in_manifest and in_manifest <= on_page <= set(states) and len(on_page) < 8
    for n in on_page:
        assert states[n]["status"] == "done" and probe(states[n]["output"]).frames == FRAMES
    check_gallery(out, {n: states[n] if n in on_page else r for n, r in manifest.items()})
    assert "in progress" in open(os.path.join(out, "index.html")).read()

    cfg = CatalogConfig(tracking_uri=studio["tracking_uri"], ingest=IngestConfig(estimator="groundtruth"))
    again = render_catalog(catalog, out, cfg)
    finished = {n for n, state in states.items() if state["status"] == "done"}
    assert again["done"] == 8 and again["skipped"] == len(finished)
    final = {r["row"]: r for r in read_manifest(out)}
    assert all(not final[n]["ran"] for n in finished)
    check_gallery(out, final)


def _render(model, dataset, chunks, use_face=True):
    from edn.data.reader import video_floor_stats
    floor = video_floor_stats(dataset, "dancer_01").to_dict()
    out = np.zeros((FRAMES, SIZE, SIZE, 3), np.uint8)
    for _, index, _, _, frame in render_chunks(model.renderer(use_face),
                                               [SourceChunk(dataset, "dancer_01", floor, c) for c in chunks]):
        out[index] = frame
    return out.astype(np.float32)


def test_chunk_seams_do_not_show(studio):
    """A seam shows as a jump between consecutive frames larger than the video's own motion ever
    makes. Chunks of 32 frames starting 24 frames early: the jump at each seam stays within the
    largest frame-to-frame change of a single-pass render, and every frame stays closer to the
    single-pass frame than the cold seams are. Without warm-up the seams jump past that."""
    model = load_registered("edn-dancer_00", "candidate", studio["tracking_uri"])
    single = _render(model, studio["dataset"], [Chunk(0, FRAMES, 0)])

    def jumps(frames):  # mean absolute change from frame t-1 to frame t, t = 1..N-1
        return np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    natural = jumps(single)[1:].max()  # from frame 1 on: frame 0 is itself a cold start
    seams = np.array([32, 64])
    errors, seam_jumps = {}, {}
    for warmup in (0, 24):
        chunks = split(FRAMES, 3, warmup)
        assert [c.start for c in chunks] == [0, 32, 64]
        chunked = _render(model, studio["dataset"], chunks)
        errors[warmup] = np.abs(chunked - single).mean(axis=(1, 2, 3))
        seam_jumps[warmup] = jumps(chunked)[seams - 1]
    print(f"largest natural jump {natural:.2f}; seam jumps cold {seam_jumps[0].round(2)} warm "
          f"{seam_jumps[24].round(2)}; difference from single pass at the seams cold {errors[0][seams].round(2)}, "
          f"warm worst frame {errors[24].max():.2f}")
    assert seam_jumps[24].max() <= natural < seam_jumps[0].min()
    assert errors[24].max() < 0.5 * errors[0][seams].min()


def test_chunks_are_cut_only_as_short_as_the_actors_need(tmp_path):
    """Two 160-frame rows, chunks of at most 240 frames and 5 warm-up (`edn bench render`'s
    catalog): one actor with 4 chunks side by side needs 4 chunks, two actors 8, so each row is
    cut in 2 and in 4 (5 warm-up frames a row at 80 frames a chunk, 15 at 40). Never below 4
    warm-ups a chunk; a row an interrupted run cut otherwise keeps its cut and its staged chunks."""
    assert chunk_counts([160, 160], 240, 4, 5) == [2, 2]
    assert chunk_counts([160, 160], 240, 8, 5) == [4, 4]
    assert chunk_counts([160, 160], 40, 2, 5) == [4, 4]      # at most chunk_frames
    assert chunk_counts([160, 160], 240, 64, 5) == [8, 8]    # 20 frames = 4 warm-ups, no shorter
    assert chunk_counts([300, 100], 240, 4, 5) == [3, 1]     # the longest chunks are cut first
    assert chunk_counts([12], 240, 8, 0) == [1]              # and none below 8 frames
    staging = tmp_path / "chunks"
    staging.mkdir()
    earlier = split(160, 4, 5)
    for c in earlier[1:3]:  # an interrupted run staged two of its four chunks, and a stray file
        (staging / staged_name(c, 18)).write_bytes(b"")
    (staging / "chunk-tmp.mp4.part").write_bytes(b"")
    (staging / staged_name(earlier[0], 23)).write_bytes(b"")  # staged at another quality: not kept
    staged = staged_chunks(str(staging), 18)
    assert sorted(staged, key=lambda c: c.start) == [Chunk(c.start, c.stop, 0) for c in earlier[1:3]]
    assert row_chunks(160, 2, 5, staged) == earlier
    assert row_chunks(160, 2, 5, []) == split(160, 2, 5) == [Chunk(0, 80, 0), Chunk(80, 160, 75)]
    assert row_chunks(160, 2, 5, [Chunk(10, 50, 0)]) == split(160, 2, 5)  # not a cut of this row: not kept
    uneven = split(100, 11, 5)  # chunks of 9 and 10 frames
    assert row_chunks(100, 2, 5, [c for c in uneven if c.stop - c.start == 10][-1:]) == uneven
