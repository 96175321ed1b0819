"""Hard footage: the dancer turns their back, walks out of the frame, is hidden by a plant or a
pillar and by a passer-by; the camera shakes, the light drifts, motion blurs, compression bites.

Every option draws its randomness from its own generator (seeded by the dancer and the option),
so the default footage is untouched and turning one option on does not change another. Each
person is painted as a layer (colour and coverage), and a keypoint is visible only where no
layer painted after its owner covers it: the ground truth is what the picture shows.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edn.errors import ConfigError
from edn.synth.body import Appearance, random_appearance
from edn.synth.draw import render_dancer
from edn.synth.motion import Choreography, Geometry, pose_geometry, turn_geometry
from edn.synth.props import Occluder, random_occluder

if TYPE_CHECKING:
    from edn.synth import Dancer

HARD_CRF = 35      # what `compression` encodes with (edn.video.VideoWriter's default is 18)
BLUR_SAMPLES = 5   # instants averaged over one frame interval, centred on the frame's time
PASSER_YAW = 0.6   # a passer-by is seen three-quarter, facing where they walk


@dataclass(frozen=True)
class HardOptions:
    turn: bool = False         # turns round and back a few times, some seconds in back view
    exit: bool = False         # walks partly, then wholly out of the frame and comes back
    occluder: bool = False     # a plant or pillar in front of part of the dancer's path
    passerby: bool = False     # another person walks across, once in front, once behind
    shake: bool = False        # a few pixels of smooth camera shake and a little roll
    light: bool = False        # slow brightness and colour drift, about ±20%
    blur: bool = False         # motion blur over one frame interval
    compression: bool = False  # H.264 at crf HARD_CRF

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def parse(cls, text: str) -> HardOptions:
        """'turn,exit' -> those options on; 'all' -> every option; '' -> none."""
        chosen = {w.strip() for w in text.split(",") if w.strip()}
        if "all" in chosen:
            chosen = (chosen - {"all"}) | set(cls.names())
        unknown = chosen - set(cls.names())
        if unknown:
            raise ConfigError(f"unknown hard option(s) {sorted(unknown)}; "
                              f"choose from {', '.join(cls.names())} or all")
        return cls(**{name: True for name in chosen})

    def enabled(self) -> list[str]:
        return [name for name in self.names() if getattr(self, name)]

    def __bool__(self) -> bool:
        return bool(self.enabled())

    def changes_pictures(self) -> bool:
        """Whether the frames differ from the default ones (compression alone only re-encodes them)."""
        return bool(set(self.enabled()) - {"compression"})

    def writer_options(self) -> dict:
        return {"crf": HARD_CRF} if self.compression else {}


@dataclass(frozen=True, eq=False)
class Shot:
    """One frame and its ground truth."""
    rgb: np.ndarray | None                   # (H, W, 3) uint8; None once written out
    keypoints: np.ndarray                    # the dancer, (137, 3) float32
    others: tuple[np.ndarray, ...] = ()      # everyone else in the frame, (137, 3) each
    back_view: bool = False                  # the dancer shows their back
    in_frame: bool = True                    # some keypoint of the dancer is visible
    passerby: bool = False                   # the passer-by is in the frame


@dataclass(frozen=True)
class Pulse:
    """0 until `start`, up to 1 over `rise` seconds, `hold` seconds at 1, down over `rise`."""
    start: float
    rise: float
    hold: float
    sign: float = 1.0  # which way: turning left or right, leaving to the left or the right

    def __call__(self, t: float) -> float:
        up = np.clip((t - self.start) / self.rise, 0, 1)
        down = np.clip((t - self.start - self.rise - self.hold) / self.rise, 0, 1)
        return float(_smooth(up) - _smooth(down))


def _smooth(u):
    return u * u * (3 - 2 * u)


def _pulses(rng: np.random.Generator, duration: float, count: int, rise: float, hold: float) -> list[Pulse]:
    # One pulse in each of `count` equal slots, shrunk to fit short videos.
    slot = duration / count
    k = min(1.0, 0.6 * slot / (2 * rise + hold))
    rise, hold = rise * k, hold * k
    return [Pulse(i * slot + rng.uniform(0, slot - 2 * rise - hold), rise, hold, float(rng.choice([-1.0, 1.0])))
            for i in range(count)]


@dataclass
class Layer:
    """What one painter put on a transparent sheet: colour premultiplied by coverage."""
    colour: np.ndarray  # (H, W, 3) float32
    alpha: np.ndarray   # (H, W) float32, 0 clear .. 1 opaque

    def over(self, img: np.ndarray) -> None:
        img *= 1 - self.alpha[:, :, None]
        img += self.colour


def paint(draw: Callable[[np.ndarray], object], width: int, height: int) -> tuple[Layer, object]:
    """Run `draw` on a clear RGBA sheet: edn.synth.draw's strokes blend colour and coverage
    alike, which leaves the colour premultiplied (shadows are partly covering black)."""
    sheet = np.zeros((height, width, 4), np.uint8)
    result = draw(sheet)
    return Layer(sheet[:, :, :3].astype(np.float32), sheet[:, :, 3].astype(np.float32) / 255), result


def _cover(kp: np.ndarray, layers: list[Layer]) -> np.ndarray:
    """`kp` with the points under `layers` (painted after its owner) made missing."""
    kp = kp.copy()
    if not layers:
        return kp
    seen = np.flatnonzero(kp[:, 2] > 0)
    x, y = np.round(kp[seen, :2]).astype(int).T
    clear = np.ones(len(seen))
    for layer in layers:
        clear *= 1 - layer.alpha[y, x]
    kp[seen[clear < 0.5], :] = 0.0  # OpenPose writes missing points as (0, 0, 0)
    return kp


@dataclass(frozen=True)
class Crossing:
    start: float
    duration: float
    rightward: bool
    front: bool  # passes in front of the dancer, else behind


class Passerby:
    """Another person who walks straight across the room: once nearer the camera than the
    dancer (bigger, lower feet), once farther (smaller, higher feet)."""

    def __init__(self, rng: np.random.Generator, dancer_app: Appearance, width: int, height: int,
                 duration: float, seed: int, away: Callable[[float], float] = lambda t: 0.0):
        base = random_appearance(rng, width, height, rng.uniform(0, 1), seed)
        d = dancer_app
        self.near = replace(base, stature_px=d.stature_px * rng.uniform(1.12, 1.25),
                            floor_y_px=d.floor_y_px + height * rng.uniform(0.04, 0.08), depth=max(0.0, d.depth - 0.3))
        self.far = replace(base, stature_px=d.stature_px * rng.uniform(0.6, 0.75),
                           floor_y_px=d.floor_y_px - height * rng.uniform(0.05, 0.08), depth=min(1.0, d.depth + 0.3))
        self.choreography = Choreography(rng, base, width)
        self.cadence = rng.uniform(0.85, 1.05)  # strides a second
        half = duration / 2
        walk = min(4.0, 0.9 * half)
        front_first = bool(rng.random() < 0.5)
        self.crossings = []
        for i in range(2):
            # Pass while the dancer is there (`away` is 1 while they are out of the frame) if possible.
            starts = i * half + rng.uniform(0, half - walk, 16)
            start = next((s for s in starts if away(s + walk / 2) < 0.5), starts[0])
            self.crossings.append(Crossing(float(start), walk, bool(rng.random() < 0.5), front=(i == 0) == front_first))
        self.width = width

    def geometry(self, t: float) -> tuple[Geometry, Appearance, bool] | None:
        """Where the passer is at time t (and in front of the dancer?), None when not walking."""
        for c in self.crossings:
            if c.start <= t <= c.start + c.duration:
                app = self.near if c.front else self.far
                u = (t - c.start) / c.duration
                margin = 0.8 * app.stature_px
                x = -margin + u * (self.width + 2 * margin)
                x = x if c.rightward else self.width - x
                a = _walking(_at(self.choreography, t), t, self.cadence)
                a["travel"] = x - app.center_x_px - a["sway"] * app.stature_px
                yaw = PASSER_YAW if c.rightward else -PASSER_YAW
                return turn_geometry(pose_geometry(app, a), a, yaw), app, c.front
        return None


def _at(choreography: Choreography, t: float) -> dict[str, float]:
    return {k: float(v[0]) for k, v in choreography.angles(np.array([t])).items()}


def _walking(a: dict[str, float], t: float, cadence: float) -> dict[str, float]:
    """A dance damped to a walk: alternate feet lifted, arms swinging low."""
    swing = np.sin(2 * np.pi * cadence * t)
    a["Rlift"], a["Llift"] = 0.5 * max(swing, 0) ** 1.5, 0.5 * max(-swing, 0) ** 1.5
    a["plie"] *= 0.2
    a["lean"] *= 0.3
    for side, s in (("R", 1.0), ("L", -1.0)):
        a[f"{side}sh"] = 0.15 + 0.08 * s * swing
        a[f"{side}el"] = 0.25
        a[f"{side}reach"] = 0.0
    return a


class Shake:
    """Smooth camera shake: a few pixels of translation and a fraction of a degree of roll."""

    def __init__(self, rng: np.random.Generator, width: int, height: int):
        self.amp = 0.012 * max(width, height) * rng.uniform(0.8, 1.2)
        self.freqs = rng.uniform(0.4, 2.0, (3, 2))
        self.phases = rng.uniform(0, 2 * np.pi, (3, 2))
        self.centre = (width / 2, height / 2)

    def matrix(self, t: float) -> np.ndarray:
        dx, dy, roll = (np.sin(2 * np.pi * self.freqs * t + self.phases).sum(1) / 2) * [self.amp, self.amp, 0.5]
        m = cv2.getRotationMatrix2D(self.centre, float(roll), 1.0)
        m[:, 2] += (dx, dy)
        return m


class Light:
    """Slow drift of brightness (±15-25%) and a little of colour."""

    def __init__(self, rng: np.random.Generator, duration: float):
        self.amp = rng.uniform(0.15, 0.25)
        self.freq = max(rng.uniform(0.7, 1.2) / duration, 0.05)  # most of a cycle, at most 20 s long
        self.phase = rng.uniform(0, 2 * np.pi)
        self.tint_freq = rng.uniform(0.5, 1.5) * self.freq
        self.tint_phase = rng.uniform(0, 2 * np.pi, 3)

    def gain(self, t: float) -> np.ndarray:
        level = 1 + self.amp * np.sin(2 * np.pi * self.freq * t + self.phase)
        return (level * (1 + 0.05 * np.sin(2 * np.pi * self.tint_freq * t + self.tint_phase))).astype(np.float32)


@dataclass
class Instant:
    """One instant of the scene: the picture and everyone's visible keypoints."""
    img: np.ndarray
    dancer: np.ndarray
    passer: np.ndarray | None  # None while the passer-by is out of the frame
    back: bool


class HardScene:
    """A dancer's video with hard options: `shots()` yields each frame with its ground truth."""

    def __init__(self, dancer: Dancer, options: HardOptions, frames: int):
        self.dancer, self.options, self.frames = dancer, options, frames
        self.fps, self.width, self.height = dancer.fps, dancer.width, dancer.height
        duration = frames / self.fps
        app = dancer.appearance

        def rng(name: str) -> np.random.Generator:
            return np.random.default_rng([dancer.seed, dancer.index, 7919, HardOptions.names().index(name)])

        self.turns = _pulses(rng("turn"), duration, max(1, round(duration / 5)), 1.2, 2.0) if options.turn else []
        self.exits = _pulses(rng("exit"), duration, max(1, round(duration / 10)), 1.2, 1.0) if options.exit else []
        self.occluder: Occluder | None = None
        self.prop: Layer | None = None
        if options.occluder:
            self.occluder = random_occluder(rng("occluder"), app, self.width, self.height)
            self.prop = paint(self.occluder.draw, self.width, self.height)[0]
        self.passer = (Passerby(rng("passerby"), app, self.width, self.height, duration, dancer.seed,
                                away=lambda t: sum(p(t) for p in self.exits)) if options.passerby else None)
        self.shake = Shake(rng("shake"), self.width, self.height) if options.shake else None
        self.light = Light(rng("light"), duration) if options.light else None
        self.background = dancer.background.astype(np.float32)

    def yaw(self, t: float) -> float:
        return float(np.pi * sum(p.sign * p(t) for p in self.turns))

    def dancer_geometry(self, t: float) -> Geometry:
        app = self.dancer.appearance
        a = _at(self.dancer.choreography, t)
        if self.exits:  # head for a point beyond the edge, where nothing of the dancer shows
            here = app.center_x_px + a["travel"] + a["sway"] * app.stature_px
            for p in self.exits:
                gone = self.width + 0.8 * app.stature_px if p.sign > 0 else -0.8 * app.stature_px
                a["travel"] += p(t) * (gone - here)
        geo = pose_geometry(app, a)
        yaw = self.yaw(t)
        return turn_geometry(geo, a, yaw) if yaw else geo

    def instant(self, t: float) -> Instant:
        """The scene at time t, before light and blur: layers back to front, each person's
        keypoints then covered by whatever was painted after them."""
        W, H = self.width, self.height
        geo = self.dancer_geometry(t)
        dancer_layer, dancer_kp = paint(lambda img: render_dancer(img, self.dancer.appearance, geo), W, H)
        walking = self.passer.geometry(t) if self.passer else None
        stack: list[tuple[str, Layer, np.ndarray | None]] = [("dancer", dancer_layer, dancer_kp)]
        passing = False  # some keypoint of the passer-by inside the frame, whether covered or not
        if walking:
            pgeo, papp, front = walking
            passer_layer, passer_kp = paint(lambda img: render_dancer(img, papp, pgeo), W, H)
            stack.insert(len(stack) if front else 0, ("passer", passer_layer, passer_kp))
            passing = bool(passer_kp[:, 2].any())
        if self.prop is not None:
            stack.append(("prop", self.prop, None))
        img = self.background.copy()
        people: dict[str, np.ndarray] = {}
        for i, (name, layer, kp) in enumerate(stack):
            layer.over(img)
            if kp is not None:
                people[name] = _cover(kp, [above for _, above, _ in stack[i + 1:]])
        if self.shake:
            m = self.shake.matrix(t)
            img = cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            people = {k: _moved(kp, m, W, H) for k, kp in people.items()}
        return Instant(img, people["dancer"], people["passer"] if passing else None, geo.back)

    def shot(self, index: int) -> Shot:
        t = index / self.fps
        if self.options.blur:  # the shutter stays open for the whole frame interval
            offsets = (np.arange(BLUR_SAMPLES) - BLUR_SAMPLES // 2) / (BLUR_SAMPLES - 1) / self.fps
            instants = [self.instant(t + float(dt)) for dt in offsets]
            now = instants[BLUR_SAMPLES // 2]
            img = np.mean([s.img for s in instants], axis=0)
        else:
            now = self.instant(t)
            img = now.img
        if self.light:
            img = img * self.light.gain(t)
        rgb = np.clip(img + 0.5, 0, 255).astype(np.uint8)
        others = () if now.passer is None else (now.passer,)
        return Shot(rgb, now.dancer, others, now.back, bool(now.dancer[:, 2].any()), bool(others))

    def shots(self) -> Iterator[Shot]:
        for i in range(self.frames):
            yield self.shot(i)


def _moved(kp: np.ndarray, m: np.ndarray, width: int, height: int) -> np.ndarray:
    """Keypoints carried by the camera's motion; those it takes out of the frame go missing."""
    kp = kp.copy()
    seen = kp[:, 2] > 0
    kp[seen, :2] = kp[seen, :2] @ m[:, :2].T + m[:, 2]
    x, y = kp[:, 0], kp[:, 1]
    kp[seen & ((x < 0) | (y < 0) | (x > width - 1) | (y > height - 1))] = 0.0
    return kp
