"""Training checkpoints, as Ray Train stores them: a folder per checkpoint holding rank 0's
`state.pt` (networks, optimizers, step, epoch, stage) and every rank's own RNG state
(`rng-rank<r>.pt`), so a resumed run continues each rank's random stream where it stopped."""
from __future__ import annotations

import os
import random
import shutil

import numpy as np
import torch

from edn.errors import ConfigError
from edn.train.step import unwrap

STATE_FILE = "state.pt"


def rng_file(rank: int) -> str:
    return f"rng-rank{rank}.pt"


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def load_state(path: str, device: torch.device | str) -> dict:
    return torch.load(os.path.join(path, STATE_FILE), map_location=device, weights_only=True)


def write(path: str, rank: int, step: int, epoch: int, stage: str, G, D, opt_G, opt_D) -> None:
    """This rank's part of a checkpoint into the folder `path` (every rank writes its RNG; rank 0 the rest)."""
    torch.save(rng_state(), os.path.join(path, rng_file(rank)))
    if rank == 0:
        torch.save({"step": step, "epoch": epoch, "G": unwrap(G).state_dict(), "D": unwrap(D).state_dict(),
                    "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(), "stage": stage},
                   os.path.join(path, STATE_FILE))


def restore(path: str, rank: int, device: torch.device, G, D, opt_G, opt_D, run: str) -> tuple[int, int]:
    """Networks, optimizers and this rank's RNG from the checkpoint folder; returns (step, epoch).
    `run` names the run in the error when the checkpoint holds other networks."""
    state = load_state(path, device)
    try:
        G.load_state_dict(state["G"]), D.load_state_dict(state["D"])
        opt_G.load_state_dict(state["opt_G"]), opt_D.load_state_dict(state["opt_D"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise ConfigError(f"run {run} holds a checkpoint of other networks than this config's (a run of the "
                           f"same name resumes it): choose another run_name ({e})") from None
    if os.path.exists(os.path.join(path, rng_file(rank))):
        set_rng_state(torch.load(os.path.join(path, rng_file(rank)), weights_only=False))
    return state["step"], state["epoch"]


def keep_local(folder: str, step: int, epoch: int, stage: str, G, D, opt_G, opt_D) -> None:
    """Local mode's checkpoint (one rank, no Ray Train storage): written beside `folder`, then
    swapped in, so that a run killed meanwhile keeps its previous checkpoint (local_checkpoint)."""
    new, old = f"{folder}.new", f"{folder}.old"
    shutil.rmtree(new, ignore_errors=True)
    os.makedirs(new)
    write(new, 0, step, epoch, stage, G, D, opt_G, opt_D)
    if os.path.exists(folder):
        os.replace(folder, old)
    os.replace(new, folder)
    shutil.rmtree(old, ignore_errors=True)


def local_checkpoint(folder: str) -> str | None:
    """The checkpoint keep_local left: `folder`, or its previous one if killed between the renames."""
    return next((f for f in (folder, f"{folder}.old") if os.path.exists(os.path.join(f, STATE_FILE))), None)
