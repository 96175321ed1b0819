"""A detector whose worker process dies once, mid-video: the ground truth, except that the first
time frame `crash_at` is reached (a marker file remembers it) the process exits at once, as a
worker killed by the OOM killer or a lost node would."""
import os

from edn.pose.estimator import PoseEstimator
from edn.pose.groundtruth import GroundTruthPoses


class CrashOnce(PoseEstimator):
    name = "crash-once"

    def __init__(self, marker: str, crash_at: int):
        self.inner, self.marker, self.crash_at = GroundTruthPoses(), marker, crash_at

    def begin(self, video_url):
        self.inner.begin(video_url)

    def estimate(self, frame, index):
        if index == self.crash_at and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os._exit(1)
        return self.inner.estimate(frame, index)
