"""Vectorised numpy renderer of 64×64 stick-figure images in which an image flip equals a pose flip.

Limbs are capsules in a distance field over per-primitive pixel windows, batched over frames; a per-pixel
z-buffer updated window by window orders them, limb width scales with 1/depth and shade falls with depth. Left and right
limbs look the same; a chest patch and a nose dot, drawn only when the person faces the camera,
disambiguate facing. Everything is mirror-symmetric in floating point, so
``render_scene(flip_pose(p), flip_scene(s)) == render_scene(p, s)[:, :, ::-1]`` exactly.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np

from posedistill.skeleton import PAPER17

SIZE = 64
# primitive kinds: 0 limb, 1 torso, 2 head, 3 chest patch, 4 nose dot
_BONES = PAPER17.bones
_BONE_KIND = [1 if (p, j) in ((0, 1), (1, 2), (1, 5), (0, 9), (0, 13)) else 0 for p, j in _BONES]
_BONE_KIND[_BONES.index((1, 8))] = 2
_RADIUS_MM = np.array([45.0, 110.0, 95.0, 55.0, 22.0])  # per kind


@dataclass(frozen=True)
class Style:
    """Domain appearance: colours, clutter, blur, noise, occluders, crop jitter, camera distance
    (camera elevation is a pose property, drawn by the pools)."""

    name: str
    channels: int
    random_colors: bool
    clutter: bool
    blur: tuple[float, float]
    noise: float
    occluder_p: float
    jitter: float
    distance: tuple[float, float] = (4000.0, 6000.0)
    elevation: tuple[float, float] = (0.0, 10.0)


SOURCE = Style("source", 1, False, False, (0.0, 0.0), 0.0, 0.0, 0.0, elevation=(0.0, 10.0))
TARGET = Style("target", 3, True, True, (0.0, 1.0), 0.03, 0.2, 0.08, elevation=(15.0, 35.0))
# The spec's target without its clutter and occluders (appearance = random RGB colours, blur, noise, crop
# jitter; elevation 15-35 deg): the synthetic experiments' default target since issue 7, where the full
# target left even the oracle (target labels) near source-only at demo size (measurements in
# configs/experiment/posedistill/synthetic_adapt.yaml).
TARGET_PLAIN = replace(TARGET, name="target_plain", clutter=False, occluder_p=0.0)
STYLES = {"source": SOURCE, "target": TARGET, "target_plain": TARGET_PLAIN}


@dataclass
class Scene:
    """Per-frame rendering parameters for n frames (C channels).

    distance (n,) mm; jitter (n, 3) = crop centre shift x, y (fraction of the box) and box scale;
    colors (n, 5, C) per primitive kind; backgrounds (m, H, W, C) with bg_index (n,) (None = black);
    occluders (n, 4) int pixel box x0, y0, x1, y1 (x1 ≤ x0 = none) with occ_color (n, C); blur (n,) σ px.
    """

    distance: np.ndarray
    jitter: np.ndarray
    colors: np.ndarray
    backgrounds: np.ndarray | None
    bg_index: np.ndarray
    occluders: np.ndarray
    occ_color: np.ndarray
    blur: np.ndarray

    def take(self, idx: np.ndarray) -> Scene:
        return replace(self, distance=self.distance[idx], jitter=self.jitter[idx], colors=self.colors[idx],
                       bg_index=self.bg_index[idx], occluders=self.occluders[idx],
                       occ_color=self.occ_color[idx], blur=self.blur[idx])


def get_style(style: str | Style) -> Style:
    if isinstance(style, Style):
        return style
    if style not in STYLES:
        raise ValueError(f"unknown render style {style!r}; choose from {sorted(STYLES)}")
    return STYLES[style]


STYLE_FIELDS = tuple(f for f in Style.__dataclass_fields__ if f != "name")
_RANGE_FIELDS = ("blur", "distance", "elevation")


def resolve_style(style: str | Style = "target", overrides: dict | None = None) -> Style:
    """A named style (or a Style) with per-field overrides, e.g. ``resolve_style("target",
    {"clutter": False, "occluder_p": 0.0})``; ranges (blur, distance, elevation) are 2-element lists.
    The name is kept: overrides change the appearance, not which domain it is. An unknown field is an
    error that names it."""
    st = get_style(style)
    if not overrides:
        return st
    kw = {}
    for key, value in dict(overrides).items():
        if key not in STYLE_FIELDS:
            raise ValueError(f"unknown render style field {key!r} in overrides of style {st.name!r}; "
                             f"fields: {', '.join(STYLE_FIELDS)}")
        if key in _RANGE_FIELDS:
            value = tuple(float(v) for v in value)
            if len(value) != 2 or value[0] > value[1]:
                raise ValueError(f"render style field {key!r} must be a range [low, high], got {list(value)}")
        elif key in ("random_colors", "clutter"):
            value = bool(value)
        elif key == "channels":
            value = int(value)
        else:
            value = float(value)
        kw[key] = value
    return replace(st, **kw)


def style_params(style: str | Style) -> dict:
    """Every field of the effective style as plain JSON types (part of pool cache keys)."""
    st = get_style(style)
    return {f: (list(v) if isinstance(v, tuple) else v) for f in Style.__dataclass_fields__ for v in [getattr(st, f)]}


def _clutter(m: int, rng: np.random.Generator, c: int) -> np.ndarray:
    """(m, H, W, C) static procedural backgrounds: gradient, rectangles, blobs, smooth noise."""
    g = np.linspace(0, 1, SIZE, dtype=np.float32)
    base = rng.uniform(0.1, 0.6, (m, 1, 1, c)).astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi, (m, 1, 1, 1))
    grad = (np.cos(ang) * g[None, None, :, None] + np.sin(ang) * g[None, :, None, None]) * 0.3
    bg = base + grad.astype(np.float32)
    yy, xx = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    for _ in range(4):
        x0, y0 = rng.integers(0, SIZE, (2, m, 1, 1))
        w, h = rng.integers(4, 24, (2, m, 1, 1))
        col = rng.uniform(0, 1, (m, 1, 1, c)).astype(np.float32)
        rect = ((xx >= x0) & (xx < x0 + w) & (yy >= y0) & (yy < y0 + h))[..., None]
        bg = np.where(rect, col, bg)
    for _ in range(3):
        cx, cy = rng.uniform(0, SIZE, (2, m, 1, 1))
        r = rng.uniform(3, 10, (m, 1, 1))
        col = rng.uniform(0, 1, (m, 1, 1, c)).astype(np.float32)
        blob = (((xx - cx) ** 2 + (yy - cy) ** 2) < r**2)[..., None]
        bg = np.where(blob, col, bg)
    coarse = rng.normal(0, 0.08, (m, SIZE // 8, SIZE // 8, c)).astype(np.float32)
    bg = bg + np.repeat(np.repeat(coarse, 8, 1), 8, 2)
    return np.clip(bg, 0, 1).astype(np.float32)


def draw_scene(n_clips: int, frames_per_clip: int, style: str | Style, rng: np.random.Generator) -> Scene:
    """Draw scene parameters: per clip (colours, background, occluder, blur, distance) and per
    frame (crop jitter); frames are ordered clip-major (n_clips · frames_per_clip frames)."""
    st = get_style(style)
    c, m, t = st.channels, n_clips, frames_per_clip
    if st.random_colors:
        colors = rng.uniform(0.15, 1.0, (m, 5, c)).astype(np.float32)
        colors[:, 3] = 1.0 - colors[:, 1]  # chest patch contrasts with the torso
        colors[:, 4] = 1.0 - colors[:, 2]  # nose contrasts with the head
    else:
        colors = np.broadcast_to(np.array([0.8, 0.6, 0.7, 1.0, 0.15], np.float32)[None, :, None], (m, 5, c)).copy()
    backgrounds = _clutter(m, rng, c) if st.clutter else None
    occ = np.zeros((m, 4), np.int64)
    has = rng.uniform(size=m) < st.occluder_p
    w, h = rng.integers(10, 26, (2, m))
    x0, y0 = rng.integers(0, SIZE - 10, (2, m))
    occ[has] = np.stack([x0, y0, np.minimum(x0 + w, SIZE), np.minimum(y0 + h, SIZE)], 1)[has]
    occ_color = rng.uniform(0, 1, (m, c)).astype(np.float32)
    blur = rng.uniform(*st.blur, m).astype(np.float32)
    dist = rng.uniform(*st.distance, m).astype(np.float32)
    jitter = np.zeros((m * t, 3), np.float32)
    if st.jitter > 0:
        jitter[:, :2] = rng.uniform(-st.jitter, st.jitter, (m * t, 2))
        jitter[:, 2] = rng.uniform(1 - st.jitter, 1 + st.jitter, m * t)
    else:
        jitter[:, 2] = 1.0
    rep = np.repeat(np.arange(m), t)
    return Scene(dist[rep], jitter, colors[rep], backgrounds, rep, occ[rep], occ_color[rep], blur[rep])


def flip_scene(scene: Scene) -> Scene:
    """The mirror image of a scene (backgrounds, occluders and crop shift mirrored in x)."""
    jit = scene.jitter.copy()
    jit[:, 0] = -jit[:, 0]
    occ = scene.occluders.copy()
    occ[:, 0], occ[:, 2] = SIZE - scene.occluders[:, 2], SIZE - scene.occluders[:, 0]
    bgs = None if scene.backgrounds is None else np.ascontiguousarray(scene.backgrounds[:, :, ::-1])
    return replace(scene, jitter=jit, occluders=occ, backgrounds=bgs)


def _primitives(poses: np.ndarray, scene: Scene):
    """Project joints into the crop; returns endpoints a, b (n, P, 2) px, radii (n, P) px,
    depths za, zb (n, P) mm and kinds (P,)."""
    n = len(poses)
    cam = poses.astype(np.float64) + np.stack([np.zeros(n), np.zeros(n), scene.distance], 1)[:, None]
    z = cam[..., 2]
    f = 1.2 * SIZE
    uv = f * cam[..., :2] / z[..., None]  # (n, 17, 2)
    lo, hi = uv.min(1), uv.max(1)
    size = (hi - lo).max(1) * 1.25 * scene.jitter[:, 2]  # (n,)
    centre = 0.5 * (lo + hi) + scene.jitter[:, :2] * size[:, None]
    k = SIZE / size  # px per camera-plane unit
    xy = (uv - centre[:, None]) * k[:, None, None]  # pixel coordinates relative to the image centre
    par = [p for p, _ in _BONES]
    chi = [j for _, j in _BONES]
    a, b = xy[:, par], xy[:, chi]
    za, zb = z[:, par], z[:, chi]
    kinds = list(_BONE_KIND)
    head = _BONES.index((1, 8))
    a[:, head] = xy[:, 1] + 0.55 * (xy[:, 8] - xy[:, 1])  # head capsule on the upper part of neck→top
    za[:, head] = z[:, 1] + 0.55 * (z[:, 8] - z[:, 1])
    # facing direction: forward = (l_shldr − r_shldr) × (neck − pelvis); facing the camera ⇔ z < 0
    fwd = np.cross(cam[:, 5] - cam[:, 2], cam[:, 1] - cam[:, 0])
    fwd = fwd / np.linalg.norm(fwd, axis=-1, keepdims=True).clip(1e-9)
    facing = fwd[:, 2] < 0
    chest = cam[:, 0] + 0.7 * (cam[:, 1] - cam[:, 0]) + 0.6 * _RADIUS_MM[1] * fwd
    headc = cam[:, 1] + 0.8 * (cam[:, 8] - cam[:, 1]) + 0.8 * _RADIUS_MM[2] * fwd
    extra = np.stack([chest, headc], 1)  # (n, 2, 3)
    exy = (f * extra[..., :2] / extra[..., 2:3] - centre[:, None]) * k[:, None, None]
    a = np.concatenate([a, exy], 1)
    b = np.concatenate([b, exy], 1)
    za = np.concatenate([za, extra[..., 2]], 1)
    zb = np.concatenate([zb, extra[..., 2]], 1)
    kinds = np.array(kinds + [3, 4])
    zmid = 0.5 * (za + zb)
    radius = _RADIUS_MM[kinds][None] * f / zmid * k[:, None]
    radius[:, -2:] = np.where(facing[:, None], radius[:, -2:], 0.0)
    return a, b, radius, za, zb, kinds


def _window_depth(a, b, radius, za, zb, size: int):
    """Depth of each primitive over its own size×size pixel window (inf where not covered).

    Returns depth (n, P, size, size) and integer window origins (n, P, 2) = (x0, y0). The origin
    is an odd function of the primitive centre, so mirrored primitives get mirrored windows.
    """
    centre = 0.5 * (a + b)
    half = (np.sign(centre) * np.floor(np.abs(centre) + 0.5)).astype(np.int64)
    origin = np.clip(SIZE // 2 + half - size // 2, 0, SIZE - size)
    k = np.arange(size, dtype=np.float32) + 0.5 - SIZE / 2  # window pixel centres, origin 0
    a, b = a.astype(np.float32), b.astype(np.float32)
    e = b - a
    l2 = (e**2).sum(-1)  # (n, P)
    inv = np.where(l2 > 1e-12, 1.0 / np.maximum(l2, 1e-12), 0.0).astype(np.float32)
    dx = origin[..., 0:1].astype(np.float32) + k - a[..., 0:1]  # (n, P, size) pixel x − a_x
    dy = origin[..., 1:2].astype(np.float32) + k - a[..., 1:2]
    sx = dx * (e[..., 0] * inv)[..., None]
    sy = dy * (e[..., 1] * inv)[..., None]
    s = sy[..., :, None] + sx[..., None, :]  # (n, P, size, size) projection parameter
    t = np.clip(s, 0.0, 1.0)
    d2 = dy[..., :, None] ** 2 + dx[..., None, :] ** 2  # |p − a|²
    s -= 0.5 * t  # d² = |p−a|² − 2 t (p−a)·e + t²|e|² = |p−a|² − 2 t |e|² (s − t/2)
    s *= t
    s *= (2.0 * l2)[..., None, None]
    d2 -= s
    depth = za.astype(np.float32)[..., None, None] + t * (zb - za).astype(np.float32)[..., None, None]
    np.putmask(depth, d2 >= (radius.astype(np.float32) ** 2)[..., None, None], np.inf)
    return depth, origin


def _zbuffer(a, b, radius, za, zb):
    """Per-pixel nearest primitive: (winner index (n, H, W), depth (n, H, W), covered mask).

    Primitives are visited in index order (strict <: the first one wins ties); each updates the
    z-buffer only inside its window, read and written through writeable sliding-window views.
    A window is sized per chunk to contain the primitive's largest extent in the chunk."""
    n, p = a.shape[:2]
    centre = 0.5 * (a + b)
    extent = (np.maximum(np.abs(a - centre), np.abs(b - centre)).max(-1) + radius).max(0)  # (P,) px
    sizes = np.minimum(SIZE, 4 * np.ceil((2 * extent + 2) / 4)).astype(int)
    zbuf = np.full((n, SIZE, SIZE), np.inf, np.float32)
    win = np.zeros((n, SIZE, SIZE), np.int8)
    rows = np.arange(n)
    for j in range(p):
        size, m, sl = sizes[j], SIZE - sizes[j] + 1, slice(j, j + 1)
        depth, origin = _window_depth(a[:, sl], b[:, sl], radius[:, sl], za[:, sl], zb[:, sl], size)
        zview = np.lib.stride_tricks.as_strided(zbuf, (n, m, m, size, size), zbuf.strides + zbuf.strides[1:],
                                                writeable=True)
        wview = np.lib.stride_tricks.as_strided(win, (n, m, m, size, size), win.strides + win.strides[1:],
                                                writeable=True)
        at = (rows, origin[:, 0, 1], origin[:, 0, 0])
        region, wregion = zview[at], wview[at]  # (n, size, size) copies of the windows
        nearer = depth[:, 0] < region
        np.copyto(region, depth[:, 0], where=nearer)
        np.copyto(wregion, j, where=nearer)
        zview[at], wview[at] = region, wregion
    return win, zbuf, np.isfinite(zbuf)


def _blur(img: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Mirror-symmetric separable Gaussian blur (radius 2, edge padding) with per-frame σ; (n, H, W, C).
    Mirror taps are summed before weighting, so blurring a flipped image is the flipped blur, exactly."""
    s = np.maximum(sigma, 1e-3)[:, None]
    w = np.exp(-0.5 * (np.arange(3)[None] / s) ** 2)
    w = (w / (w[:, :1] + 2 * w[:, 1:].sum(1, keepdims=True))).astype(np.float32)[:, :, None, None, None]  # (n, 3, 1, 1, 1)
    for axis in (1, 2):
        p = np.moveaxis(img, axis, 1)
        shape = list(p.shape)
        shape[1] += 4
        padded = np.empty(shape, np.float32)  # edge padding by 2 along the blurred axis (moved to axis 1)
        padded[:, 2:-2] = p
        padded[:, :2] = p[:, :1]
        padded[:, -2:] = p[:, -1:]
        p = np.moveaxis(padded, 1, axis)
        sl = (lambda o: p[:, 2 + o : 2 + o + SIZE]) if axis == 1 else (lambda o: p[:, :, 2 + o : 2 + o + SIZE])
        img = sl(0) * w[:, 0]
        pair = np.add(sl(-1), sl(1))
        pair *= w[:, 1]
        img += pair
        np.add(sl(-2), sl(2), out=pair)
        pair *= w[:, 2]
        img += pair
    return img


def _render_chunk(poses: np.ndarray, sc: Scene) -> np.ndarray:
    """Render a chunk of frames (k, 17, 3) with its scene → float32 (k, H, W, C)."""
    k, c = len(poses), sc.colors.shape[-1]
    a, b, radius, za, zb, kinds = _primitives(poses, sc)
    win, zbuf, cover = _zbuffer(a, b, radius, za, zb)
    palette = sc.colors[:, kinds].reshape(-1, c)  # (k·P, C) colour of each frame's primitives
    idx = win.astype(np.intp)
    idx += (np.arange(k) * len(kinds))[:, None, None]
    img = np.take(palette, idx, axis=0)  # (k, H, W, C) colour of the nearest primitive
    shade = (zbuf - sc.distance[:, None, None].astype(np.float32)) * np.float32(-0.3 / 1000.0)
    shade += np.float32(1.0)
    np.clip(shade, 0.4, 1.3, out=shade)
    img *= shade[..., None]
    np.clip(img, 0.0, 1.0, out=img)
    if sc.backgrounds is None:
        img[~cover] = 0.0
    else:
        np.copyto(img, sc.backgrounds[sc.bg_index], where=~cover[..., None])
    o = sc.occluders
    for i in np.flatnonzero(o[:, 2] > o[:, 0]):
        img[i, o[i, 1] : o[i, 3], o[i, 0] : o[i, 2]] = sc.occ_color[i]
    blurred = np.flatnonzero(sc.blur > 0)
    if len(blurred) == k:
        img = _blur(img, sc.blur)
    elif len(blurred):
        img[blurred] = _blur(img[blurred], sc.blur[blurred])
    return img


def render_scene(poses: np.ndarray, scene: Scene, chunk: int = 32, threads: int = 1, noise: float = 0.0,
                 noise_seed: int = 0, uint8: bool = False) -> np.ndarray:
    """Deterministic rendering of poses (n, 17, 3) in a scene → (n, H, W, C): float32 in [0, 1], or uint8
    with ``uint8``. Pixel noise of standard deviation ``noise`` (uniform) is drawn per chunk from
    ``(noise_seed, chunk start)``, so the images do not depend on ``threads``. Chunks of ``chunk`` frames
    (32 keeps a chunk's arrays in cache) run on ``threads`` threads (numpy releases the GIL), noise and
    quantisation included."""
    poses = np.asarray(poses)
    if poses.ndim != 3 or poses.shape[1:] != (17, 3):
        raise ValueError(f"render: poses must be (n, 17, 3) paper17, got {poses.shape}")
    n = len(poses)
    out = np.empty((n, SIZE, SIZE, scene.colors.shape[-1]), np.uint8 if uint8 else np.float32)

    def work(s0: int) -> None:
        idx = np.arange(s0, min(n, s0 + chunk))
        img = _render_chunk(poses[idx], scene.take(idx))
        if noise > 0:  # uniform on ±√3·noise: standard deviation ``noise``, 6× cheaper to draw than normal
            eps = np.random.default_rng([noise_seed, s0]).random(img.shape, dtype=np.float32)
            eps -= np.float32(0.5)
            eps *= np.float32(2 * np.sqrt(3) * noise)
            img += eps
        out[idx[0] : idx[-1] + 1] = to_uint8(img) if uint8 else img

    starts = range(0, n, chunk)
    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, starts))
    else:
        for s0 in starts:
            work(s0)
    return out


def to_uint8(img: np.ndarray) -> np.ndarray:
    """[0, 1] float image → uint8 (clipped, rounded)."""
    img = np.clip(img, 0.0, 1.0)
    img *= 255.0
    return np.rint(img, out=img).astype(np.uint8)


def render(poses: np.ndarray, style: str | Style, rng: np.random.Generator) -> np.ndarray:
    """Render independent frames (n, 17, 3) in a style → uint8 (n, 64, 64, C)."""
    return render_clips(np.asarray(poses)[:, None], style, rng)[:, 0]


def render_clips(poses: np.ndarray, style: str | Style, rng: np.random.Generator, threads: int = 1) -> np.ndarray:
    """Render clips (n, T, 17, 3) with one scene per clip and per-frame crop jitter and pixel
    noise → uint8 (n, T, 64, 64, C)."""
    st = get_style(style)
    n, t = poses.shape[:2]
    scene = draw_scene(n, t, st, rng)
    seed = int(rng.integers(2**63)) if st.noise > 0 else 0
    img = render_scene(poses.reshape(n * t, 17, 3), scene, threads=threads, noise=st.noise, noise_seed=seed,
                       uint8=True)
    return img.reshape(n, t, SIZE, SIZE, st.channels)  # frames are clip-major
