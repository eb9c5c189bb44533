"""Renderer: image flip equals pose flip, determinism, styles."""
import numpy as np
import pytest

from posedistill.data.motion import generate_clips
from posedistill.data.renderer import draw_scene, flip_scene, render, render_clips, render_scene, to_uint8
from posedistill.skeleton import flip_pose


@pytest.fixture(scope="module")
def poses():
    return generate_clips(4, 6, np.random.default_rng(0)).poses.reshape(-1, 17, 3)


@pytest.mark.parametrize("style", ["source", "target"])
def test_flipped_image_equals_rendering_of_flipped_pose(poses, style):
    scene = draw_scene(4, 6, style, np.random.default_rng(1))
    img = to_uint8(render_scene(poses, scene))
    img_of_flip = to_uint8(render_scene(flip_pose(poses), flip_scene(scene)))
    np.testing.assert_array_equal(img[:, :, ::-1], img_of_flip)
    assert img.std() > 0  # something was drawn


def test_source_render_of_flipped_pose_is_flipped_image(poses):
    a = render(poses, "source", np.random.default_rng(5))
    b = render(flip_pose(poses), "source", np.random.default_rng(5))
    np.testing.assert_array_equal(a[:, :, ::-1], b)
    assert a.dtype == np.uint8 and a.shape == (len(poses), 64, 64, 1)


def test_render_is_seeded_and_styles_differ(poses):
    clips = poses.reshape(4, 6, 17, 3)
    t1 = render_clips(clips, "target", np.random.default_rng(2))
    t2 = render_clips(clips, "target", np.random.default_rng(2))
    np.testing.assert_array_equal(t1, t2)
    assert t1.shape == (4, 6, 64, 64, 3)
    s = render_clips(clips, "source", np.random.default_rng(2))
    assert (s[..., 0] == 0).mean() > 0.5  # black background
    assert (t1.reshape(-1, 3) == 0).all(-1).mean() < 0.01  # cluttered background


def test_render_rejects_wrong_pose_shape():
    scene = draw_scene(1, 1, "source", np.random.default_rng(0))
    with pytest.raises(ValueError, match="poses must be"):
        render_scene(np.zeros((1, 16, 3)), scene)


def test_windowed_zbuffer_equals_full_grid_evaluation(poses):
    from posedistill.data.renderer import SIZE, _primitives, _window_depth, _zbuffer

    scene = draw_scene(4, 6, "target", np.random.default_rng(3))
    a, b, radius, za, zb, _ = _primitives(poses, scene)
    win, zbuf, cover = _zbuffer(a, b, radius, za, zb)
    full, origin = _window_depth(a, b, radius, za, zb, SIZE)  # every primitive over the whole image
    assert (origin == 0).all()
    np.testing.assert_array_equal(zbuf, full.min(1))
    np.testing.assert_array_equal(win[cover], full.argmin(1)[cover])
    assert cover.mean() > 0.05


def test_noisy_render_does_not_depend_on_threads_and_has_the_style_noise_level(poses):
    scene = draw_scene(4, 6, "target", np.random.default_rng(4))
    clean = render_scene(poses, scene)
    one = render_scene(poses, scene, chunk=8, threads=1, noise=0.03, noise_seed=9)
    two = render_scene(poses, scene, chunk=8, threads=2, noise=0.03, noise_seed=9)
    np.testing.assert_array_equal(one, two)
    eps = (one - clean).ravel()
    assert abs(eps.std() - 0.03) < 0.001 and abs(eps.mean()) < 0.001
    np.testing.assert_array_equal(render_scene(poses, scene, threads=2, noise=0.03, noise_seed=9, uint8=True),
                                  render_scene(poses, scene, noise=0.03, noise_seed=9, uint8=True))
