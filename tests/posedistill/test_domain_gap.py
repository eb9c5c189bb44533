"""The domain-gap analysis: four pose × style rows, and an oracle that returns the true pose has zero error."""
import numpy as np
import torch

from posedistill.analysis import domain_gap
from posedistill.data.motion import generate_clips


class _Echo(torch.nn.Module):
    """Predicts the pose the renderer drew: replays the same seeded pose stream."""

    def __init__(self, seed: int, n_clips: int, frames: int):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.queue = []
        for poses_from, mix in domain_gap.POSES.items():
            clips = generate_clips(n_clips, frames, rng, mix=mix, elevation=domain_gap.get_style(poses_from).elevation)
            poses = torch.from_numpy(clips.poses.reshape(-1, 17, 3))
            self.queue += [poses, poses]  # one per style
            for style in ("source", "target"):  # keep the stream in step with the renderer's draws
                domain_gap.render_clips(clips.poses, style, rng)

    def predict_pose(self, images):
        return self.queue.pop(0)[: len(images)]


def test_domain_gap_rows_and_a_perfect_model(tmp_path):
    model = _Echo(seed=3, n_clips=2, frames=2)
    numbers = domain_gap.analyze_domain_gap(model, None, tmp_path, n_clips=2, frames_per_clip=2, seed=3)
    assert len(numbers) == 8 and all(abs(v) < 1e-3 for v in numbers.values()), numbers
    assert (tmp_path / "domain_gap.md").read_text().count("\n| ") == 4  # the 4 rows
    assert len((tmp_path / "domain_gap.csv").read_text().splitlines()) == 5
