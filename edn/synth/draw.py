"""Rendering a dancer's frame (and the room behind them) from motion.Geometry.

Everything is drawn with OpenCV's anti-aliased fills at 1/16 pixel precision (SHIFT), so the
figure is smooth and sub-pixel exact at every resolution. Light comes from the upper left: each
part is filled in a darker shade and then again in its own colour, smaller and nudged towards
the light, which gives the rounded look that pose detectors expect of people.

The room's wall and carpet hues follow the dancer's palette (edn.synth.body: "base" and
"heldout" rooms never share a hue band); wooden floors and the pictures are alike in all.
"""
from __future__ import annotations

import cv2
import numpy as np

from edn.pose.layout import FACE, LHAND, RHAND, B
from edn.synth.body import Appearance, hsv_color, palette_hue, shade
from edn.synth.motion import SIDES, Geometry

SHIFT = 4
ONE = 1 << SHIFT
AA = cv2.LINE_AA
LIGHT = np.array([-0.6, -0.8])  # unit vector towards the light


def _fx(points) -> np.ndarray:
    return np.round(np.asarray(points, float) * ONE).astype(np.int32)


def _ink(img, color):
    # On an RGBA sheet (a layer, edn.synth.hard) the alpha channel gathers each stroke's coverage.
    return (*color, 255) if img.ndim == 3 and img.shape[2] == 4 else color


def fill(img, points, color) -> None:
    cv2.fillPoly(img, [_fx(points).reshape(-1, 2)], _ink(img, color), AA, SHIFT)


def disc(img, centre, radius, color) -> None:
    cv2.circle(img, tuple(_fx(centre)), max(1, int(round(radius * ONE))), _ink(img, color), -1, AA, SHIFT)


def ellipse(img, centre, half_axes, angle_deg, color) -> None:
    axes = tuple(max(1, int(round(v * ONE))) for v in half_axes)
    cv2.ellipse(img, tuple(_fx(centre)), axes, float(angle_deg), 0, 360, _ink(img, color), -1, AA, SHIFT)


def capsule(img, p, q, r0, r1, color) -> None:
    """A limb: tapered quad from p (radius r0) to q (r1) with round ends."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    d = q - p
    n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-9)
    fill(img, [p + n * r0, q + n * r1, q - n * r1, p - n * r0], color)
    disc(img, p, r0, color)
    disc(img, q, r1, color)


def shaded_capsule(img, p, q, r0, r1, color) -> None:
    capsule(img, p, q, r0, r1, shade(color, 0.72))
    off = LIGHT * 0.25 * min(r0, r1)
    capsule(img, np.asarray(p) + off, np.asarray(q) + off, 0.7 * r0, 0.7 * r1, color)


def shaded_polygon(img, points, color) -> None:
    points = np.asarray(points, float)
    fill(img, points, shade(color, 0.75))
    centre = points.mean(0)
    size = np.ptp(points, axis=0).max()
    fill(img, centre + (points - centre) * 0.86 + LIGHT * 0.03 * size, color)


# ---------------------------------------------------------------------------------- background

def render_background(rng: np.random.Generator, width: int, height: int, app: Appearance,
                      palette: str = "any") -> np.ndarray:
    """A room seen by a fixed camera: textured wall with a picture or two, skirting board,
    wooden or carpeted floor in perspective, in `palette`'s hues. Drawn once per video."""
    W, H, S = width, height, app.stature_px
    horizon = int(np.clip(app.floor_y_px - S * rng.uniform(0.3, 0.45), 0.15 * H, 0.8 * H))
    img = np.empty((H, W, 3), np.float32)
    sat = (0.08, 0.35) if palette == "any" else (0.18, 0.4)  # a palette's wall is tinted enough to show its hue
    wall = np.array(hsv_color(palette_hue(rng.uniform(0, 1), palette), rng.uniform(*sat), rng.uniform(0.55, 0.9)),
                    np.float32)
    rows = np.linspace(1.08, 0.9, horizon)[:, None, None]
    img[:horizon] = wall * rows
    if rng.random() < 0.4:  # striped wallpaper
        stripe = (np.arange(W) // max(2, W // rng.integers(8, 20))) % 2
        img[:horizon] *= (1 - 0.06 * stripe)[None, :, None]
    for _ in range(rng.integers(1, 3)):
        _picture(img, rng, W, horizon)
    _floor(img, rng, W, H, horizon, app, palette)
    board = max(2, int(0.018 * H))
    img[horizon - board:horizon] = np.array(shade(tuple(wall.astype(int)), 1.15), np.float32) * 0.92
    img[horizon - 1:horizon] *= 0.7
    # Low-frequency texture over everything: plaster, wood grain, carpet.
    noise = rng.normal(0, 1, (H // 6 + 2, W // 6 + 2)).astype(np.float32)
    img += cv2.resize(noise, (W, H), interpolation=cv2.INTER_CUBIC)[:, :, None] * 5
    img += rng.normal(0, 2.0, (H, W, 1)).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _picture(img, rng, W, horizon) -> None:
    w, h = int(W * rng.uniform(0.1, 0.22)), int(horizon * rng.uniform(0.15, 0.3))
    x, y = int(rng.uniform(0.02, 0.98) * (W - w)), int(rng.uniform(0.1, 0.5) * horizon)
    frame = max(1, int(0.08 * min(w, h)))
    img[y:y + h, x:x + w] = hsv_color(rng.uniform(0.05, 0.1), 0.5, rng.uniform(0.2, 0.6))
    inner = img[y + frame:y + h - frame, x + frame:x + w - frame]
    inner[:] = hsv_color(rng.uniform(0, 1), rng.uniform(0.2, 0.6), rng.uniform(0.5, 0.9))
    if inner.size:
        ih, iw = inner.shape[:2]
        for _ in range(3):  # a few soft shapes: an abstract painting
            c = (int(rng.uniform(0, iw)), int(rng.uniform(0, ih)))
            ax = (max(1, int(rng.uniform(0.1, 0.4) * iw)), max(1, int(rng.uniform(0.1, 0.4) * ih)))
            cv2.ellipse(inner, c, ax, 0, 0, 360, hsv_color(rng.uniform(0, 1), 0.6, 0.8), -1, AA)


def _floor(img, rng, W, H, horizon, app: Appearance, palette: str) -> None:
    wood = rng.random() < 0.65
    base = np.array(hsv_color(rng.uniform(0.05, 0.11), rng.uniform(0.35, 0.65), rng.uniform(0.4, 0.75)) if wood
                    else hsv_color(palette_hue(rng.uniform(0, 1), palette), rng.uniform(0.05, 0.3),
                                   rng.uniform(0.3, 0.6)), np.float32)
    rows = np.linspace(0.85, 1.05, H - horizon)[:, None, None]
    img[horizon:] = base * rows
    if not wood:
        return
    # Planks run away from the camera: rays from a vanishing point at the camera's eye height.
    vx, vy = W * rng.uniform(0.3, 0.7), app.floor_y_px - 0.75 * app.stature_px
    spacing = W * rng.uniform(0.06, 0.12)
    xs = np.arange(vx - 3 * W, vx + 3 * W, spacing)
    floor = img[horizon:]
    for x0, x1 in zip(xs[:-1], xs[1:]):
        def at(y, xb):  # x of the ray through (xb, H) at row y
            return vx + (xb - vx) * (y - vy) / (H - vy)
        poly = np.array([[at(horizon, x0), 0], [at(horizon, x1), 0], [x1, H - horizon], [x0, H - horizon]])
        colour = base * rng.uniform(0.85, 1.12)
        cv2.fillPoly(floor, [_fx(poly)], colour.tolist(), AA, SHIFT)
        cv2.polylines(floor, [_fx(poly[[0, 3]])], False, (base * 0.6).tolist(), 1, AA, SHIFT)


# -------------------------------------------------------------------------------------- dancer

class Girth:
    """Limb radii in pixels for one dancer."""

    def __init__(self, app: Appearance):
        k = app.stature_px * app.build
        self.thigh, self.knee, self.shin_low = 0.05 * k, 0.034 * k, 0.023 * k
        self.upper_arm, self.elbow, self.wrist = 0.029 * k, 0.023 * k, 0.017 * k
        self.neck = 0.026 * k
        self.waist = 0.5 * app.hip_width * app.stature_px + 0.03 * k
        self.hips = 0.5 * app.hip_width * app.stature_px + 0.048 * k
        self.chest = 0.46 * app.shoulder_width * app.stature_px


def render_dancer(img: np.ndarray, app: Appearance, geo: Geometry) -> np.ndarray:
    """Draw the dancer over `img` (in place) and return the keypoints with their visibility:
    confidence 0 for points outside the frame, for face points hidden behind an arm and, in back
    view, for the face. `img` may be an RGBA sheet, whose alpha then gathers what was drawn."""
    g, j, S = Girth(app), geo.joints, app.stature_px
    _shadow(img, app, geo)
    if app.hair_style == "long" and not geo.back:
        _long_hair(img, app, geo)
    _legs(img, app, geo, g)
    _torso(img, app, geo, g)
    neck_top = j["Chin"] - 0.25 * geo.head_size[1] * geo.head_axes[1]
    capsule(img, j["Neck"] + geo.torso_up * 0.01 * S, neck_top, g.neck, g.neck * 0.9, shade(app.skin, 0.8))
    if app.hair_style == "long" and geo.back:  # seen from behind it falls over the neck and shoulders
        _long_hair(img, app, geo)
    _head(img, app, geo)
    for side, _ in SIDES:
        _arm(img, app, geo, g, side)
    return _visibility(geo, g, img.shape[1], img.shape[0])


def _shadow(img, app: Appearance, geo: Geometry) -> None:
    # Darken a soft ellipse of floor under the feet; blended only inside its bounding box.
    x = 0.5 * (geo.joints["RAnkle"][0] + geo.joints["LAnkle"][0])
    y, ax, ay = app.floor_y_px, 0.2 * app.stature_px, 0.035 * app.stature_px
    x0, x1 = max(0, int(x - ax) - 1), min(img.shape[1], int(x + ax) + 2)
    y0, y1 = max(0, int(y - ay) - 1), min(img.shape[0], int(y + ay) + 2)
    if x1 <= x0 or y1 <= y0:
        return
    roi = img[y0:y1, x0:x1]
    mask = np.zeros(roi.shape[:2], np.uint8)
    ellipse(mask, (x - x0, y - y0), (ax, ay), 0, 255)
    keep = 1 - 0.4 * mask[:, :, None] / 255.0
    if roi.shape[2] == 4:  # on a layer the shadow is black paint of that coverage
        roi[:, :, 3:] = 255 - ((255 - roi[:, :, 3:]) * keep).astype(np.uint8)
    roi[:, :, :3] = (roi[:, :, :3] * keep).astype(np.uint8)


def _legs(img, app: Appearance, geo: Geometry, g: Girth) -> None:
    j, S = geo.joints, app.stature_px
    covered = app.bottom_style == "trousers"
    leg = app.bottom if covered else app.skin
    for side, _ in SIDES:
        hip, knee, ankle = j[f"{side}Hip"], j[f"{side}Knee"], j[f"{side}Ankle"]
        shaded_capsule(img, knee, ankle, g.knee * 0.95, g.shin_low, leg)
        shaded_capsule(img, hip, knee, g.thigh, g.knee, leg)
        if app.bottom_style == "shorts":
            shaded_capsule(img, hip, hip + 0.55 * (knee - hip), g.thigh * 1.08, g.knee * 1.25, app.bottom)
        foot = geo.feet[side]
        hull = cv2.convexHull(foot["outline"].astype(np.float32))[:, 0]
        fill(img, hull, shade(app.shoes, 0.7))
        fill(img, hull.mean(0) + (hull - hull.mean(0)) * 0.8 + LIGHT * 0.01 * S, app.shoes)
    if app.bottom_style != "skirt":  # the seat of the trousers joins the legs
        up, across = geo.torso_up, _across(geo)
        mid = j["MidHip"]
        seat = [mid + up * 0.1 * S - across * g.waist, mid + up * 0.1 * S + across * g.waist,
                j["LHip"] + across * g.thigh, mid - up * 0.07 * S, j["RHip"] - across * g.thigh]
        shaded_polygon(img, seat, app.bottom)


def _across(geo: Geometry) -> np.ndarray:
    d = geo.joints["LShoulder"] - geo.joints["RShoulder"]
    return d / (np.hypot(*d) + 1e-9)


def _torso(img, app: Appearance, geo: Geometry, g: Girth) -> None:
    j, S, up, across = geo.joints, app.stature_px, geo.torso_up, _across(geo)
    neck, mid = j["Neck"], j["MidHip"]

    def outline(side: str, s: float) -> list:  # neckline to hem down one side of the shirt
        out = s * across
        return [neck + out * 0.04 * S + up * 0.025 * S,
                j[f"{side}Shoulder"] + up * 0.02 * S + out * 0.01 * S,
                j[f"{side}Shoulder"] + out * g.upper_arm - up * 0.01 * S,
                neck + out * g.chest - up * 0.1 * S,
                mid + up * 0.13 * S + out * g.waist,
                mid - up * 0.005 * S + out * g.hips * 1.03]

    shaded_polygon(img, outline("R", -1.0) + outline("L", 1.0)[::-1], app.shirt)
    if app.bottom_style == "skirt":
        knees = 0.5 * (j["RKnee"] + j["LKnee"])
        hem = mid + 0.72 * (knees - mid)
        flare = max(g.hips * 1.35, 0.5 * abs(j["LKnee"][0] - j["RKnee"][0]) + g.knee * 1.6)
        skirt = [mid + up * 0.1 * S - across * g.waist, mid + up * 0.1 * S + across * g.waist,
                 hem + across * flare, hem - across * flare]
        shaded_polygon(img, skirt, app.bottom)


def _long_hair(img, app: Appearance, geo: Geometry) -> None:
    _head_fill(img, geo, [(-1.08, -0.3), (1.08, -0.3), (1.2, 1.55), (-1.2, 1.55)], shade(app.hair, 0.8))


def _head_fill(img, geo: Geometry, points_n, color) -> None:
    pts = np.asarray(points_n, float) * geo.head_size
    fill(img, geo.head_center + pts @ geo.head_axes, color)


def _head_point(geo: Geometry, x: float, y: float) -> np.ndarray:
    return geo.head_center + (np.array([x, y]) * geo.head_size) @ geo.head_axes


def _head(img, app: Appearance, geo: Geometry) -> None:
    a, b = geo.head_size
    roll = np.degrees(np.arctan2(geo.head_axes[0, 1], geo.head_axes[0, 0]))
    face = geo.keypoints[FACE, :2]
    ellipse(img, _head_point(geo, 0, -0.06), (1.07 * a, 1.05 * b), roll, app.hair)  # hair behind
    _ears(img, app, geo, roll, front=False)
    if app.hair_style == "bun":
        disc(img, _head_point(geo, 0.1 * geo.yaw, -1.08), 0.42 * a, app.hair)
    if geo.back:  # the back of the head: hair all over, shaded like the rest
        ellipse(img, geo.head_center, (a, b), roll, shade(app.hair, 0.8))
        ellipse(img, _head_point(geo, -0.1, -0.05), (0.86 * a, 0.9 * b), roll, app.hair)
        _ears(img, app, geo, roll, front=True)
        return
    ellipse(img, geo.head_center, (a, b), roll, shade(app.skin, 0.85))
    ellipse(img, _head_point(geo, -0.1, -0.05), (0.86 * a, 0.9 * b), roll, app.skin)
    # Fringe: the top of the head above a hairline that follows the head's turn.
    t = np.linspace(np.pi, 2 * np.pi, 15)
    cap = np.stack([1.06 * np.cos(t), -0.06 + 1.05 * np.sin(t)], 1)
    line = np.stack([np.linspace(1.0, -1.0, 9), -0.45 - 0.12 * np.sin(np.linspace(0, np.pi, 9))], 1)
    line[:, 0] += 0.25 * geo.yaw
    _head_fill(img, geo, np.concatenate([cap, line]), app.hair)
    # Eyes: white, iris, upper lid.
    for eye, pupil in ((face[36:42], face[68]), (face[42:48], face[69])):
        c = eye.mean(0)
        fill(img, c + (eye - c) * 1.2, (235, 235, 230))
        # Dark, bold eyes (iris, pupil, lashes): at 20 px faces they are what face detectors key on.
        disc(img, pupil, 0.085 * a + 0.025 * b, app.eyes)
        disc(img, pupil, 0.04 * a, (15, 10, 10))
        _line(img, c + (eye[[0, 1, 2, 3]] - c) * 1.25, shade(app.hair, 0.6), 0.035 * b)
    for brow in (face[17:22], face[22:27]):
        _line(img, brow, shade(app.hair, 0.8), 0.045 * b)
    # Nose: shaded side of the bridge, the base, nostrils.
    _line(img, face[28:31] + geo.head_axes[0] * 0.12 * a, shade(app.skin, 0.78), 0.035 * b)
    _line(img, face[31:36], shade(app.skin, 0.7), 0.03 * b)
    for k in (32, 34):
        disc(img, face[k], 0.04 * a, shade(app.skin, 0.45))
    disc(img, face[30], 0.08 * a, shade(app.skin, 1.06))  # the tip catches the light
    fill(img, face[48:60], app.lips)
    if geo.mouth_open > 0.15:
        fill(img, face[60:68], (70, 20, 25))
    _line(img, face[[60, 61, 62, 63, 64]], shade(app.lips, 0.6), 0.02 * b)
    _ears(img, app, geo, roll, front=True)


def _ears(img, app: Appearance, geo: Geometry, roll: float, front: bool) -> None:
    a, b = geo.head_size
    for ear, forward in zip(geo.ears, geo.front_ears):
        if forward == front:
            ellipse(img, ear, (0.16 * a, 0.24 * b), roll, shade(app.skin, 0.85))


def _line(img, points, color, half_width) -> None:
    """A polyline as a thin band: sub-pixel width, unlike cv2.polylines."""
    points = np.asarray(points, float)
    for p, q in zip(points[:-1], points[1:]):
        capsule(img, p, q, half_width, half_width, color)


def _arm(img, app: Appearance, geo: Geometry, g: Girth, side: str) -> None:
    j = geo.joints
    sh, el, wr = j[f"{side}Shoulder"], j[f"{side}Elbow"], j[f"{side}Wrist"]
    sleeve = app.shirt
    shaded_capsule(img, el, wr, g.elbow * 0.95, g.wrist, sleeve if app.sleeves == "long" else app.skin)
    shaded_capsule(img, sh, el, g.upper_arm, g.elbow, app.skin)
    if app.sleeves == "short":
        shaded_capsule(img, sh, sh + 0.5 * (el - sh), g.upper_arm * 1.12, g.elbow * 1.2, sleeve)
    else:
        shaded_capsule(img, sh, el, g.upper_arm * 1.05, g.elbow * 1.05, sleeve)
    _hand(img, app, geo.keypoints[RHAND if side == "R" else LHAND, :2])


def _hand(img, app: Appearance, pts: np.ndarray) -> None:
    length = np.hypot(*(pts[12] - pts[0]))
    across = pts[5] - pts[17]
    across = across / (np.hypot(*across) + 1e-9)
    palm = [pts[0] + across * 0.1 * length, pts[1], pts[5] + across * 0.05 * length, pts[9], pts[13],
            pts[17] - across * 0.05 * length, pts[0] - across * 0.12 * length]
    dark, r = shade(app.skin, 0.65), 0.045 * length
    outline = 0.35 if length > 12 else 0.15  # px of darker rim between fingers
    fill(img, cv2.convexHull(np.asarray(palm, np.float32))[:, 0], app.skin)
    for f in range(5):
        chain = pts[1 + 4 * f: 5 + 4 * f]
        for p, q in zip(chain[:-1], chain[1:]):
            capsule(img, p, q, r * 1.15 + outline, r + outline, dark)
        for p, q in zip(chain[:-1], chain[1:]):
            capsule(img, p, q, r * 1.15, r, app.skin)


def _visibility(geo: Geometry, g: Girth, width: int, height: int) -> np.ndarray:
    kp = geo.keypoints.copy()
    x, y = kp[:, 0], kp[:, 1]
    kp[(x < 0) | (y < 0) | (x > width - 1) | (y > height - 1), 2] = 0.0
    # Face points behind a forearm, upper arm or hand are not drawn: the arms come last.
    j = geo.joints
    face_rows = np.r_[FACE.start:FACE.stop, B["Nose"], B["REye"], B["LEye"], B["REar"], B["LEar"]]
    pts = kp[face_rows, :2]
    hidden = np.zeros(len(pts), bool)
    for side, _ in SIDES:
        for p, q, r in ((j[f"{side}Shoulder"], j[f"{side}Elbow"], g.upper_arm * 1.12),
                        (j[f"{side}Elbow"], j[f"{side}Wrist"], g.elbow)):
            hidden |= _segment_distance(pts, p, q) < r
        hand = geo.keypoints[RHAND if side == "R" else LHAND, :2]
        hull = cv2.convexHull(hand.astype(np.float32))
        hidden |= np.array([cv2.pointPolygonTest(hull, (float(a), float(b)), True) > -1.0 for a, b in pts])
    kp[face_rows[hidden], 2] = 0.0
    if geo.back:  # the face is on the far side of the head
        kp[np.r_[FACE.start:FACE.stop, B["Nose"], B["REye"], B["LEye"]], 2] = 0.0
    kp[kp[:, 2] == 0, :2] = 0.0  # OpenPose writes missing points as (0, 0, 0)
    return kp.astype(np.float32)


def _segment_distance(pts: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    d = q - p
    t = np.clip(((pts - p) @ d) / (d @ d + 1e-9), 0, 1)
    return np.hypot(*(pts - (p + t[:, None] * d)).T)
