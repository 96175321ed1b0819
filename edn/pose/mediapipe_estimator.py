"""MediaPipe Holistic as a pose detector, converted to the OpenPose layout (layout.py).

Holistic runs in tracking mode over one video's frames; `begin` starts a fresh graph so a
new video never inherits the previous one's tracked person. Conversions:

- BODY_25 from BlazePose's 33 landmarks: Neck and MidHip are the shoulder and hip midpoints,
  big toe = foot_index, heel = heel, and the small toe (which BlazePose lacks) is put beside
  foot_index on the outer side of the foot with half its confidence. Confidence = visibility.
- Face 70 from the 468-point face mesh through a fixed mesh -> dlib-68 index map; pupils are
  the iris centres when `refine_face_landmarks` is on, else the centres of the eye contours.
- Hands: MediaPipe's 21 hand points are in OpenPose's order already. Holistic's left hand is the
  person's left, as in OpenPose.

Face and hand landmarks carry no confidence of their own: they get 1 when detected. Every
point outside the frame, or not detected, is (0, 0, 0).
"""
from __future__ import annotations

import numpy as np

from edn.errors import ConfigError
from edn.pose.estimator import PoseEstimator, people_array
from edn.pose.layout import FACE, LHAND, N_KEYPOINTS, RHAND, B

# BODY_25 name -> BlazePose landmark index (person's own left/right in both).
_BODY_FROM_BLAZEPOSE = {
    "Nose": 0, "REye": 5, "LEye": 2, "REar": 8, "LEar": 7,
    "RShoulder": 12, "RElbow": 14, "RWrist": 16, "LShoulder": 11, "LElbow": 13, "LWrist": 15,
    "RHip": 24, "RKnee": 26, "RAnkle": 28, "LHip": 23, "LKnee": 25, "LAnkle": 27,
    "RBigToe": 32, "RHeel": 30, "LBigToe": 31, "LHeel": 29,
}

# dlib 68-point order from face-mesh indices (jaw from the person's right ear round the chin,
# brows outer->inner / inner->outer, nose bridge down to the tip, nostril base, eyes from their
# outer / inner corner clockwise, outer then inner lips from the right mouth corner).
MESH_TO_DLIB68 = (
    127, 234, 93, 132, 58, 172, 136, 176, 152, 400, 365, 397, 288, 361, 323, 454, 356,
    70, 63, 105, 66, 107,
    336, 296, 334, 293, 300,
    168, 197, 5, 1,
    98, 97, 2, 326, 327,
    33, 160, 158, 133, 153, 144,
    362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
)
RIGHT_IRIS_CENTRE, LEFT_IRIS_CENTRE = 468, 473  # present with refine_face_landmarks=True
SMALL_TOE_CONFIDENCE = 0.5


def _to_pixels(landmarks, width: int, height: int) -> np.ndarray:
    """Normalized landmark list -> (N, 3) array of x, y pixels and visibility (1 when absent)."""
    out = np.array([(p.x * width, p.y * height, p.visibility if p.HasField("visibility") else 1.0)
                    for p in landmarks.landmark], np.float32)
    return out


def _small_toe(toe: np.ndarray, heel: np.ndarray, ankle: np.ndarray, other_ankle: np.ndarray) -> np.ndarray:
    """A point beside the big toe on the outside of the foot, a third of the foot length away."""
    along = toe - heel
    length = float(np.hypot(*along))
    if length < 1e-6:
        return toe.copy()
    across = np.array([-along[1], along[0]]) / length
    if np.dot(across, ankle - other_ankle) < 0:  # the outside is away from the other foot
        across = -across
    return toe + across * length / 3 - along * 0.1


def convert_holistic(results, width: int, height: int) -> np.ndarray:
    """Holistic results for one (height, width) frame -> (137, 3) OpenPose-layout pose."""
    pose = np.zeros((N_KEYPOINTS, 3), np.float32)
    if results.pose_landmarks is not None:
        lm = _to_pixels(results.pose_landmarks, width, height)
        for name, k in _BODY_FROM_BLAZEPOSE.items():
            pose[B[name]] = lm[k]
        for name, (a, b) in (("Neck", (11, 12)), ("MidHip", (23, 24))):
            pose[B[name], :2] = (lm[a, :2] + lm[b, :2]) / 2
            pose[B[name], 2] = min(lm[a, 2], lm[b, 2])
        for side, other in (("R", "L"), ("L", "R")):
            toe, heel = pose[B[side + "BigToe"]], pose[B[side + "Heel"]]
            pose[B[side + "SmallToe"], :2] = _small_toe(toe[:2], heel[:2], pose[B[side + "Ankle"], :2],
                                                        pose[B[other + "Ankle"], :2])
            pose[B[side + "SmallToe"], 2] = SMALL_TOE_CONFIDENCE * min(toe[2], heel[2])
    if results.face_landmarks is not None:
        mesh = _to_pixels(results.face_landmarks, width, height)
        face = np.ones((70, 3), np.float32)
        face[:68, :2] = mesh[list(MESH_TO_DLIB68), :2]
        if len(mesh) > LEFT_IRIS_CENTRE:
            face[68, :2], face[69, :2] = mesh[RIGHT_IRIS_CENTRE, :2], mesh[LEFT_IRIS_CENTRE, :2]
        else:
            face[68, :2], face[69, :2] = face[36:42, :2].mean(0), face[42:48, :2].mean(0)
        pose[FACE] = face
    for hand, rows in ((results.left_hand_landmarks, LHAND), (results.right_hand_landmarks, RHAND)):
        if hand is not None:
            pts = _to_pixels(hand, width, height)
            pose[rows, :2], pose[rows, 2] = pts[:, :2], 1.0
    x, y = pose[:, 0], pose[:, 1]
    outside = (x < 0) | (y < 0) | (x > width - 1) | (y > height - 1)
    pose[outside | (pose[:, 2] <= 0)] = 0.0
    return pose


class MediapipeHolistic(PoseEstimator):
    """MediaPipe Holistic (pose + face mesh + hands), tracking across one video's frames; it
    follows one person, so a frame gives at most one pose."""

    name = "mediapipe"

    def __init__(self, model_complexity: int = 1, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, refine_face_landmarks: bool = False,
                 smooth_landmarks: bool = True):
        self.options = dict(static_image_mode=False, model_complexity=model_complexity,
                            min_detection_confidence=min_detection_confidence,
                            min_tracking_confidence=min_tracking_confidence,
                            refine_face_landmarks=refine_face_landmarks,
                            smooth_landmarks=smooth_landmarks)
        self._holistic = None

    def begin(self, video_url: str) -> None:
        # A fresh graph: tracking state (and timestamps) must not leak across videos.
        self.close()
        self._start()

    def _start(self) -> None:
        import mediapipe as mp  # imported lazily: it is slow to import and only this needs it
        try:
            self._holistic = mp.solutions.holistic.Holistic(**self.options)
        except Exception as e:
            # The wheel ships only the model_complexity=1 pose model; 0 (lite) and 2 (heavy)
            # are downloaded into the package on first use, which fails offline.
            if self.options["model_complexity"] != 1:
                raise ConfigError(
                    f"mediapipe holistic model_complexity={self.options['model_complexity']} needs a "
                    f"pose model that is not in the mediapipe wheel and could not be downloaded ({e}); "
                    "use model_complexity=1, which runs offline") from e
            raise

    def estimate(self, frame_rgb: np.ndarray, frame_index: int) -> np.ndarray:
        if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3 or frame_rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame_rgb.shape} {frame_rgb.dtype}")
        if self._holistic is None:
            self._start()
        frame = np.ascontiguousarray(frame_rgb)
        frame.flags.writeable = False  # lets MediaPipe use the buffer without copying
        results = self._holistic.process(frame)
        return people_array([convert_holistic(results, frame.shape[1], frame.shape[0])])

    def close(self) -> None:
        if self._holistic is not None:
            self._holistic.close()
            self._holistic = None
