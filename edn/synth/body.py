"""A synthetic dancer's looks: proportions, colours, clothes and place in the frame.

Lengths are fractions of the dancer's stature (crown to sole) unless named `_px`; the
vertical chain head + neck + torso + thigh + shin + ankle sums to 1 by construction, so the
stature in pixels is exactly what the dancer measures standing straight.

Palettes. A base model trained on many dancers must be judged on people and rooms it never
saw, so colours can come from one of two disjoint palettes (the `palette` argument):

- "any" (the default): every hue, the full trousers table; the draws are those of the
  original generator, so existing seeds give exactly the same dancers.
- "base" and "heldout": the hue circle is cut into 12 bands of 30 degrees. "base" gets the
  six centred on the primary and secondary hues (red 0, yellow 60, green 120, cyan 180,
  blue 240, magenta 300 degrees), "heldout" the six tertiary ones between them (orange 30,
  chartreuse 90, spring green 150, azure 210, violet 270, rose 330). Only the middle
  BAND_WIDTH (20 degrees) of each band is used, so a held-out hue is at least 10 degrees
  from every base hue. Shirts and skirts, and the room's wall and carpet (edn.synth.draw),
  draw their hues this way (each independently); trousers and shorts come from disjoint
  halves of TROUSER_COLORS (BASE_TROUSERS: navy, blue, black, maroon; HELDOUT_TROUSERS:
  grey, khaki, white). Bodies, skin, hair and camera distance vary as with "any".

A palette fixes the colours, the seed the dancers: render the base and the held-out set with
different seeds too (e.g. `edn synth base --palette base --seed 1` and `edn synth heldout
--palette heldout --seed 2`): with one seed the two sets share most bodies and dances.
"""
from __future__ import annotations

import colorsys
from dataclasses import asdict, dataclass

import numpy as np

from edn.errors import ConfigError

Color = tuple[int, int, int]

SKIN_TONES: tuple[Color, ...] = (
    (255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 134, 90), (160, 102, 66),
    (118, 74, 48), (92, 58, 40),
)
HAIR_COLORS: tuple[Color, ...] = (
    (20, 16, 14), (45, 30, 22), (88, 58, 34), (140, 96, 50), (200, 160, 90), (150, 60, 30),
    (170, 170, 170),
)
TROUSER_COLORS: tuple[Color, ...] = (
    (40, 60, 110), (60, 85, 140), (25, 25, 30), (70, 70, 75), (150, 130, 95), (100, 40, 40),
    (230, 230, 225),
)
BASE_TROUSERS = tuple(TROUSER_COLORS[i] for i in (0, 1, 2, 5))  # navy, blue, black, maroon
HELDOUT_TROUSERS = tuple(TROUSER_COLORS[i] for i in (3, 4, 6))  # grey, khaki, white
SHOE_COLORS: tuple[Color, ...] = ((240, 240, 240), (25, 25, 25), (95, 60, 35), (180, 30, 40), (40, 60, 160))


@dataclass(frozen=True)
class Appearance:
    seed: int
    stature_px: float     # crown to sole, standing straight
    center_x_px: float    # where the dancer stands on average
    floor_y_px: float     # image row of the soles when the feet are on the floor
    depth: float          # 0 near the camera .. 1 far from it (smaller, higher feet)
    height_cm: float      # the person's own height; with depth it makes stature_px
    # vertical chain (sums to 1)
    head: float
    neck: float
    torso: float
    thigh: float
    shin: float
    ankle: float
    # widths and other lengths
    head_width: float
    shoulder_width: float  # between the shoulder joints
    hip_width: float       # between the hip joints
    upper_arm: float
    forearm: float
    hand: float            # wrist to middle fingertip
    foot: float
    build: float           # multiplies every limb's girth
    # colours (RGB) and clothes
    skin: Color
    hair: Color
    eyes: Color
    lips: Color
    shirt: Color
    bottom: Color
    shoes: Color
    hair_style: str        # "short" | "long" | "bun"
    sleeves: str           # "short" | "long"
    bottom_style: str      # "trousers" | "shorts" | "skirt"
    palm_forward: tuple[bool, bool]  # (right, left): palm or back of the hand faces the camera

    def to_dict(self) -> dict:
        d = asdict(self)
        d["body_height_px"] = self.body_height_px()
        return d

    def body_height_px(self) -> float:
        """Nose to ankles standing straight: layout.body_height's measure of this dancer."""
        nose_from_crown = self.head * (0.5 + 0.5 * FACE_NOSE_TIP_Y)
        return (1.0 - self.ankle - nose_from_crown) * self.stature_px


# Where the nose tip sits in the head's normalized frame (y: -1 crown, +1 chin): the face
# template in motion.py and body_height_px above must agree on it.
FACE_NOSE_TIP_Y = 0.36


def _jitter(rng: np.random.Generator, color: Color, amount: float) -> Color:
    c = np.asarray(color, float) * rng.uniform(1 - amount, 1 + amount) + rng.normal(0, 6, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def hsv_color(h: float, s: float, v: float) -> Color:
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))


PALETTES = ("any", "base", "heldout")
HUE_BANDS = 6              # per palette; "heldout"'s sit halfway between "base"'s
BAND_WIDTH = 20 / 360      # the part of each 30-degree band that is used


def palette_hue(u: float, palette: str) -> float:
    """The hue (0..1) for a uniform draw `u` in [0, 1): `u` itself for "any", else a hue in one
    of the palette's bands (see the module docstring)."""
    if palette == "any":
        return u
    band, frac = divmod(u * HUE_BANDS, 1.0)
    centre = (band + (0.5 if palette == "heldout" else 0.0)) / HUE_BANDS
    return (centre + (frac - 0.5) * BAND_WIDTH) % 1.0


def _shirt_color(rng: np.random.Generator, palette: str = "any") -> Color:
    # Saturated mid-bright cloth: stands out from the muted walls and from skin.
    return hsv_color(palette_hue(rng.uniform(0, 1), palette), rng.uniform(0.45, 0.9), rng.uniform(0.45, 0.95))


def random_appearance(rng: np.random.Generator, width: int, height: int, size: float,
                      seed: int, palette: str = "any") -> Appearance:
    """A dancer whose standing height on screen is about `size` (0 smallest .. 1 largest the
    camera allows), somewhere across the floor, dressed from `palette` (one of PALETTES)."""
    if palette not in PALETTES:
        raise ConfigError(f"unknown palette {palette!r}: use one of {', '.join(PALETTES)}")
    trousers = {"any": TROUSER_COLORS, "base": BASE_TROUSERS, "heldout": HELDOUT_TROUSERS}[palette]
    chain = np.array([0.13 * rng.uniform(0.9, 1.12), 0.05 * rng.uniform(0.85, 1.15),
                      0.30 * rng.uniform(0.93, 1.07), 0.245 * rng.uniform(0.92, 1.08),
                      0.235 * rng.uniform(0.92, 1.08), 0.04])
    chain /= chain.sum()
    # Perspective: a farther dancer is smaller and stands higher in the frame. The on-screen
    # size is what the caller spreads out; the person's own height then sets their distance.
    tall = rng.uniform(0.92, 1.08)
    frac = 0.55 + 0.29 * float(np.clip(size, 0, 1))
    depth = float(np.clip((0.84 * tall - frac) / (0.3 * tall), 0, 1))
    floor_y = height * (0.955 - 0.12 * depth)
    stature = min(frac * height, floor_y - 0.06 * height)  # the crown stays in the frame
    margin = 0.26 * stature
    center_x = rng.uniform(margin, width - margin) if width > 2 * margin else width / 2
    skirt = rng.random() < 0.3
    return Appearance(
        seed=seed, stature_px=float(stature), center_x_px=float(center_x), floor_y_px=float(floor_y),
        depth=depth, height_cm=round(172 * tall, 1),
        head=float(chain[0]), neck=float(chain[1]), torso=float(chain[2]), thigh=float(chain[3]),
        shin=float(chain[4]), ankle=float(chain[5]),
        head_width=0.105 * rng.uniform(0.9, 1.1), shoulder_width=0.215 * rng.uniform(0.88, 1.12),
        hip_width=0.11 * rng.uniform(0.9, 1.15), upper_arm=0.175 * rng.uniform(0.93, 1.07),
        forearm=0.15 * rng.uniform(0.93, 1.07), hand=0.105 * rng.uniform(0.93, 1.07),
        foot=0.15 * rng.uniform(0.9, 1.1), build=float(rng.uniform(0.85, 1.25)),
        skin=_jitter(rng, SKIN_TONES[rng.integers(len(SKIN_TONES))], 0.06),
        hair=_jitter(rng, HAIR_COLORS[rng.integers(len(HAIR_COLORS))], 0.1),
        eyes=_jitter(rng, ((60, 40, 25), (70, 110, 150), (80, 110, 60))[rng.integers(3)], 0.1),
        lips=_jitter(rng, (170, 80, 80), 0.15),
        shirt=_shirt_color(rng, palette),
        bottom=_shirt_color(rng, palette) if skirt else _jitter(rng, trousers[rng.integers(len(trousers))], 0.1),
        shoes=_jitter(rng, SHOE_COLORS[rng.integers(len(SHOE_COLORS))], 0.1),
        hair_style=("short", "long", "bun")[rng.integers(3)],
        sleeves=("short", "long")[rng.integers(2)],
        bottom_style="skirt" if skirt else ("trousers", "trousers", "shorts")[rng.integers(3)],
        palm_forward=(bool(rng.random() < 0.7), bool(rng.random() < 0.7)),
    )


def shade(color: Color, factor: float) -> Color:
    return tuple(int(min(255, max(0, c * factor))) for c in color)
