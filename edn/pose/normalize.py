"""Global pose normalization (the paper's section 3.1): map source poses onto the target's
body scale and floor position with a linear map between each video's closest and farthest
ankle positions, giving every source frame its own scale and translation."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edn.pose.layout import B, ankle_y, body_height


@dataclass(frozen=True)
class FloorStats:
    """Per-video statistics, in the video's pixels (y grows downwards, so 'close' is the largest y)."""
    close: float         # ankle y nearest the camera
    far: float           # ankle y farthest from the camera
    height_close: float  # body height (nose to ankles) when the ankles are near `close`
    height_far: float
    width: int           # frame size the statistics were measured in
    height: int

    def to_dict(self) -> dict:
        return asdict(self)

    def scaled(self, factor: float) -> "FloorStats":
        """The same statistics for the frames resized by `factor`."""
        return FloorStats(self.close * factor, self.far * factor, self.height_close * factor,
                          self.height_far * factor, round(self.width * factor), round(self.height * factor))

    @classmethod
    def from_dict(cls, d: dict) -> "FloorStats":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def _fill_nan(values: np.ndarray, default: float) -> np.ndarray:
    """Frames with no visible ankle take values interpolated from their neighbours; with none
    anywhere (the feet out of the frame, or no dancer), `default`."""
    if np.isnan(values).all():
        return np.full_like(values, default)
    import pandas as pd  # here: rendering and edn.bench.gpu_check import this module where pandas may be absent
    return pd.Series(values).interpolate(limit_direction="both").to_numpy()


def floor_stats(poses: np.ndarray, width: int, height: int, alpha: float = 0.7,
                close_percentile: float = 99.0, band: float = 0.02) -> FloorStats:
    """`poses` (N, 137, 3). `close` is a high percentile of ankle y rather than the maximum, so a
    few mis-detected frames cannot move it; `far` is the smallest ankle y within alpha times the
    close-to-median distance of the median (the paper's rule against outliers above the floor).
    Heights are the median body height over frames whose ankles lie within `band` of the floor
    range (or 2 px) of each position: the paper takes the maximum, which one bad frame can move."""
    ys = np.array([ankle_y(p) for p in poses])
    hs = np.array([body_height(p) for p in poses])
    ok = ~np.isnan(ys) & ~np.isnan(hs)
    if ok.sum() == 0:
        raise ValueError("no frame has both a visible nose and a visible ankle")
    ys, hs = ys[ok], hs[ok]
    close = float(np.percentile(ys, close_percentile))
    med = float(np.median(ys))
    far = float(ys[ys >= med - alpha * abs(close - med)].min())
    tol = max(band * (close - far), 2.0)

    def height_near(y0: float) -> float:
        return float(np.median(hs[np.abs(ys - y0) <= tol]))

    return FloorStats(close, far, height_near(close), height_near(far), width, height)


def floor_stats_or_reason(poses: np.ndarray, width: int, height: int) -> tuple[FloorStats | None, str | None]:
    """floor_stats, or None and why there are none (the feet never seen): a model then renders
    sources onto its person without normalization."""
    try:
        return floor_stats(poses, width, height), None
    except ValueError as e:
        return None, str(e)


def normalize_poses(poses: np.ndarray, source: FloorStats, target: FloorStats) -> np.ndarray:
    """Source poses (N, 137, 3) -> poses in the target's frame, scale and floor.

    Per frame, r places the source's ankle between its far (0) and close (1) positions; the
    scale c and the target floor position interpolate linearly in r. The pose is scaled by c
    about its ankle point, which then moves to the target floor position (y only, as in the
    official code); x is carried over in proportion to the frame widths.
    """
    out = poses.astype(np.float32, copy=True)
    out[:, :, 0] *= target.width / source.width
    ys = _fill_nan(np.array([ankle_y(p) for p in poses]), source.close)
    span = source.close - source.far
    r = (ys - source.far) / span if span > 1e-6 else np.ones_like(ys)
    c_close = target.height_close / source.height_close
    c_far = target.height_far / source.height_far
    c = c_far + r * (c_close - c_far)
    t = target.far + r * (target.close - target.far)
    visible = out[:, :, 2] > 0
    ankle_x = np.array([_ankle_x(p) for p in out])
    for i in range(len(out)):
        anchor = np.array([ankle_x[i], ys[i]], np.float32)
        out[i, :, :2] = (out[i, :, :2] - anchor) * c[i] + (anchor[0], t[i])
    out[~visible] = 0.0
    return out


def _ankle_x(pose: np.ndarray) -> float:
    """x of the ankle midpoint, or of the visible keypoints when no ankle is seen."""
    ankles = pose[[B["RAnkle"], B["LAnkle"]]]
    seen = ankles[ankles[:, 2] > 0.1] if (ankles[:, 2] > 0.1).any() else pose[pose[:, 2] > 0]
    return float(seen[:, 0].mean()) if len(seen) else 0.0


def transfer_poses(poses: np.ndarray, source: FloorStats | None, target: FloorStats | None,
                   source_size: tuple[int, int], target_size: tuple[int, int]) -> np.ndarray:
    """Source poses (N, 137, 3) in the target's frame: normalized (normalize_poses) when both
    videos have floor statistics; else, when either video never showed the dancer's feet (an
    upper-body shot, say), only carried over in proportion to the frame sizes."""
    if source is not None and target is not None:
        return normalize_poses(poses, source, target)
    out = poses.astype(np.float32, copy=True)
    out[:, :, :2] *= (target_size[0] / source_size[0], target_size[1] / source_size[1])
    out[out[:, :, 2] <= 0] = 0.0
    return out
