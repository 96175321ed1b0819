"""Foreground props that stand between the camera and the dancer: a potted plant or a pillar."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edn.synth.body import Appearance, Color, hsv_color, shade
from edn.synth.draw import ellipse, fill


@dataclass(frozen=True)
class Occluder:
    kind: str          # "plant" | "pillar"
    x: float           # centre line, pixels
    base_y: float      # image row of its foot: below the dancer's feet, so nearer the camera
    width: float       # pot or shaft width, pixels
    height: float      # pot plus leaves (a pillar spans the whole frame)
    colour: Color      # pot or stone
    leaves: tuple[tuple[float, float, float], ...] = ()  # (angle from vertical, length, width) in pixels

    def draw(self, img: np.ndarray) -> None:
        if self.kind == "pillar":
            self._pillar(img)
        else:
            self._plant(img)

    def _pillar(self, img: np.ndarray) -> None:
        # A round shaft: vertical bands shaded like a cylinder lit from the left.
        h, left = img.shape[0], self.x - self.width / 2
        edges = np.linspace(0, 1, 13)
        for u0, u1 in zip(edges[:-1], edges[1:]):
            light = 0.62 + 0.5 * np.cos(np.pi * (0.5 * (u0 + u1) - 0.35))
            x0, x1 = left + u0 * self.width, left + u1 * self.width + 0.5
            fill(img, [(x0, -1), (x1, -1), (x1, h + 1), (x0, h + 1)], shade(self.colour, light))
        for y, k in ((self.base_y - 0.06 * self.height, 1.25), (0.04 * self.height, 1.2)):  # base, capital
            w = k * self.width / 2
            fill(img, [(self.x - w, y - 0.03 * self.height), (self.x + w, y - 0.03 * self.height),
                       (self.x + w, y + 0.03 * self.height), (self.x - w, y + 0.03 * self.height)],
                 shade(self.colour, 0.9))

    def _plant(self, img: np.ndarray) -> None:
        pot_h, w = 0.3 * self.height, self.width / 2
        top = self.base_y - pot_h
        green = hsv_color(0.3, 0.65, 0.45)
        for i, (angle, length, width) in enumerate(self.leaves):  # leaves rise from the soil
            d = np.array([np.sin(angle), -np.cos(angle)])
            centre = np.array([self.x, top + 0.1 * pot_h]) + d * length / 2
            ellipse(img, centre, (width / 2, length / 2), np.degrees(angle), shade(green, 0.8 + 0.08 * (i % 4)))
        fill(img, [(self.x - w, top), (self.x + w, top), (self.x + 0.75 * w, self.base_y),
                   (self.x - 0.75 * w, self.base_y)], self.colour)
        fill(img, [(self.x - 1.08 * w, top - 0.12 * pot_h), (self.x + 1.08 * w, top - 0.12 * pot_h),
                   (self.x + 1.08 * w, top + 0.1 * pot_h), (self.x - 1.08 * w, top + 0.1 * pot_h)],
             shade(self.colour, 0.85))


def random_occluder(rng: np.random.Generator, app: Appearance, width: int, height: int) -> Occluder:
    """A prop a little to one side of where the dancer stands: they pass behind it as they move."""
    S = app.stature_px
    pillar = bool(rng.random() < 0.5)
    w = S * (rng.uniform(0.12, 0.18) if pillar else rng.uniform(0.2, 0.28))
    x = float(np.clip(app.center_x_px + rng.choice([-1, 1]) * rng.uniform(0.1, 0.3) * S, w / 2, width - w / 2))
    base_y = min(height - 1.0, app.floor_y_px + 0.05 * height)
    if pillar:
        stone = hsv_color(rng.uniform(0.05, 0.15), rng.uniform(0.05, 0.2), rng.uniform(0.7, 0.9))
        return Occluder("pillar", x, base_y, w, float(height), stone)
    plant_h = S * rng.uniform(0.45, 0.6)
    leaves = tuple((float(rng.uniform(-0.9, 0.9)), float(plant_h * rng.uniform(0.6, 0.8)),
                    float(w * rng.uniform(0.25, 0.4))) for _ in range(9))
    pot = hsv_color(rng.uniform(0.02, 0.07), rng.uniform(0.5, 0.7), rng.uniform(0.55, 0.75))
    return Occluder("plant", x, base_y, w, plant_h, pot, leaves)
