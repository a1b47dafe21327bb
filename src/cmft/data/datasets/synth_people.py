"""The people of the synthetic visible-infrared dataset: body shape, clothing colours and patterns, thermal
and near-infrared signatures, and gait, each drawn from a named random stream (:func:`make_rng`).

An identity is what stays the same across cameras and modalities; :mod:`.synth_render` draws it.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

PATTERNS = ("plain", "hstripes", "vstripes", "checks", "diagonal", "dots")
_UPPER_PATTERN_P = (0.35, 0.2, 0.1, 0.15, 0.1, 0.1)
_LOWER_PATTERN_P = (0.65, 0.05, 0.1, 0.1, 0.05, 0.05)

RGB3 = tuple[float, float, float]


def make_rng(seed: int, *key: int) -> np.random.Generator:
    """A generator for one named stream of the dataset: the same (seed, key) always gives the same draws."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


# ----------------------------------------------------------------------------------------------
# Identity parameters
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """Body shape and garment cut (seen in both modalities). Lengths are fractions of body height."""

    height: float  # relative stature (1 = average); the detector crop hides most of it
    build: float  # thickness of torso and limbs (1 = average)
    head: float  # head radius
    legs: float  # hip height
    shoulders: float  # frontal half-width of the shoulders
    lean: float  # forward lean of the torso (radians)
    sleeves: str  # "short" (bare forearms) or "long"
    legwear: str  # "shorts" (bare shins) or "trousers"
    hair: str  # "short", "long" or "bald"
    bag: bool  # carries a backpack


@dataclass(frozen=True)
class Pattern:
    """A garment's texture: colour pattern in RGB, thermal texture in IR (same geometry)."""

    kind: str  # one of PATTERNS
    frequency: float  # cycles per body height
    phase: float  # offset of the pattern (cycles)


@dataclass(frozen=True)
class Colours:
    """Reflectances in [0, 1] (RGB only; the IR camera does not see them)."""

    skin: RGB3
    hair: RGB3
    upper: RGB3
    upper_pattern: RGB3  # the pattern's second colour
    lower: RGB3
    lower_pattern: RGB3
    shoes: RGB3
    bag: RGB3


@dataclass(frozen=True)
class Thermal:
    """What the IR camera sees: temperature above ambient relative to warm skin (1 = skin, 0 = ambient)."""

    skin: float  # bare skin (face, hands, bare forearms / shins)
    hair: float  # insulation of the hair (fraction of the skin-to-ambient gap it removes)
    upper: float  # insulation of the upper garment
    lower: float  # insulation of the lower garment
    pattern: float  # thermal contrast of the garment patterns (weave, layers)
    shoes: float  # temperature of the shoes
    bag: float  # temperature of the backpack


@dataclass(frozen=True)
class NearInfrared:
    """What a near-infrared camera sees besides luminance: per-dye reflectance gains and offsets.

    A garment colour ``c`` shows with brightness ``luminance(c) * gain + offset`` (dyes reflect NIR
    differently from visible light, so the match is partial); skin and hair are brighter than in
    the visible (skin reflects NIR strongly, dark skin only a little less than light skin; dark hair
    turns grey).
    """

    upper: tuple[float, float]  # (gain, offset) of the upper garment's base colour
    upper_pattern: tuple[float, float]
    lower: tuple[float, float]
    lower_pattern: tuple[float, float]
    shoes: tuple[float, float]
    bag: tuple[float, float]
    skin: float  # NIR reflectance of the skin
    hair: float  # NIR reflectance of the hair


@dataclass(frozen=True)
class Appearance:
    """Everything a single frame can show about a person (look-alike pairs share it exactly)."""

    shape: Shape
    upper: Pattern
    lower: Pattern
    colours: Colours
    thermal: Thermal
    nir: NearInfrared


@dataclass(frozen=True)
class Gait:
    """How the person walks (both modalities)."""

    frequency: float  # gait cycles per frame (frames are sampled at about 5 fps, as HITSZ-VCM)
    stride: float  # thigh swing amplitude (radians)
    knee: float  # knee flex during the swing (radians)
    arm: float  # arm swing amplitude (radians)
    bounce: float  # extra vertical bob (fraction of body height)


@dataclass(frozen=True)
class Identity:
    """One synthetic person: id, split, look-alike partner (or None), look and gait."""

    pid: int
    split: str
    partner: int | None
    appearance: Appearance
    gait: Gait


def random_colour(rng: np.random.Generator) -> RGB3:
    """A clothing colour: about a third near-neutral (black, grey, white), the rest any hue."""
    if rng.random() < 0.35:
        v = rng.uniform(0.06, 0.9)
        c = v * (1 + rng.normal(0, 0.04, 3))
    else:
        c = np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.25, 0.9), rng.uniform(0.15, 0.9)))
    return tuple(float(x) for x in np.clip(c, 0.02, 0.98))  # type: ignore[return-value]


def _second_colour(rng: np.random.Generator, base: RGB3) -> RGB3:
    """The pattern colour: a lighter or darker shade of the base, or an unrelated colour."""
    if rng.random() < 0.5:
        b = np.array(base)
        c = b * 0.35 if b.mean() > 0.45 else b + (1 - b) * 0.6
        return tuple(float(x) for x in np.clip(c, 0.02, 0.98))  # type: ignore[return-value]
    return random_colour(rng)


def luminance(c: RGB3) -> float:
    """Rec. 601 luma of a reflectance triple: what a monochrome sensor sees of a colour."""
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _pattern(rng: np.random.Generator, probs: tuple[float, ...]) -> Pattern:
    kind = PATTERNS[int(rng.choice(len(PATTERNS), p=probs))]
    return Pattern(kind, float(rng.uniform(6.0, 16.0)), float(rng.random()))


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Draw a look; shape, pattern, colours and thermal signature are independent of each other."""
    u = rng.uniform
    shape = Shape(
        height=float(u(0.88, 1.12)),
        build=float(u(0.8, 1.3)),
        head=float(u(0.055, 0.072)),
        legs=float(u(0.45, 0.53)),
        shoulders=float(u(0.09, 0.13)),
        lean=float(u(-0.02, 0.12)),
        sleeves="short" if rng.random() < 0.4 else "long",
        legwear="shorts" if rng.random() < 0.25 else "trousers",
        hair=str(rng.choice(["short", "long", "bald"], p=[0.6, 0.3, 0.1])),
        bag=bool(rng.random() < 0.3),
    )
    upper, lower = _pattern(rng, _UPPER_PATTERN_P), _pattern(rng, _LOWER_PATTERN_P)
    tone = u(0.0, 1.0)
    skin = np.array([0.95, 0.78, 0.66]) * (1 - tone) + np.array([0.36, 0.23, 0.16]) * tone
    hair_anchor = [(0.05, 0.04, 0.03), (0.25, 0.15, 0.08), (0.7, 0.55, 0.3), (0.6, 0.6, 0.6)][
        int(rng.choice(4, p=[0.45, 0.3, 0.15, 0.1]))
    ]
    c_upper, c_lower = random_colour(rng), random_colour(rng)
    colours = Colours(
        skin=tuple(float(x) for x in np.clip(skin * (1 + rng.normal(0, 0.03, 3)), 0, 1)),  # type: ignore[arg-type]
        hair=tuple(float(x) for x in np.clip(np.array(hair_anchor) * u(0.8, 1.2), 0, 1)),  # type: ignore[arg-type]
        upper=c_upper,
        upper_pattern=_second_colour(rng, c_upper),
        lower=c_lower,
        lower_pattern=_second_colour(rng, c_lower),
        shoes=random_colour(rng),
        bag=random_colour(rng),
    )
    thermal = Thermal(
        skin=float(u(0.85, 1.0)),
        hair=float(u(0.45, 0.8)),
        upper=float(u(0.15, 0.75)),
        lower=float(u(0.2, 0.75)),
        pattern=float(u(0.08, 0.25)),
        shoes=float(u(0.05, 0.3)),
        bag=float(u(-0.05, 0.15)),
    )
    # drawn after everything else, so the thermal look of a seed is what it was before NIR existed
    dye = {k: (float(u(0.6, 1.4)), float(rng.normal(0.0, 0.03))) for k in ("upper", "upper_pattern", "lower", "lower_pattern", "shoes", "bag")}
    nir = NearInfrared(
        **dye,
        skin=float(np.clip(0.3 + 0.55 * luminance(colours.skin) + rng.normal(0, 0.03), 0.2, 0.95)),
        hair=float(np.clip(0.12 + 1.3 * luminance(colours.hair) + rng.normal(0, 0.03), 0.05, 0.95)),
    )
    return Appearance(shape, upper, lower, colours, thermal, nir)


def _draw_gait(rng: np.random.Generator) -> Gait:
    u = rng.uniform
    return Gait(
        frequency=float(u(0.09, 0.2)),
        stride=float(u(0.25, 0.55)),
        knee=float(u(0.35, 0.9)),
        arm=float(u(0.08, 0.7)),
        bounce=float(u(0.0, 0.02)),
    )


def sample_gait(rng: np.random.Generator, unlike: Gait | None = None) -> Gait:
    """Draw a gait; with ``unlike``, redraw until it clearly differs (a look-alike's partner)."""
    for _ in range(1000):
        g = _draw_gait(rng)
        if unlike is None or (
            abs(g.frequency - unlike.frequency) >= 0.03
            and abs(g.arm - unlike.arm) >= 0.2
            and abs(g.stride - unlike.stride) >= 0.08
        ):
            return g
    raise RuntimeError("could not draw a distinct gait")  # pragma: no cover - probability ~0


