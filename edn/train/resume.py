"""Which run a training command continues. A Ray Train run is its storage_path and name: the same
two resume it from its last checkpoint. The settings a run started with are kept in its folder
beside the checkpoints, and a rerun resumes only with the same ones, but for `steps` (a run
extended) and how it runs (workers, threads, precision, logging): otherwise two different runs
would be one, and the model registered from it would claim a dataset or recipe it was not trained
on (a second `edn demo --out` into another folder did: it resumed the first one's finished run)."""
from __future__ import annotations

import json
import os

from edn.config import to_dict
from edn.errors import ConfigError
from edn.storage import exists, join, read_bytes, write_bytes_atomic
from edn.train.config import TrainConfig

SETTINGS_FILE = "edn_train_config.json"
# how a run runs, not what it trains: a resumed run may change these
MAY_CHANGE = {"steps", "num_workers", "use_gpu", "amp", "cpu_bf16", "channels_last", "cpus_per_worker",
              "resources_per_worker", "torch_threads", "max_failures", "checkpoint_every", "tracking_uri",
              "experiment", "log_every", "image_every", "alias"}


def storage_url(cfg: TrainConfig) -> str:
    """The run storage as Ray Train is given it: a local path made absolute."""
    return cfg.storage_path if "://" in cfg.storage_path else os.path.abspath(cfg.storage_path)


def run_folder(cfg: TrainConfig) -> str:
    return join(storage_url(cfg), cfg.ray_run_name)


def resumes(cfg: TrainConfig) -> bool:
    """Whether this command continues a run already started (False: a new run); a clear error,
    before anything runs, when that run started with other settings than this command's."""
    url = join(run_folder(cfg), SETTINGS_FILE)
    if not exists(url):
        return False
    # a setting added to TrainConfig since that run started is missing from its file: its default,
    # which keeps what the older code did (recolour_lightness=False), not a difference
    before = {**_as_recorded(TrainConfig()), **flatten(json.loads(read_bytes(url)))}
    now = _as_recorded(cfg)
    changed = sorted(k for k in before.keys() | now.keys()
                     if k.split(".")[0] not in MAY_CHANGE and before.get(k) != now.get(k))
    if changed:
        was = ", ".join(f"{k}={before.get(k)!r}" for k in changed)
        given = ", ".join(f"{k}={now.get(k)!r}" for k in changed)
        raise ConfigError(
            f"run {cfg.ray_run_name!r} in {storage_url(cfg)} started with {was}; this command gives {given}. "
            "The same run_name and storage_path resume that run, which must go on training the same thing "
            "(only steps and how it runs may change): give another run_name (--set run_name=NAME) or "
            f"storage_path, or remove {run_folder(cfg)} to start it over")
    return True


def record_start(cfg: TrainConfig) -> None:
    """Kept with the run's checkpoints: what a later command must match to resume it."""
    write_bytes_atomic(join(run_folder(cfg), SETTINGS_FILE), json.dumps(to_dict(cfg), indent=1).encode())


def _as_recorded(cfg: TrainConfig) -> dict:
    """`cfg`'s settings flattened as the settings file reads back: lists, not tuples."""
    return flatten(json.loads(json.dumps(to_dict(cfg))))


def flatten(d: dict, prefix: str = "") -> dict:
    """Nested settings as dotted names: {"generator": {"ngf": 16}} -> {"generator.ngf": 16}."""
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out
