"""Procedural people and cameras for the synthetic visible-infrared dataset, drawn with vectorised numpy.

An identity (:mod:`.synth_people`: body shape, clothing colours and pattern, thermal signature,
near-infrared dye gains, gait) is drawn here. A tracklet is one identity walking past one camera in one modality: the body
is a set of capsules (head, torso, limbs) posed by the gait per frame, composited over the camera's
scrolling background, then lit (RGB: reflectance x light colour; IR: the camera's IR look mapped by
its automatic gain) and degraded (blur, noise, brightness flicker). Two IR looks (``IR_LOOKS``):
``nir`` (active near-infrared illumination, as HITSZ-VCM's and SYSU-MM01's night cameras: no hue,
each garment's brightness its visible luminance times a per-dye gain) and ``thermal`` (RegDB's kind
of camera: relative temperature, unrelated to colour). All frames of a tracklet are drawn at once as
``(T, H, W)`` arrays; each body part only touches its bounding box. (About 440 lines, kept whole: the camera
looks and the compositing share the lighting model and are read together.)
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from cmft.data.datasets.synth_people import RGB3, Identity, Pattern, luminance, make_rng, random_colour

MODALITY_CODE = {"ir": 1, "rgb": 2}
IR_LOOKS = ("nir", "thermal")
Point = tuple[np.ndarray, np.ndarray]  # (x, y) pixel positions, one per frame


# ----------------------------------------------------------------------------------------------
# Cameras
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CameraLook:
    """One camera in one modality: scene panorama (reflectance or relative temperature), light, scale."""

    modality: str
    ir_look: str  # "nir" or "thermal" (IR); "" for RGB
    panorama: np.ndarray  # (H, 4W, C) float32, periodic in x; C = 3 (RGB) or 1 (IR)
    fill: float  # person height / crop height
    light: np.ndarray  # (3,) light colour x brightness (RGB) or (gain, offset) in grey levels (IR)
    columns: np.ndarray  # (W,) fixed-pattern column offsets in grey levels (IR; zeros for RGB)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Value noise in about [-1, 1], bilinear with a smoothstep, periodic in x."""
    gh, gw = max(2, int(math.ceil(h / cell)) + 1), max(2, int(round(w / cell)))
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    ys = np.arange(h, dtype=np.float32) * (gh - 1) / max(h, 1)
    xs = np.arange(w, dtype=np.float32) * gw / w
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = ys - y0, xs - x0
    fy, fx = (fy * fy * (3 - 2 * fy))[:, None], (fx * fx * (3 - 2 * fx))[None, :]
    y1, x1, x0 = np.minimum(y0 + 1, gh - 1), (x0 + 1) % gw, x0 % gw
    top = g[y0][:, x0] * (1 - fx) + g[y0][:, x1] * fx
    bot = g[y1][:, x0] * (1 - fx) + g[y1][:, x1] * fx
    return top * (1 - fy) + bot * fy


@lru_cache(maxsize=64)
def camera_look(seed: int, cam: int, modality: str, height: int, width: int, ir_look: str = "nir") -> CameraLook:
    """The scene of camera ``cam``: its layout is shared by both modes, its look is per modality.

    ``ir_look`` (IR only): ``thermal`` scenes hold relative temperatures, ``nir`` scenes NIR
    reflectances under the camera's own illuminator (brighter gain, low offset).
    """
    if ir_look not in IR_LOOKS:
        raise ValueError(f"unknown IR look {ir_look!r}; choose one of {IR_LOOKS}")
    geo = make_rng(seed, 1, cam)
    h, pw = height, 4 * width
    horizon = int(h * geo.uniform(0.45, 0.7))
    n_struct = int(geo.integers(2, 6))
    structs = [
        (geo.uniform(0, pw), geo.uniform(0.03, 0.2) * width, geo.uniform(0, 0.3) * h, geo.random() < 0.5)
        for _ in range(n_struct)
    ]  # (x, width, top, reaches the floor)

    rng = make_rng(seed, 1, cam, MODALITY_CODE[modality])
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(pw, dtype=np.float32)[None, :]
    floor = yy >= horizon
    tex = 0.6 * _smooth_noise(rng, h, pw, width / 6) + 0.4 * _smooth_noise(rng, h, pw, width / 20)
    if modality == "rgb":
        wall, ground = random_colour(rng), random_colour(rng)
        desat = rng.uniform(0.4, 0.8)
        wall_c = np.array(wall) * (1 - desat) + np.mean(wall) * desat
        ground_c = np.array(ground) * (1 - desat) + np.mean(ground) * desat
        pano = np.where(floor[..., None], ground_c, wall_c).astype(np.float32)
        pano = pano * (1 + rng.uniform(0.05, 0.2) * tex[..., None])
        depth = np.clip((yy - horizon) / max(h - horizon, 1), 0, 1)
        pano = pano * (1 - 0.25 * depth[..., None] * rng.uniform(-1, 1))
        for x, sw, top, full in structs:
            dx = np.minimum(np.abs(xx - x), pw - np.abs(xx - x))
            mask = (dx < sw / 2) & (yy >= top) & ((yy < horizon) | full)
            pano = np.where(mask[..., None], np.array(random_colour(rng), dtype=np.float32) * 0.8, pano)
        light = np.array(colorsys.hsv_to_rgb(rng.uniform(0.05, 0.6), rng.uniform(0.0, 0.15), 1.0))
        light = (light / light.mean() * rng.uniform(0.65, 1.1)).astype(np.float32)
        fill = float(rng.uniform(0.74, 0.88))
        columns = np.zeros(width, np.float32)
    elif ir_look == "thermal":
        pano = np.where(floor, rng.uniform(-0.2, 0.25), rng.uniform(-0.15, 0.3)).astype(np.float32)
        pano = pano + rng.uniform(0.03, 0.1) * tex
        for x, sw, top, full in structs:
            dx = np.minimum(np.abs(xx - x), pw - np.abs(xx - x))
            mask = (dx < sw / 2) & (yy >= top) & ((yy < horizon) | full)
            pano = np.where(mask, rng.uniform(-0.2, 0.7), pano)
        pano = pano[..., None]
        light = np.array([rng.uniform(100, 150), rng.uniform(40, 75)], np.float32)  # gain, offset
        fill = float(rng.uniform(0.7, 0.86))
        columns = (rng.standard_normal(width) * 1.5).astype(np.float32)
    else:  # nir: grey reflectances lit by the camera's illuminator, falling off with distance (upwards)
        pano = np.where(floor, rng.uniform(0.1, 0.5), rng.uniform(0.1, 0.55)).astype(np.float32)
        pano = pano * (1 + rng.uniform(0.05, 0.2) * tex)
        depth = np.clip((yy - horizon) / max(h - horizon, 1), 0, 1)
        pano = pano * (0.75 + 0.25 * depth) if rng.random() < 0.5 else pano
        for x, sw, top, full in structs:
            dx = np.minimum(np.abs(xx - x), pw - np.abs(xx - x))
            mask = (dx < sw / 2) & (yy >= top) & ((yy < horizon) | full)
            pano = np.where(mask, rng.uniform(0.05, 0.8), pano)
        pano = pano[..., None]
        light = np.array([rng.uniform(170, 230), rng.uniform(5, 25)], np.float32)  # gain, offset
        fill = float(rng.uniform(0.7, 0.86))
        columns = (rng.standard_normal(width) * 1.0).astype(np.float32)
    look = ir_look if modality == "ir" else ""
    return CameraLook(modality, look, np.ascontiguousarray(pano, dtype=np.float32), fill, light, columns)


# ----------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------


def _capsule(
    X: np.ndarray, Y: np.ndarray, a: Point, b: Point, r0: float, r1: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Coverage, distance along the axis, signed distance across it, and local radius of a tapered capsule."""
    ax, ay = a[0][:, None, None], a[1][:, None, None]
    dx, dy = b[0][:, None, None] - ax, b[1][:, None, None] - ay
    l2 = dx * dx + dy * dy + 1e-6
    px, py = X - ax, Y - ay
    t = np.clip((px * dx + py * dy) / l2, 0.0, 1.0)
    qx, qy = px - t * dx, py - t * dy
    d = np.sqrt(qx * qx + qy * qy)
    r = r0 + t * (r1 - r0)
    cov = np.clip(r - d + 0.5, 0.0, 1.0)
    length = np.sqrt(l2)
    return cov, t * length, (px * dy - py * dx) / length, r


def _pattern_mask(kind: str, u: np.ndarray, v: np.ndarray, freq: float, phase: float) -> np.ndarray | None:
    """Pattern value in [0, 1] at garment coordinates (u along, v across, in body heights)."""
    if kind == "plain":
        return None
    k = 2 * math.pi * freq
    if kind == "hstripes":
        s = np.sin(k * u + 2 * math.pi * phase)
    elif kind == "vstripes":
        s = np.sin(k * v + 2 * math.pi * phase)
    elif kind == "checks":
        s = np.sin(k * u + 2 * math.pi * phase) * np.sin(k * v + 1.0)
    elif kind == "diagonal":
        s = np.sin(k * (u + v) * 0.7071 + 2 * math.pi * phase)
    else:  # dots
        s = 2.0 * (np.sin(k * u + 2 * math.pi * phase) * np.sin(k * v + 1.0) - 0.45)
    return 0.5 + 0.5 * np.tanh(3.0 * s)


@dataclass(frozen=True)
class _Part:
    a: Point
    b: Point
    r0: float  # radius at a (pixels)
    r1: float  # radius at b
    material: str  # skin, hair, upper, lower, shoes, bag
    far: bool = False  # on the far side of the body (in shadow)


def _blur3(img: np.ndarray, weight: float) -> np.ndarray:
    """Mix of the image and its separable [1, 2, 1] / 4 blur over the H, W axes (1, 2), edges replicated."""
    if weight <= 0:
        return img
    out = img
    for axis in (1, 2):
        src = out
        out = src * 2
        lo = [slice(None)] * img.ndim
        hi = [slice(None)] * img.ndim
        lo[axis], hi[axis] = slice(1, None), slice(None, -1)
        out[tuple(lo)] += src[tuple(hi)]
        out[tuple(hi)] += src[tuple(lo)]
        first, last = [slice(None)] * img.ndim, [slice(None)] * img.ndim
        first[axis], last[axis] = slice(0, 1), slice(-1, None)
        out[tuple(first)] += src[tuple(first)]
        out[tuple(last)] += src[tuple(last)]
    out *= 1 / 16
    if weight < 1:
        out *= weight
        out += img * (1 - weight)
    return out


def _noise(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Zero-mean uniform noise with standard deviation ``std`` (cheaper to draw than Gaussian)."""
    n = rng.random(shape, dtype=np.float32)
    n -= 0.5
    n *= np.float32(std * math.sqrt(12))
    return n


def render_tracklet(
    ident: Identity, look: CameraLook, n_frames: int, rng: np.random.Generator, noise: float = 1.0
) -> np.ndarray:
    """Frames of ``ident`` walking past a camera: uint8 ``(T, H, W)`` (IR) or ``(T, H, W, 3)`` (RGB)."""
    app, gait, sh = ident.appearance, ident.gait, ident.appearance.shape
    ir = look.modality == "ir"
    h, w = look.panorama.shape[0], look.columns.shape[0]
    T = n_frames
    f32 = np.float32

    # --- per-tracklet variation: direction, view, crop placement, scale, phase, camera gain -----------
    direction = 1.0 if rng.random() < 0.5 else -1.0
    yaw = float(rng.uniform(0.6, 1.0))  # cosine of the angle between walking direction and image plane
    lat = math.sqrt(1 - yaw * yaw)
    foot_y = h * (1 - rng.uniform(0.02, 0.08))
    P0 = min(h * look.fill * (0.94 + 0.06 * sh.height) * rng.uniform(0.94, 1.06), 0.97 * foot_y)
    cx0 = w / 2 + float(np.clip(rng.normal(0, 0.07 * w), -0.15 * w, 0.15 * w))
    freq = gait.frequency * rng.uniform(0.95, 1.05)
    amp = rng.uniform(0.93, 1.07, 4)
    phi = rng.uniform(0, 2 * math.pi) + 2 * math.pi * freq * np.arange(T)
    P = (P0 * (1 + rng.normal(0, 0.01, T))).astype(f32)  # detector box jitter: scale ...
    cx = (cx0 + rng.normal(0, 0.6, T)).astype(f32)  # ... and position
    fy = (foot_y + rng.normal(0, 0.5, T)).astype(f32)

    # --- skeleton in body units (x forward, y up, feet at 0) ----------------------------------------
    stride, knee, arm = gait.stride * amp[0], gait.knee * amp[1], gait.arm * amp[2]
    foot_h = 0.025
    leg = sh.legs - foot_h
    thigh = shin = leg / 2
    shoulder_h = 1 - 2 * sh.head - 0.03
    torso_len = shoulder_h - sh.legs
    upper_arm, fore_arm = 0.165, 0.155

    def leg_joints(psi: np.ndarray) -> tuple[np.ndarray, ...]:
        th = stride * np.sin(psi)
        flex = knee * np.clip(np.cos(psi), 0, 1) ** 1.5 + 0.05
        kx, ky = thigh * np.sin(th), -thigh * np.cos(th)
        ax, ay = kx + shin * np.sin(th - flex), ky - shin * np.cos(th - flex)
        tx, ty = ax + 0.07 * np.cos(th - flex), ay + 0.07 * np.sin(th - flex)
        return kx, ky, ax, ay, tx, ty

    near_leg, far_leg = leg_joints(phi), leg_joints(phi + math.pi)
    hip_y = foot_h - np.minimum(near_leg[3], far_leg[3]) + gait.bounce * amp[3] * np.cos(2 * phi)
    lean = sh.lean
    sx, sy = torso_len * math.sin(lean), hip_y + torso_len * math.cos(lean)

    def arm_joints(psi: np.ndarray) -> tuple[np.ndarray, ...]:
        al = -arm * np.sin(psi)
        ef = 0.15 + 0.6 * np.clip(al, 0, None)
        ex, ey = sx + upper_arm * np.sin(al), sy - upper_arm * np.cos(al)
        return ex, ey, ex + fore_arm * np.sin(al + ef), ey - fore_arm * np.cos(al + ef)

    near_arm, far_arm = arm_joints(phi), arm_joints(phi + math.pi)
    head_x = sx + (0.03 + sh.head) * math.sin(lean) + 0.012
    head_y = sy + 0.03 + sh.head

    def px(x: np.ndarray | float, lateral: float = 0.0) -> np.ndarray:
        """Body x (forward) -> pixel column: the forward axis is foreshortened by the view and mirrored."""
        return cx + direction * (yaw * np.asarray(x, f32) + lat * lateral) * P

    def py(y: np.ndarray | float) -> np.ndarray:
        return fy - np.asarray(y, f32) * P

    Pm = float(P0)
    b = sh.build
    zero = np.zeros(T, f32)
    hip_w, sh_w = 0.6 * sh.shoulders, sh.shoulders
    r_hip = Pm * math.hypot(yaw * 0.06 * b, lat * hip_w)
    r_chest = Pm * math.hypot(yaw * 0.07 * b, lat * sh_w)
    hip = (px(zero), py(hip_y))
    shoulder = (px(zero + sx), py(sy))
    parts: list[_Part] = []

    def limb_parts(joints: tuple[np.ndarray, ...], side: float, far: bool) -> list[_Part]:
        kx, ky, ax, ay, tx, ty = joints
        knee_p = (px(kx, side * hip_w), py(hip_y + ky))
        ankle = (px(ax, side * hip_w), py(hip_y + ay))
        toe = (px(tx, side * hip_w), py(hip_y + ty))
        top = (px(zero, side * hip_w), hip[1])
        shin_m = "skin" if sh.legwear == "shorts" else "lower"
        return [
            _Part(top, knee_p, Pm * 0.05 * b, Pm * 0.038 * b, "lower", far),
            _Part(knee_p, ankle, Pm * 0.036 * b, Pm * 0.028 * b, shin_m, far),
            _Part(ankle, toe, Pm * 0.024, Pm * 0.02, "shoes", far),
        ]

    def arm_parts(joints: tuple[np.ndarray, ...], side: float, far: bool) -> list[_Part]:
        ex, ey, wx, wy = joints
        top = (px(zero + sx, side * sh_w), shoulder[1])
        elbow = (px(ex, side * sh_w), py(ey))
        wrist = (px(wx, side * sh_w), py(wy))
        fore_m = "skin" if sh.sleeves == "short" else "upper"
        return [
            _Part(top, elbow, Pm * 0.034 * b, Pm * 0.029 * b, "upper", far),
            _Part(elbow, wrist, Pm * 0.027 * b, Pm * 0.022 * b, fore_m, far),
            _Part(wrist, wrist, Pm * 0.024, Pm * 0.024, "skin", far),
        ]

    parts += arm_parts(far_arm, -1.0, True)
    parts += limb_parts(far_leg, -1.0, True)
    parts += limb_parts(near_leg, 1.0, False)
    if sh.bag:
        back = -(0.07 * b + 0.03)
        parts.append(
            _Part(
                (px(zero + sx * 0.85 + back), py(hip_y + torso_len * 0.85)),
                (px(zero + sx * 0.35 + back), py(hip_y + torso_len * 0.35)),
                Pm * 0.055, Pm * 0.06, "bag",
            )
        )
    waist = (px(zero + sx * 0.12), py(hip_y + torso_len * 0.12))
    parts.append(_Part(hip, waist, r_hip, r_hip, "lower"))
    chest_base = (px(zero + sx * 0.08), py(hip_y + torso_len * 0.08))
    parts.append(_Part(chest_base, shoulder, r_chest * 0.95, r_chest, "upper"))
    head_c = (px(zero + head_x), py(zero + head_y))
    parts.append(_Part(shoulder, head_c, Pm * 0.024, Pm * 0.024, "skin"))
    parts.append(_Part(head_c, head_c, Pm * sh.head, Pm * sh.head, "skin"))
    if sh.hair != "bald":
        hr = sh.head * (0.85 if sh.hair == "short" else 0.92)
        hc = (px(zero + head_x - 0.35 * sh.head), py(zero + head_y + 0.3 * sh.head))
        parts.append(_Part(hc, hc, Pm * hr, Pm * hr, "hair"))
        if sh.hair == "long":
            nape = (px(zero + head_x - 0.55 * sh.head), py(zero + sy + 0.01))
            parts.append(_Part(hc, nape, Pm * hr * 0.85, Pm * hr * 0.65, "hair"))
    parts += arm_parts(near_arm, 1.0, False)

    # --- materials: reflectance (RGB) or relative temperature (IR) ------------------------------------
    th_, col, nir = app.thermal, app.colours, app.nir
    patterns = {"upper": app.upper, "lower": app.lower}
    if ir and look.ir_look == "nir":

        def grey(c: RGB3, dye: tuple[float, float]) -> np.ndarray:
            return np.array([np.clip(luminance(c) * dye[0] + dye[1], 0.02, 0.98)], f32)

        values = {
            "skin": (np.array([nir.skin], f32), None),
            "hair": (np.array([nir.hair], f32), None),
            "upper": (grey(col.upper, nir.upper), grey(col.upper_pattern, nir.upper_pattern)),
            "lower": (grey(col.lower, nir.lower), grey(col.lower_pattern, nir.lower_pattern)),
            "shoes": (grey(col.shoes, nir.shoes), None),
            "bag": (grey(col.bag, nir.bag), None),
        }
    elif ir:
        skin_t = th_.skin
        base = {
            "skin": skin_t,
            "hair": skin_t * (1 - th_.hair),
            "upper": skin_t * (1 - th_.upper),
            "lower": skin_t * (1 - th_.lower),
            "shoes": th_.shoes,
            "bag": th_.bag,
        }
        values = {k: (np.array([v], f32), None) for k, v in base.items()}
        for k in ("upper", "lower"):
            c = np.array([base[k]], f32)
            values[k] = (c - th_.pattern / 2, c + th_.pattern / 2)
    else:
        values = {
            "skin": (np.array(col.skin, f32), None),
            "hair": (np.array(col.hair, f32), None),
            "upper": (np.array(col.upper, f32), np.array(col.upper_pattern, f32)),
            "lower": (np.array(col.lower, f32), np.array(col.lower_pattern, f32)),
            "shoes": (np.array(col.shoes, f32), None),
            "bag": (np.array(col.bag, f32), None),
        }

    # --- background: the camera's panorama, scrolling as the crop follows the person ------------------
    pw = look.panorama.shape[1]
    speed = freq * 4 * thigh * math.sin(stride) * yaw * P0  # pixels per frame
    x0 = rng.uniform(0, pw) + direction * speed * np.arange(T)
    starts = np.floor(x0).astype(np.int64) % pw
    wrapped = np.concatenate([look.panorama, look.panorama[:, :w]], axis=1)
    canvas = np.stack([wrapped[:, s : s + w] for s in starts])  # (T, H, W, C)
    canvas *= f32(rng.uniform(0.9, 1.1)) if not ir else f32(1.0)

    X = np.arange(w, dtype=f32)[None, None, :]
    Y = np.arange(h, dtype=f32)[None, :, None]
    if not ir:  # contact shadow under the feet
        y_lo, y_hi = max(int(fy.min() - 0.1 * Pm), 0), min(int(fy.max() + 0.1 * Pm) + 1, h)
        sy_ = (Y[:, y_lo:y_hi] - fy[:, None, None]) / (0.03 * Pm)
        sx_ = (X - cx[:, None, None]) / (0.2 * Pm)
        canvas[:, y_lo:y_hi] *= (1 - 0.35 * np.exp(-(sx_ * sx_ + sy_ * sy_)))[..., None]

    for part in parts:
        pad = max(part.r0, part.r1) + 1.5
        xs = np.concatenate([part.a[0], part.b[0]])
        ys = np.concatenate([part.a[1], part.b[1]])
        x_lo, x_hi = max(int(xs.min() - pad), 0), min(int(xs.max() + pad) + 1, w)
        y_lo, y_hi = max(int(ys.min() - pad), 0), min(int(ys.max() + pad) + 1, h)
        if x_lo >= x_hi or y_lo >= y_hi:
            continue
        cov, along, across, r = _capsule(X[:, :, x_lo:x_hi], Y[:, y_lo:y_hi], part.a, part.b, part.r0, part.r1)
        q = np.clip(across / r, -1, 1)
        if ir:
            shade = (1 - 0.12 * q * q) * (0.95 if part.far else 1.0)
        else:
            shade = (1 - 0.3 * q * q + 0.08 * q * direction) * (0.75 if part.far else 1.0)
        c1, c2 = values[part.material]
        pat = patterns.get(part.material)
        m = None if pat is None else _pattern_mask(pat.kind, along / Pm, across / Pm, pat.frequency, pat.phase)
        if m is None or c2 is None:
            val = shade[..., None] * c1
        else:
            val = shade[..., None] * (c1 + m[..., None] * (c2 - c1))
        region = canvas[:, y_lo:y_hi, x_lo:x_hi]
        cov = cov[..., None]
        val -= region
        val *= cov
        region += val

    # --- sensor: light / gain, flicker, blur, noise ---------------------------------------------------
    if ir:
        gain = look.light[0] * rng.uniform(0.85, 1.15) * (1 + rng.normal(0, 0.03 * noise, T))
        offset = look.light[1] + rng.normal(0, 8)
        img = canvas[..., 0] * gain[:, None, None].astype(f32) + f32(offset)
        img = _blur3(_blur3(img, min(1.0, noise)), min(1.0, 0.7 * noise))
        img += look.columns[None, None, :] * f32(noise) + _noise(rng, img.shape, 5.0 * noise)
    else:
        wb = rng.uniform(0.92, 1.08, 3)
        gain = rng.uniform(0.85, 1.15) * (1 + rng.normal(0, 0.02 * noise, T))
        light = (look.light * wb).astype(f32) * 255
        canvas *= light
        canvas *= gain[:, None, None, None].astype(f32)
        img = _blur3(canvas, min(1.0, 0.5 * noise))
        img += _noise(rng, img.shape, 3.0 * noise)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
