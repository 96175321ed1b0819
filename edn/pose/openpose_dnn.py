"""The real OpenPose body network (BODY_25 or COCO), run with OpenCV's DNN module.

OpenPose's weights are NOT bundled with edn (nor downloaded by it): supply them yourself, from
any fsspec URL (local path, gs://, memory://):

- Caffe, as OpenPose ships them: `prototxt_url` = models/pose/body_25/pose_deploy.prototxt and
  `model_url` = models/pose/body_25/pose_iter_584000.caffemodel (COCO: pose/coco/
  pose_deploy_linevec.prototxt + pose_iter_440000.caffemodel, with model="COCO");
- or ONNX: `model_url` = a .onnx file of the same network (no prototxt).

Without arguments the URLs come from $EDN_OPENPOSE_MODEL and $EDN_OPENPOSE_PROTOTXT (both read
only when `model_url` is not given). A missing, unreadable or corrupt file is an error naming it.

The network's one output blob is (1, C, H/8, W/8): the part heatmaps plus a background channel,
then the PAFs (2 per limb): BODY_25 26 + 52 channels, COCO 19 + 38. Frames are prepared as
OpenPose does: BGR, scaled to `input_height` keeping the aspect ratio, padded (grey) to a
multiple of 8, values x / 256 - 0.5. The maps are upsampled (bicubic) to the input size and
decoded by edn.pose.paf; coordinates are mapped back to the frame's pixels.

Output: every person as a (137, 3) OpenPose-layout pose (layout.py), confidence = the part's
heatmap peak. This network is body-only: the face and hand rows are always zeros. COCO's 18
parts fill the BODY_25 rows of the same names; MidHip (which COCO lacks) is the midpoint of the
hips when both are found (with the lower confidence), and the feet are always zeros.
"""
from __future__ import annotations

import logging
import os

import cv2
import numpy as np

from edn.errors import ConfigError, ResourcesError, WeightsError
from edn.pose.estimator import PoseEstimator, people_array
from edn.pose.layout import N_KEYPOINTS, B
from edn.pose.paf import POSE_MODELS, PoseModel, decode_people
from edn.storage import read_bytes

log = logging.getLogger(__name__)

MODEL_ENV, PROTOTXT_ENV = "EDN_OPENPOSE_MODEL", "EDN_OPENPOSE_PROTOTXT"
STRIDE = 8
PAD_VALUE = 128          # grey: 0 after the normalisation below
INPUT_SCALE, INPUT_MEAN = 1 / 256, 128.0   # OpenPose: value / 256 - 0.5 = (value - 128) / 256
NOT_BUNDLED = (
    "OpenPose weights are not bundled with edn: download the OpenPose body model (Caffe prototxt + "
    "caffemodel, or an ONNX export) and pass model_url= (and prototxt_url= for Caffe), or set "
    f"${MODEL_ENV} (and ${PROTOTXT_ENV})"
)


class OpenPoseModelError(WeightsError, RuntimeError):
    """The OpenPose model files are missing, unreadable, corrupt or not the expected network."""


def _read(url: str, what: str) -> np.ndarray:
    try:
        data = read_bytes(url)
    except FileNotFoundError:
        raise OpenPoseModelError(f"OpenPose {what} {url} does not exist. {NOT_BUNDLED}") from None
    except Exception as e:  # noqa: BLE001 - any filesystem's failure, reported with the URL
        raise OpenPoseModelError(f"cannot read OpenPose {what} {url}: {type(e).__name__}: {e}. {NOT_BUNDLED}") from e
    if not data:
        raise OpenPoseModelError(f"OpenPose {what} {url} is empty. {NOT_BUNDLED}")
    return np.frombuffer(data, np.uint8)


def load_net(model_url: str, prototxt_url: str | None = None) -> cv2.dnn.Net:
    """Read a Caffe (prototxt + caffemodel) or ONNX network from fsspec URLs, in memory."""
    if prototxt_url:
        proto = _read(prototxt_url, "prototxt")
        try:
            cv2.dnn.readNetFromCaffe(proto)
        except cv2.error as e:
            raise OpenPoseModelError(f"OpenPose prototxt {prototxt_url} is not a valid Caffe prototxt: "
                                     f"{str(e).strip()}") from None
        weights = _read(model_url, "caffemodel")
        try:
            net = cv2.dnn.readNetFromCaffe(proto, weights)
        except cv2.error as e:
            raise OpenPoseModelError(f"OpenPose caffemodel {model_url} is corrupt or does not match "
                                     f"{prototxt_url}: {str(e).strip()}") from None
    else:
        if model_url.lower().endswith(".caffemodel"):
            raise OpenPoseModelError(f"{model_url} is a Caffe model: give its prototxt too "
                                     f"(prototxt_url= or ${PROTOTXT_ENV})")
        data = _read(model_url, "ONNX model")
        try:
            net = cv2.dnn.readNetFromONNX(data)
        except cv2.error as e:
            raise OpenPoseModelError(f"OpenPose ONNX model {model_url} is corrupt or not ONNX: "
                                     f"{str(e).strip()}") from None
    if net.empty():
        raise OpenPoseModelError(f"OpenPose model {model_url} holds no network")
    return net


def _set_backend(net: cv2.dnn.Net, backend: str, allow_cpu_fallback: bool) -> str:
    if backend == "cpu":
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        return "cpu"
    if backend not in ("cuda", "cuda_fp16"):
        raise ConfigError(f"backend must be 'cpu', 'cuda' or 'cuda_fp16', not {backend!r}")
    target = cv2.dnn.DNN_TARGET_CUDA_FP16 if backend == "cuda_fp16" else cv2.dnn.DNN_TARGET_CUDA
    try:
        available = target in cv2.dnn.getAvailableTargets(cv2.dnn.DNN_BACKEND_CUDA)
    except cv2.error:
        available = False
    if not available:
        message = f"OpenCV {cv2.__version__} here has no CUDA DNN target {backend!r} (needs OpenCV built with CUDA)"
        if not allow_cpu_fallback:
            raise ResourcesError(message + " (or pass allow_cpu_fallback=True to run on the CPU)")
        log.warning("%s: running OpenPose on the CPU", message)
        return _set_backend(net, "cpu", False)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_CUDA)
    net.setPreferableTarget(target)
    return backend


def to_body_25(parts: np.ndarray, model: PoseModel) -> np.ndarray:
    """(n_parts, 3) in the network's part order -> (137, 3) OpenPose-layout pose."""
    pose = np.zeros((N_KEYPOINTS, 3), np.float32)
    for k, name in enumerate(model.parts):
        pose[B[name]] = parts[k]
    if "MidHip" not in model.parts:
        r, left = pose[B["RHip"]], pose[B["LHip"]]
        if r[2] > 0 and left[2] > 0:
            pose[B["MidHip"]] = ((r[0] + left[0]) / 2, (r[1] + left[1]) / 2, min(r[2], left[2]))
    return pose


class OpenPoseDnn(PoseEstimator):
    """OpenPose's body network through cv2.dnn; see the module docstring.

    model: "BODY_25" or "COCO" (the network's part set); input_height: the network's input
    height in pixels (OpenPose's default 368; the width follows the frame's aspect ratio);
    backend: "cpu" (default), "cuda" or "cuda_fp16" (an error when this OpenCV has no CUDA, unless
    allow_cpu_fallback). The decoding thresholds are edn.pose.paf.decode_people's.
    """

    name = "openpose"

    def __init__(self, model_url: str | None = None, prototxt_url: str | None = None, model: str = "BODY_25",
                 input_height: int = 368, backend: str = "cpu", allow_cpu_fallback: bool = False,
                 peak_threshold: float = 0.05, smoothing_sigma: float = 0.0, refine_peaks: bool = True,
                 paf_samples: int = 10, paf_threshold: float = 0.05, min_above_fraction: float = 0.8,
                 min_parts: int = 4, min_mean_score: float = 0.4):
        key = model.upper().replace("-", "_")
        if key not in POSE_MODELS:
            raise ConfigError(f"model must be one of {sorted(POSE_MODELS)}, not {model!r}")
        self.model = POSE_MODELS[key]
        if input_height < STRIDE:
            raise ConfigError(f"input_height must be at least {STRIDE}, got {input_height}")
        if model_url is None:
            model_url, prototxt_url = os.environ.get(MODEL_ENV), prototxt_url or os.environ.get(PROTOTXT_ENV)
        if not model_url:
            raise OpenPoseModelError(f"no OpenPose model given (model_url= or ${MODEL_ENV}). {NOT_BUNDLED}")
        self.model_url, self.prototxt_url = model_url, prototxt_url
        self.input_height = int(input_height)
        self.net = load_net(model_url, prototxt_url)
        self.backend = _set_backend(self.net, backend, allow_cpu_fallback)
        self.decode_options = dict(
            peak_threshold=peak_threshold, smoothing_sigma=smoothing_sigma, refine_peaks=refine_peaks,
            n_samples=paf_samples, paf_threshold=paf_threshold, min_above_fraction=min_above_fraction,
            min_parts=min_parts, min_mean_score=min_mean_score)

    def prepare(self, frame_rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """RGB frame -> (network input blob (1, 3, H8, W8), (content height, content width))."""
        h, w = frame_rgb.shape[:2]
        ch = self.input_height
        cw = max(1, int(round(w * ch / h)))
        bgr = cv2.cvtColor(np.ascontiguousarray(frame_rgb), cv2.COLOR_RGB2BGR)
        if (ch, cw) != (h, w):
            shrink = ch < h
            bgr = cv2.resize(bgr, (cw, ch), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        ph, pw = -(-ch // STRIDE) * STRIDE, -(-cw // STRIDE) * STRIDE
        bgr = cv2.copyMakeBorder(bgr, 0, ph - ch, 0, pw - cw, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
        blob = cv2.dnn.blobFromImage(bgr, INPUT_SCALE, mean=(INPUT_MEAN,) * 3, swapRB=False, crop=False)
        return blob, (ch, cw)

    def maps(self, frame_rgb: np.ndarray) -> np.ndarray:
        """The network's heatmaps and PAFs upsampled to the input size, padding cropped:
        (content height, content width, channels) float32."""
        blob, (ch, cw) = self.prepare(frame_rgb)
        self.net.setInput(blob)
        out = self.net.forward()
        m = self.model
        expected = (1, m.n_channels, blob.shape[2] // STRIDE, blob.shape[3] // STRIDE)
        if out.shape != expected:
            other = [p.name for p in POSE_MODELS.values() if out.ndim == 4 and out.shape[1] == p.n_channels]
            hint = f" (it looks like model={other[0]!r})" if other and other[0] != m.name else ""
            raise OpenPoseModelError(
                f"{self.model_url}: the network's output is {tuple(out.shape)} for input {tuple(blob.shape)}; "
                f"an OpenPose {m.name} network gives {expected} ({m.n_heatmaps} heatmaps + "
                f"{2 * len(m.pairs)} PAF channels at stride {STRIDE}){hint}")
        grid = np.ascontiguousarray(out[0].transpose(1, 2, 0), np.float32)
        up = cv2.resize(grid, (blob.shape[3], blob.shape[2]), interpolation=cv2.INTER_CUBIC)
        return up.reshape(blob.shape[2], blob.shape[3], -1)[:ch, :cw]

    def estimate(self, frame_rgb: np.ndarray, frame_index: int) -> np.ndarray:
        h, w = frame_rgb.shape[:2]
        maps = self.maps(frame_rgb)
        ch, cw = maps.shape[:2]
        people = []
        for parts in decode_people(maps, self.model, **self.decode_options):
            found = parts[:, 2] > 0
            # pixel centres: network pixel x covers frame pixels around (x + 0.5) * w / cw - 0.5
            parts[found, 0] = (parts[found, 0] + 0.5) * (w / cw) - 0.5
            parts[found, 1] = (parts[found, 1] + 0.5) * (h / ch) - 0.5
            people.append(to_body_25(parts, self.model))
        return people_array(people)

    def close(self) -> None:
        self.net = None

