"""A source's sound carried into a new video from the source's first frame: sample-exact, to the
video's end."""
import numpy as np
import pytest

from edn.audio import SourceAudio
from edn.synth import synthesize
from edn.video import VideoWriter
from tests.audio_helpers import assert_plays_in_sync

FPS, FRAMES = 30.0, 60  # 2 s: four beats of the synthetic dancer's music


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("audio")
    return next(f for f in synthesize(str(out), dancers=1, frames=FRAMES, size=(32, 32), seed=7, audio=True)
                if f.endswith(".mp4"))


# frame 7 starts at sample 10290 = 10 AAC frames of 1024 and 50 samples: a cut inside a packet
@pytest.mark.parametrize("first_frame", [0, 7])
def test_source_sound_from_a_frame_on_is_sample_exact(source, tmp_path, first_frame):
    out = str(tmp_path / "cut.mp4")
    start = first_frame / FPS
    with VideoWriter(out, FPS, audio=SourceAudio(source, start)) as writer:
        for _ in range(first_frame, FRAMES):
            writer.write(np.zeros((16, 16, 3), np.uint8))
    assert_plays_in_sync(out, source, start, (FRAMES - first_frame) / FPS)
