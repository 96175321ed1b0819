"""How far each synthetic video's empty scene (edn.data.plate) is from the room it was drawn on.

    .venv/bin/python tools/plate_error.py outputs/onboard/heldout_videos outputs/onboard/heldout_ds

For every dancer of an `edn synth` folder (its dancers.json) ingested into the dataset: the mean
absolute error in grey levels, against `edn.synth.make_dancer(...).background` at the dataset's frame
size, over the pixels the thickest dancer mask covers in any training frame (before the held-out
tail), and over those it covers in more than half of them; and how much of the frame each is.
Used for docs/base-model.md ("the empty scene between a still dancer's limbs")."""
import json
import sys

import cv2
import numpy as np

from edn.data.plate import background_plate, dancer_mask
from edn.data.reader import split_point, video_poses, video_record
from edn.synth import make_dancer
from edn.train.config import TrainConfig


def main(videos: str, dataset: str) -> None:
    spec = json.load(open(f"{videos}/dancers.json"))
    for d in spec["dancers"]:
        record = video_record(dataset, d["id"])
        w, h = record["width"], record["height"]
        stop = split_point(record["frames"], TrainConfig.holdout_fraction)
        dancer = make_dancer(spec["seed"], d["index"], len(spec["dancers"]), (d["width"], d["height"]),
                             palette=spec.get("palette", "any"))
        room = cv2.resize(dancer.background, (w, h), interpolation=cv2.INTER_AREA).astype(int)
        index, poses = video_poses(dataset, d["id"])
        covered = np.stack([dancer_mask(p, w, h) for p in poses[index < stop]]).mean(0)
        error = np.abs(background_plate(dataset, d["id"], stop, (w, h)).astype(int) - room).mean(-1)
        print(f"{d['id']}: {error[covered > 0].mean():.1f} where the dancer ever is ({(covered > 0).mean():.0%} "
              f"of the frame), {error[covered > 0.5].mean():.1f} where she mostly is ({(covered > 0.5).mean():.0%})")


if __name__ == "__main__":
    main(*sys.argv[1:3])
