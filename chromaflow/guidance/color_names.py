"""Basic colour names (Berlin and Kay's eleven terms) for Lab colours.

Used to write training captions ("a photo of a goldfish, mostly orange and
blue") and to describe palettes to users.  The rule is simple and
deterministic: low chroma gives black, gray or white by lightness; otherwise
the hue angle picks the name, with dark oranges and yellows called brown and
light reds and purples called pink.
"""

from __future__ import annotations

import numpy as np

BASIC_COLOR_NAMES = ("black", "gray", "white", "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")


def basic_color_name(lab: np.ndarray) -> str:
    """Name of one Lab colour.

    Args:
        lab: ``(3,)`` Lab (L in [0, 100], ab in about [-128, 127]).

    Returns:
        One of :data:`BASIC_COLOR_NAMES`.
    """
    lightness, a, b = (float(v) for v in np.asarray(lab, np.float64).reshape(3))
    chroma = float(np.hypot(a, b))
    if chroma < 12.0 or (lightness < 22.0 and chroma < 20.0):
        if lightness < 30.0:
            return "black"
        return "white" if lightness > 82.0 else "gray"
    hue = float(np.degrees(np.arctan2(b, a))) % 360.0
    if hue < 20.0 or hue >= 345.0:
        return "pink" if lightness > 70.0 else "red"
    if hue < 40.0:
        return "pink" if lightness > 75.0 and chroma < 40.0 else ("red" if chroma > 45.0 else "brown")
    if hue < 78.0:
        return "brown" if lightness < 55.0 else "orange"
    if hue < 105.0:
        return "brown" if lightness < 50.0 else "yellow"
    if hue < 200.0:
        return "green"
    if hue < 318.0:
        return "blue"
    if hue < 340.0:
        return "pink" if lightness > 65.0 else "purple"
    return "pink" if lightness > 60.0 else "red"
