"""Dance motion and the skeleton it puts in the frame.

A `Choreography` turns time into joint angles: each angle is a squashed sum of sinusoids with
per-dancer random frequencies (some locked to the dancer's beat, some slow) and phases, so the
motion never repeats exactly; stepping, travelling across the floor and squats ride on top.
`pose_geometry` turns the angles into every point the renderer draws and the 137 keypoints,
from the same numbers, so the ground truth is what the picture shows.

Angles are radians measured from straight down; positive means away from the body's midline
(outward) for the limb's own side. Image y grows downwards; the person's right is image left.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edn.pose.layout import FACE, LHAND, N_KEYPOINTS, RHAND, B
from edn.synth.body import FACE_NOSE_TIP_Y, Appearance

SIDES = (("R", -1.0), ("L", 1.0))  # person's right is drawn on the image's left


@dataclass(frozen=True)
class Channel:
    """lo..hi through tanh of a sum of sinusoids: smooth, bounded, and not periodic."""
    lo: float
    hi: float
    freqs: np.ndarray
    phases: np.ndarray
    amps: np.ndarray
    bias: float

    def __call__(self, t: np.ndarray) -> np.ndarray:
        s = self.bias + (self.amps * np.sin(2 * np.pi * self.freqs * t[:, None] + self.phases)).sum(1)
        return self.lo + (self.hi - self.lo) * (0.5 + 0.5 * np.tanh(s))


def _terms(rng: np.random.Generator, beat: float, n_beat: int, n_slow: int, gain: float):
    mult = rng.choice([0.25, 0.5, 1.0], n_beat) * rng.uniform(0.97, 1.03, n_beat)
    freqs = np.concatenate([beat * mult, rng.uniform(0.04, 0.3, n_slow)])
    amps = rng.dirichlet(np.ones(len(freqs))) * gain
    return freqs, rng.uniform(0, 2 * np.pi, len(freqs)), amps


def _channel(rng, lo, hi, beat, bias=0.0, gain=1.6, n_beat=2, n_slow=2, shared=None, share=0.0,
             max_speed=3.5) -> Channel:
    """`max_speed` (units of the channel per second) bounds how fast the value can change:
    fast terms are turned down until even their worst-case alignment stays under it."""
    f, p, a = _terms(rng, beat, n_beat, n_slow, gain)
    if shared is not None:  # mix in terms another channel also uses: symmetric arm moves
        f, p = np.concatenate([f, shared[0]]), np.concatenate([p, shared[1]])
        a = np.concatenate([a * (1 - share), shared[2] * share])
    speed = 0.5 * (hi - lo) * 2 * np.pi * f * a  # d/dt of lo + (hi-lo)(1+tanh s)/2, at most
    fast = f > 0.3
    excess = speed.sum() - max_speed
    if excess > 0:
        if speed[fast].sum() > excess:
            a = np.where(fast, a * (1 - excess / speed[fast].sum()), a)
        else:
            a = a * max_speed / speed.sum()
    return Channel(lo, hi, f, p, a, bias)


class Choreography:
    """A dancer's dance: `angles(t)` gives every motion channel at times t (seconds)."""

    def __init__(self, rng: np.random.Generator, app: Appearance, width: int):
        self.beat = beat = rng.uniform(0.8, 1.6)  # Hz
        c = {}
        c["sway"] = _channel(rng, -0.045, 0.045, beat, max_speed=0.15)
        c["lean"] = _channel(rng, -0.14, 0.14, beat, max_speed=0.6)
        c["pelvis_roll"] = _channel(rng, -0.06, 0.06, beat)
        c["shoulder_roll"] = _channel(rng, -0.07, 0.07, beat)
        c["head_roll"] = _channel(rng, -0.22, 0.22, beat, max_speed=1.0)
        c["head_yaw"] = _channel(rng, -0.35, 0.35, beat, max_speed=1.2)
        c["mouth"] = _channel(rng, 0.0, 1.0, beat, bias=-0.5)
        c["gaze"] = _channel(rng, -0.3, 0.3, beat)
        c["plie"] = _channel(rng, 0.0, 0.7, beat, bias=rng.uniform(-1.2, -0.2), gain=2.0, max_speed=1.5)
        c["step"] = _channel(rng, 0.0, 1.2, beat, bias=rng.uniform(-0.6, 0.6), gain=2.0, n_beat=0, n_slow=3)
        arm_shared = {k: _terms(rng, beat, 2, 2, 2.0) for k in ("sh", "el", "reach")}
        share = rng.uniform(0.2, 0.8)
        for side, _ in SIDES:
            c[f"{side}sh"] = _channel(rng, 0.1, 2.95, beat, bias=rng.uniform(-0.9, 0.0), gain=2.0,
                                      shared=arm_shared["sh"], share=share)
            c[f"{side}el"] = _channel(rng, -0.45, 2.1, beat, bias=rng.uniform(-0.3, 0.3), gain=2.0,
                                      shared=arm_shared["el"], share=share)
            c[f"{side}reach"] = _channel(rng, 0.0, 0.9, beat, bias=-0.6, shared=arm_shared["reach"], share=share)
            c[f"{side}wr"] = _channel(rng, -0.5, 0.5, beat)
            c[f"{side}curl"] = _channel(rng, 0.0, 0.85, beat, bias=-0.3)
            c[f"{side}spread"] = _channel(rng, 0.0, 0.3, beat)
            c[f"{side}abd"] = _channel(rng, 0.0, 0.22, beat, max_speed=0.6)
            c[f"{side}turn"] = _channel(rng, 0.25, 0.8, beat, n_beat=0)
        self.channels = c
        self.step_freq = beat * (rng.choice([0.5, 1.0]) if beat < 1.1 else 0.5)
        self.step_phase = rng.uniform(0, 2 * np.pi)
        # Travel across the floor: slow, two incommensurate components, kept inside the frame.
        room = max(0.0, min(app.center_x_px, width - app.center_x_px) - 0.25 * app.stature_px)
        self.travel_amp = rng.uniform(0.4, 1.0, 2) * room / 2
        self.travel_freq = rng.uniform(0.03, 0.12, 2)
        self.travel_phase = rng.uniform(0, 2 * np.pi, 2)

    def angles(self, t: np.ndarray) -> dict[str, np.ndarray]:
        t = np.asarray(t, float)
        a = {k: ch(t) for k, ch in self.channels.items()}
        # Alternate feet leave the floor on the step rhythm while the "step" envelope is up.
        beat = np.sin(2 * np.pi * self.step_freq * t + self.step_phase)
        a["Rlift"] = a["step"] * np.clip(beat, 0, None) ** 1.5
        a["Llift"] = a["step"] * np.clip(-beat, 0, None) ** 1.5
        a["travel"] = (self.travel_amp * np.sin(2 * np.pi * self.travel_freq * t[:, None]
                                                + self.travel_phase)).sum(1)
        return a


def _dir(theta: float) -> np.ndarray:
    """Unit vector at image angle theta from straight down (positive turns towards +x)."""
    return np.array([np.sin(theta), np.cos(theta)])


def _rot(v: np.ndarray, theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _face_template() -> np.ndarray:
    """The 70 face points in the head's frame: x in half head widths (+ = image right for a
    frontal face), y in half head heights (-1 crown, +1 chin)."""
    s = np.linspace(0, 1, 17)
    c, n = np.cos(np.pi * s), np.sin(np.pi * s)
    # Jaw: a squarish curve from ear level round the chin, inside the head outline.
    jaw = np.stack([-0.92 * np.sign(c) * np.abs(c) ** 0.8, -0.02 + 0.93 * n ** 0.8], 1)
    k = np.linspace(0, 1, 5)
    rbrow = np.stack([-0.72 + 0.56 * k, -0.3 - 0.07 * np.sin(np.pi * k)], 1)
    lbrow = rbrow[::-1] * [-1, 1]
    bridge = np.stack([np.zeros(4), np.linspace(-0.05, FACE_NOSE_TIP_Y, 4)], 1)
    nose_bottom = np.array([[-0.19, 0.42], [-0.1, 0.45], [0, 0.47], [0.1, 0.45], [0.19, 0.42]])
    reye = np.array([[-0.6, 0], [-0.48, -0.075], [-0.32, -0.075], [-0.2, 0], [-0.32, 0.06], [-0.48, 0.06]])
    leye = reye[[3, 2, 1, 0, 5, 4]] * [-1, 1]
    outer = np.array([[-0.33, 0.63], [-0.2, 0.57], [-0.08, 0.55], [0, 0.56], [0.08, 0.55], [0.2, 0.57],
                      [0.33, 0.63], [0.2, 0.7], [0.08, 0.73], [0, 0.735], [-0.08, 0.73], [-0.2, 0.7]])
    inner = np.array([[-0.26, 0.63], [-0.08, 0.615], [0, 0.62], [0.08, 0.615], [0.26, 0.63],
                      [0.08, 0.645], [0, 0.65], [-0.08, 0.645]])
    pupils = np.array([[-0.4, 0.0], [0.4, 0.0]])
    pts = np.concatenate([jaw, rbrow, lbrow, bridge, nose_bottom, reye, leye, outer, inner, pupils])
    assert pts.shape == (70, 2)
    return pts


FACE_TEMPLATE = _face_template()
LOWER_LIP = np.array([55, 56, 57, 58, 59, 65, 66, 67])  # drop when the mouth opens
EAR_TEMPLATE = np.array([[-1.02, 0.08], [1.02, 0.08]])  # ear centres (right, left)


def _hand_template(curl: float, spread: float) -> np.ndarray:
    """21 hand points in the hand's frame: u along the hand (wrist to middle tip = 1), v across
    towards the thumb. Curled fingers fold towards the palm, which the frontal camera sees as
    shortening (past 90 degrees the tips come back towards the knuckles)."""
    pts = np.zeros((21, 2))
    thumb_dirs = np.array([[0.10, 0.16], [0.14, 0.14], [0.12, 0.10], [0.11, 0.08]])
    pts[1:5] = np.cumsum(thumb_dirs * [1 - 0.35 * curl, 1], axis=0)
    bases = np.array([[0.45, 0.17], [0.46, 0.055], [0.44, -0.06], [0.41, -0.16]])
    lengths = np.array([0.48, 0.54, 0.50, 0.40])
    fan = np.array([1.0, 0.3, -0.3, -1.0]) * spread
    bends = np.cumsum(np.array([0.8, 1.1, 0.9]) * curl)
    fractions = np.array([0.45, 0.30, 0.25])
    for f in range(4):
        d = np.array([np.cos(fan[f]), np.sin(fan[f])])
        along = np.cumsum(fractions * lengths[f] * np.cos(bends))
        pts[5 + 4 * f] = bases[f]
        pts[6 + 4 * f: 9 + 4 * f] = bases[f] + along[:, None] * d
    return pts


@dataclass
class Geometry:
    """Everything one frame's drawing needs, in pixels, plus the (137, 3) keypoints."""
    keypoints: np.ndarray
    joints: dict            # name -> (2,) points: BODY_25 names plus helper points
    head_center: np.ndarray
    head_axes: np.ndarray   # (2, 2): rows = image direction of the head's +x and +y (down)
    head_size: np.ndarray   # half width, half height
    yaw: float
    ears: np.ndarray        # (2, 2)
    torso_up: np.ndarray    # unit vector
    feet: dict              # side -> dict of shoe outline points
    mouth_open: float
    back: bool = False      # turned away from the camera: the back of the head, no face
    front_ears: tuple[bool, bool] = (False, False)  # (right, left) turned towards the camera, over the head


def _face_points(yaw: float, mouth: float, gaze: float) -> np.ndarray:
    """Template turned by yaw on a head-shaped ellipsoid (features slide sideways and bunch
    up on the far side), mouth opened, pupils looking sideways."""
    p = FACE_TEMPLATE.copy()
    p[LOWER_LIP, 1] += 0.07 * mouth
    p[[68, 69], 0] += 0.08 * gaze
    depth = np.sqrt(np.clip(1.0 - p[:, 0] ** 2 - 0.5 * p[:, 1] ** 2, 0.0, None))
    x = p[:, 0] * np.cos(yaw) + depth * np.sin(yaw)
    p[:, 0] = np.clip(x, -0.97, 0.97)
    return p


def _foot(ankle: np.ndarray, side: float, turn: float, app: Appearance) -> dict:
    """Shoe outline and foot keypoints. The foot lies on the floor plane pointing at the camera,
    turned out by `turn`; the camera's slight elevation maps floor depth to image y (k)."""
    S, k = app.stature_px, 0.22
    length, width = app.foot * S, 0.42 * app.foot * S
    fwd = np.array([side * np.sin(turn), k * np.cos(turn)])       # along the foot, in the image
    out = np.array([side * np.cos(turn), -k * np.sin(turn) * side])  # across, towards the outside
    sole = ankle + [0, app.ankle * S]
    centre = sole + fwd * 0.25 * length
    a = np.linspace(0, 2 * np.pi, 20, endpoint=False)[:, None]
    outline = centre + np.cos(a) * fwd * 0.5 * length + np.sin(a) * out * 0.5 * width
    collar = ankle + np.array([[-1, 0], [1, 0]]) * 0.028 * app.build * S
    tip = centre + fwd * 0.42 * length
    return {
        "outline": np.concatenate([outline, collar, collar + [0, app.ankle * S * 0.6]]),
        "BigToe": tip - out * 0.14 * width,
        "SmallToe": tip + out * 0.3 * width - fwd * 0.12 * length,
        "Heel": sole - fwd * 0.18 * length - [0, 0.2 * app.ankle * S],
    }


def pose_geometry(app: Appearance, a: dict[str, float]) -> Geometry:
    """One frame: angles `a` (scalars, one frame of Choreography.angles) -> geometry + keypoints."""
    S = app.stature_px
    j: dict[str, np.ndarray] = {}
    # Legs hang from the pelvis; the pelvis height is whatever puts the lower foot on the floor.
    legs = {}
    roll = a["pelvis_roll"]
    for side, s in SIDES:
        t_ang = a[f"{side}abd"] + a["plie"]
        thigh = app.thigh * S * np.cos(a[f"{side}lift"])  # knee coming forward foreshortens it
        s_ang = a[f"{side}abd"] - 0.8 * a["plie"]
        hip_off = s * 0.5 * app.hip_width * S * np.array([np.cos(roll), np.sin(roll)])
        legs[side] = (s, t_ang, thigh, s_ang, hip_off)
    ext = {k: v[4][1] + v[2] * np.cos(v[1]) + app.shin * S * np.cos(v[3]) for k, v in legs.items()}
    mid_hip = np.array([app.center_x_px + a["travel"] + a["sway"] * S,
                        app.floor_y_px - app.ankle * S - max(ext.values())])
    j["MidHip"] = mid_hip
    for side, (s, t_ang, thigh, s_ang, hip_off) in legs.items():
        j[f"{side}Hip"] = mid_hip + hip_off
        j[f"{side}Knee"] = j[f"{side}Hip"] + thigh * _dir(s * t_ang)
        j[f"{side}Ankle"] = j[f"{side}Knee"] + app.shin * S * _dir(s * s_ang)

    lean = a["lean"]
    up = np.array([np.sin(lean), -np.cos(lean)])
    j["Neck"] = mid_hip + app.torso * S * up
    across = _rot(np.array([np.cos(lean), np.sin(lean)]), a["shoulder_roll"])
    j["RShoulder"] = j["Neck"] - across * 0.5 * app.shoulder_width * S
    j["LShoulder"] = j["Neck"] + across * 0.5 * app.shoulder_width * S

    for side, s in SIDES:
        base = -lean + s * a[f"{side}sh"]
        j[f"{side}Elbow"] = j[f"{side}Shoulder"] + app.upper_arm * S * np.cos(a[f"{side}reach"]) * _dir(base)
        fore = base + s * a[f"{side}el"]
        j[f"{side}Wrist"] = j[f"{side}Elbow"] + app.forearm * S * _dir(fore)
        j[f"{side}HandDir"] = _dir(fore + s * a[f"{side}wr"])

    head_roll = lean + a["head_roll"]
    chin = j["Neck"] + app.neck * S * _rot(up, 0.3 * a["head_roll"])
    axes = np.array([[np.cos(head_roll), np.sin(head_roll)], [-np.sin(head_roll), np.cos(head_roll)]])
    half = np.array([0.5 * app.head_width, 0.5 * app.head]) * S
    centre = chin - axes[1] * half[1]
    face_n = _face_points(a["head_yaw"], a["mouth"], a["gaze"])
    face = centre + (face_n * half) @ axes
    ear_n = EAR_TEMPLATE * [np.cos(0.5 * a["head_yaw"]), 1] + [0.1 * np.sin(a["head_yaw"]), 0]
    ears = centre + (ear_n * half) @ axes
    j["Chin"] = chin

    kp = np.zeros((N_KEYPOINTS, 3))
    for name in ("Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
                 "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle"):
        kp[B[name], :2] = j[name]
    _set_head(kp, face, ears)
    feet = {}
    for side, s in SIDES:
        feet[side] = _foot(j[f"{side}Ankle"], s, a[f"{side}turn"], app)
        for part in ("BigToe", "SmallToe", "Heel"):
            kp[B[side + part], :2] = feet[side][part]
        kp[RHAND if side == "R" else LHAND, :2] = _hand_points(app, j, side, s, a)
    kp[:, 2] = 1.0
    return Geometry(kp, j, centre, axes, half, float(a["head_yaw"]), ears, up, feet, float(a["mouth"]))


SIDE_ON_WIDTH = 0.3  # seen side-on a body is still about this fraction of its frontal width


def turn_geometry(geo: Geometry, a: dict[str, float], yaw: float) -> Geometry:
    """The same pose with the body turned by `yaw` about its vertical centre line (0 faces the
    camera, pi shows its back): x shrinks towards the line by cos(yaw), which past pi/2 mirrors
    the figure, so the person's right lands on the image's right, as a detector reports it.
    The head keeps its width (it is about as deep as wide): its features slide round with the
    turn and the back view has none."""
    c = np.cos(yaw)
    s = float(np.copysign(max(abs(c), SIDE_ON_WIDTH), c))
    cx = geo.joints["MidHip"][0]

    def mirror(p: np.ndarray) -> np.ndarray:
        p = np.array(p, float)
        p[..., 0] = cx + (p[..., 0] - cx) * s
        return p

    def direction(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, float) * [s, 1.0]
        return v / (np.hypot(*v) + 1e-9)

    joints = {k: direction(v) if k.endswith("Dir") else mirror(v) for k, v in geo.joints.items()}
    feet = {side: {k: mirror(v) for k, v in foot.items()} for side, foot in geo.feet.items()}
    centre, half, axes = mirror(geo.head_center), geo.head_size, geo.head_axes
    face_yaw = a["head_yaw"] + float(np.clip(yaw, -np.pi / 2, np.pi / 2))
    face = centre + (_face_points(face_yaw, a["mouth"], a["gaze"]) * half) @ axes
    ear_n = EAR_TEMPLATE * [np.cos(0.5 * a["head_yaw"]) * c, 1] + [0.1 * np.sin(a["head_yaw"]), 0]
    ears = centre + (ear_n * half) @ axes
    # Turning with the face sliding to +x brings the right ear forward and the left one round
    # the back; inside the head's outline the one is drawn over the head, the other hidden by it.
    inside = np.abs(ear_n[:, 0]) < 1.0
    forward = -np.sign(EAR_TEMPLATE[:, 0]) * np.sin(yaw) > 0
    kp = geo.keypoints.copy()
    kp[:, :2] = mirror(kp[:, :2])
    _set_head(kp, face, ears)
    kp[[B["REar"], B["LEar"]], 2] = np.where(inside & ~forward, 0.0, kp[[B["REar"], B["LEar"]], 2])
    return Geometry(kp, joints, centre, axes, half, face_yaw, ears, direction(geo.torso_up), feet,
                    geo.mouth_open, back=abs(yaw) > np.pi / 2,
                    front_ears=(bool(inside[0] and forward[0]), bool(inside[1] and forward[1])))


def _set_head(kp: np.ndarray, face: np.ndarray, ears: np.ndarray) -> None:
    """The head's keypoints, in place: the 70 face points, and the body's nose and eyes on the
    face's nose tip (30) and pupils (68, 69), its ears on `ears`."""
    kp[B["Nose"], :2] = face[30]
    kp[B["REye"], :2], kp[B["LEye"], :2] = face[68], face[69]
    kp[B["REar"], :2], kp[B["LEar"], :2] = ears
    kp[FACE, :2] = face


def _hand_points(app: Appearance, j: dict, side: str, s: float, a: dict) -> np.ndarray:
    u = j[f"{side}HandDir"]
    palm = app.palm_forward[0 if side == "R" else 1]
    # With the palm to the camera the thumb is on the outside of a hanging arm (anatomical
    # pose); the back of the hand mirrors it.
    v = np.array([u[1], -u[0]]) * s * (1 if palm else -1)
    local = _hand_template(a[f"{side}curl"], a[f"{side}spread"]) * app.hand * app.stature_px
    return j[f"{side}Wrist"] + local[:, :1] * u + local[:, 1:] * v
