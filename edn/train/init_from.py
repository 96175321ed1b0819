"""Fine-tuning a target from a registered base model (TrainConfig.init_from): the base's weights
for the stage, after checking that they fit this run, with an error naming both models where not."""
from __future__ import annotations

import dataclasses

import torch

from edn.errors import ConfigError
from edn.inference import TargetModel
from edn.registry import load_registered, parse_model_ref
from edn.train.config import TrainConfig
from edn.train.loop import build


def _differences(ours, theirs) -> list[str]:
    return [f"{f.name}={getattr(ours, f.name)!r} (base: {getattr(theirs, f.name)!r})"
            for f in dataclasses.fields(ours) if getattr(ours, f.name) != getattr(theirs, f.name)]


def base_weights(cfg: TrainConfig, tracking_uri: str, size: tuple[int, int]) -> tuple[dict, str, TargetModel]:
    """({"G"} of the stage, and "D" with `cfg.base_discriminator`, "name@version", the base) for
    `cfg.init_from`; `size` (W, H): the frames this run trains on. The checks run here, on the
    driver, before any worker starts."""
    name, ref = parse_model_ref(cfg.init_from, "edn-base")
    base = load_registered(name, ref, tracking_uri)
    ours, theirs = f"{cfg.registry_name} ({cfg.stage} stage)", f"{name} version {base.version}"

    def mismatch(what: str) -> ConfigError:
        return ConfigError(f"init_from={cfg.init_from}: {theirs} does not fit {ours}: {what}")

    if base.meta.kind != "base":
        raise mismatch(f"it is a {base.meta.kind} model of {base.meta.target!r}, not a base model "
                       "(one trained on many videos: edn train --set 'videos=[...]')")
    if base.size != tuple(size):
        raise mismatch(f"it renders {base.size[0]}x{base.size[1]}, this run trains at {size[0]}x{size[1]}")
    if base.meta.temporal != cfg.temporal:
        raise mismatch(f"temporal={cfg.temporal} here, {base.meta.temporal} in the base")
    if cfg.stage == "body":
        differ = _differences(cfg.generator, base.meta.generator)
        G, D = base.body, (base.discriminators or {}).get("body")
    else:
        if base.face is None:
            raise mismatch("the base has no face stage (train it: edn train --stage face --set 'videos=[...]')")
        differ = _differences(cfg.face_generator, base.meta.face_generator)
        G, D = base.face, (base.discriminators or {}).get("face")
    if differ:
        raise mismatch(f"generator settings differ: {', '.join(differ)}")
    if D is None and cfg.base_discriminator:
        raise mismatch(f"the base keeps no {cfg.stage} discriminator (base_discriminator=true asks for it)")
    states = {"G": G.state_dict(), **({"D": D} if cfg.base_discriminator else {})}
    try:  # the networks this run builds must take the weights as they are
        build(cfg, torch.device("cpu"), init=states)
    except RuntimeError as e:
        raise mismatch(f"the networks differ ({str(e).splitlines()[0]} ...)") from None
    return states, f"{name}@{base.version}", base
