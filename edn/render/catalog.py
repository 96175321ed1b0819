"""The transfer catalog: a CSV or Parquet table, one row a source -> target transfer.

Columns (one row each):
    source      a video URL, or a video id of the ingested dataset named in `dataset`
    target      a registered model: "edn-alice@production", "edn-alice@3", or "edn-alice" (the
                catalog's default alias)
    output      the mp4's URL; a relative path is under the job's output folder
optional:
    dataset     the ingested dataset `source` belongs to (empty: `source` is a video URL, whose
                poses are extracted on the fly and cached by content)
    layout      side_by_side (source | pose | output, default) or output
    face_gan    true / false; empty: whenever the model has a face generator
    resolution  WIDTHxHEIGHT of the generated frame in the output (default: the model's size)
    target_dataset, target_video
                with a base model as target: the new performer's ingested dataset and video id,
                rendered zero-shot from them with no training (edn.inference.zero_shot); the
                manifest and the gallery say so
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import pandas as pd

from edn.errors import ConfigError, DataError
from edn.render.chunks import LAYOUTS
from edn.storage import filesystem, join, read_bytes

if TYPE_CHECKING:
    from edn.models.meta import ModelMeta

REQUIRED = ("source", "target", "output")
OPTIONAL = ("dataset", "layout", "face_gan", "resolution", "target_dataset", "target_video")
TRUE, FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


@dataclass(frozen=True)
class CatalogRow:
    number: int                 # the row's place in the catalog, from 0
    source: str
    dataset: str
    target: str                 # as written
    output: str                 # resolved URL
    layout: str = "side_by_side"
    face_gan: bool | None = None
    resolution: tuple[int, int] | None = None
    target_dataset: str = ""    # a zero-shot row's (a base model as target): the performer's dataset
    target_video: str = ""      # and video id

    @property
    def zero_shot(self) -> tuple[str, str] | None:
        """(dataset, video) of the performer a base model renders zero-shot; None for a trained target."""
        return (self.target_dataset, self.target_video) if self.target_video else None

    @property
    def row_id(self) -> str:
        """Names the row's work: the same transfer in a later run (wherever its row now stands)
        is recognised as done; a changed row is new work. (A row without a zero-shot performer
        keeps the id it had before catalogs could name one.)"""
        fields = {k: v for k, v in asdict(self).items()
                  if k != "number" and not (k in ("target_dataset", "target_video") and not v)}
        return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


class CatalogError(DataError):
    """The catalog as a whole cannot be read (as opposed to one bad row)."""


def read_table(url: str) -> pd.DataFrame:
    try:
        data = read_bytes(url)
    except FileNotFoundError:
        raise CatalogError(f"{url}: no such catalog") from None
    try:
        if url.lower().endswith(".parquet"):
            table = pd.read_parquet(io.BytesIO(data))
            return table.astype(object).where(table.notna(), "").astype(str)
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as e:
        raise CatalogError(f"{url}: not a readable {'Parquet' if url.endswith('.parquet') else 'CSV'} "
                           f"table ({e})") from e


def _flag(text: str) -> bool | None:
    text = text.strip().lower()
    if not text:
        return None
    if text in TRUE | FALSE:
        return text in TRUE
    raise ValueError(f"face_gan must be true or false, not {text!r}")


def _resolution(text: str) -> tuple[int, int] | None:
    if not text.strip():
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"resolution must be WIDTHxHEIGHT, e.g. 256x256, not {text!r}") from None
    if w <= 0 or h <= 0 or w % 2 or h % 2:
        raise ValueError(f"resolution must be positive and even (H.264), not {text!r}")
    return w, h


def _output_url(text: str, out_url: str) -> str:
    if "://" in text or text.startswith("/"):
        return text
    return join(out_url, text)


def parse_row(number: int, raw: dict, out_url: str, default_alias: str) -> CatalogRow:
    for column in REQUIRED:
        if not raw.get(column, "").strip():
            raise ValueError(f"{column} is empty")
    layout = raw.get("layout", "").strip() or "side_by_side"
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    target = raw["target"].strip()
    if "@" not in target:
        target = f"{target}@{default_alias}"
    output = _output_url(raw["output"].strip(), out_url)
    if not output.lower().endswith(".mp4"):
        raise ValueError(f"output must be an .mp4 file, not {output!r}")
    performer = raw.get("target_dataset", "").strip(), raw.get("target_video", "").strip()
    if bool(performer[0]) != bool(performer[1]):
        raise ValueError("target_dataset and target_video go together: a base model's zero-shot performer is a "
                         "video id in an ingested dataset")
    return CatalogRow(number, raw["source"].strip(), raw.get("dataset", "").strip(), target, output, layout,
                      _flag(raw.get("face_gan", "")), _resolution(raw.get("resolution", "")), *performer)


def read_catalog(url: str, out_url: str, default_alias: str) -> tuple[list[CatalogRow], list[dict]]:
    """-> (rows that parse, [{row, reason, **raw}] for those that don't, each with its reason)."""
    table = read_table(url)
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise CatalogError(f"{url}: missing column(s) {', '.join(missing)}; a catalog needs "
                           f"{', '.join(REQUIRED)} (optional: {', '.join(OPTIONAL)})")
    rows, invalid = [], []
    for number, raw in enumerate(table.to_dict("records")):
        try:
            rows.append(parse_row(number, raw, out_url, default_alias))
        except ValueError as e:
            invalid.append({**{k: str(v) for k, v in raw.items()}, "row": number, "reason": str(e)})
    seen: dict[str, int] = {}
    for row in list(rows):  # two rows writing one file: the later one is refused
        if row.output in seen:
            rows.remove(row)
            invalid.append({**asdict(row), "row": row.number,
                            "reason": f"output {row.output} is also the output of row {seen[row.output]}"})
        else:
            seen[row.output] = row.number
    return rows, invalid


def probe_writable(url: str) -> str:
    """'' when a file can be written beside `url` (written and removed), else why not."""
    fs, path = filesystem(url)
    probe = f"{path}.edn-probe"
    try:
        parent = path.rsplit("/", 1)[0]
        if parent and parent != path:
            fs.makedirs(parent, exist_ok=True)
        fs.pipe_file(probe, b"")
        fs.rm(probe)
        return ""
    except Exception as e:
        return f"output {url} cannot be written ({type(e).__name__}: {e})"


def row_model(row: CatalogRow, model: str, meta: ModelMeta) -> tuple[str, ModelMeta] | str:
    """A base model shown the row's performer (edn.inference.zero_shot_meta), a trained target
    as it is; or why the row cannot be rendered."""
    if (meta.kind == "base") != bool(row.zero_shot):
        return (f"{row.target} is a base model: give target_dataset and target_video (the new performer's ingested "
                "video) to render it zero-shot") if meta.kind == "base" else \
            f"target_video is for a base model; {row.target} is a {meta.kind} model"
    if not row.zero_shot:
        return model, meta
    from edn.inference import zero_shot_meta  # here: torch, for the rows that need it
    from edn.registry import parse_model_ref
    try:
        return model, zero_shot_meta(meta, parse_model_ref(model, "")[1], *row.zero_shot)[0]
    except (ConfigError, ValueError, FileNotFoundError) as e:
        return f"zero-shot performer {row.target_video!r} of {row.target_dataset}: {e}"
