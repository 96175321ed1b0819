"""Fine-tuning a target from a registered base model (TrainConfig.init_from): the base's weights
for the stage and its generator settings, after checking that they fit this run, with an error
naming both models where not."""
from __future__ import annotations

import dataclasses
import logging

import torch

from edn.errors import ConfigError
from edn.inference import TargetModel
from edn.registry import load_registered, parse_model_ref
from edn.train.config import TrainConfig
from edn.train.loop import build

log = logging.getLogger(__name__)


def _differences(ours, theirs) -> list[str]:
    return [f"{f.name}={getattr(ours, f.name)!r} (base: {getattr(theirs, f.name)!r})"
            for f in dataclasses.fields(ours) if getattr(ours, f.name) != getattr(theirs, f.name)]


def base_weights(cfg: TrainConfig, tracking_uri: str, size: tuple[int, int]
                 ) -> tuple[TrainConfig, dict, str, TargetModel]:
    """(`cfg` with the stage's generator settings the base's, {"G"} of the stage and "D" with
    `cfg.base_discriminator`, "name@version", the base) for `cfg.init_from`; `size` (W, H): the
    frames this run trains on. The checks run here, on the driver, before any worker starts."""
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
    # the generator is the base's, so are its settings (as a face stage's body is its body model's)
    if cfg.stage == "body":
        differ = _differences(cfg.generator, base.meta.generator)
        cfg = dataclasses.replace(cfg, generator=base.meta.generator)
        G, D = base.body, (base.discriminators or {}).get("body")
    else:
        if base.face is None:
            raise mismatch("the base has no face stage (train it: edn train --stage face --set 'videos=[...]')")
        differ = _differences(cfg.face_generator, base.meta.face_generator)
        cfg = dataclasses.replace(cfg, face_generator=base.meta.face_generator)
        G, D = base.face, (base.discriminators or {}).get("face")
    if differ:
        log.warning("%s takes the generator settings of %s, its base: %s", ours, theirs, ", ".join(differ))
    if D is None and cfg.base_discriminator:
        raise mismatch(f"the base keeps no {cfg.stage} discriminator (base_discriminator=true asks for it)")
    states = {"G": G.state_dict(), **({"D": D} if cfg.base_discriminator else {})}
    try:  # the networks this run builds must take the weights as they are
        build(cfg, torch.device("cpu"), init=states)
    except RuntimeError as e:
        raise mismatch(f"the networks differ ({str(e).splitlines()[0]} ...)") from None
    return cfg, states, f"{name}@{base.version}", base
