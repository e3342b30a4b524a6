"""Parsing text prompts into (colour, object) pairs and a global style.

``"a light blue car on a grey road under a #87ceeb sky, vintage look"`` gives
``(light blue, car)``, ``(grey, road)``, ``(#87ceeb, sky)`` and the style
``vintage``.  The colour vocabulary is the 148 CSS colour names (from Pillow)
plus the common names painters, costume and film people use (over 250 names
in all), with modifiers (light, dark, pale, deep, bright, ...) that move a
colour in Lab, and hex codes.  Objects are the words that follow a colour, up
to a preposition or conjunction.  Words that look like colours but are not
known (``"vermillionish"``, ``"foo-colored"``, a bad hex code) are reported,
never silently dropped; so are objects given two different colours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from PIL import ImageColor

from chromaflow.errors import InputError

#: Names beyond CSS, with sRGB hex values.
EXTRA_COLORS: dict[str, str] = {
    "amber": "#ffbf00", "apricot": "#fbceb1", "ash": "#b2beb5", "auburn": "#a52a2a", "avocado": "#568203",
    "baby blue": "#89cff0", "blond": "#faf0be", "blonde": "#faf0be", "blush": "#de5d83", "bone": "#e3dac9",
    "bottle green": "#006a4e", "brass": "#b5a642", "brick": "#cb4154", "brick red": "#cb4154", "bronze": "#cd7f32",
    "burgundy": "#800020", "butter": "#fff1a1", "camel": "#c19a6b", "canary": "#ffef00", "caramel": "#c68e17",
    "carmine": "#960018", "celadon": "#ace1af", "cerise": "#de3163", "cerulean": "#007ba7", "champagne": "#f7e7ce",
    "charcoal": "#36454f", "cherry": "#de3163", "cinnamon": "#d2691e", "claret": "#7f1734", "cobalt": "#0047ab",
    "cognac": "#9a463d", "copper": "#b87333", "cream": "#fffdd0", "denim": "#1560bd", "ebony": "#555d50",
    "ecru": "#c2b280", "eggplant": "#614051", "eggshell": "#f0ead6", "emerald": "#50c878", "fawn": "#e5aa70",
    "flax": "#eedc82", "forest green": "#228b22", "fern": "#4f7942", "garnet": "#733635", "graphite": "#383838",
    "grass green": "#3f9b0b", "hazel": "#8e7618", "honey": "#eba937", "ice": "#d6fffa", "jade": "#00a86b",
    "jet": "#343434", "kelly green": "#4cbb17", "lemon": "#fff700", "lilac": "#c8a2c8", "mahogany": "#c04000",
    "malachite": "#0bda51", "mauve": "#e0b0ff", "midnight blue": "#191970", "mint": "#98ff98", "moss": "#8a9a5b",
    "mustard": "#ffdb58", "navy blue": "#000080", "nude": "#e3bc9a", "ochre": "#cc7722", "olive green": "#6b8e23",
    "oxblood": "#4a0000", "pearl": "#eae0c8", "petrol": "#005f6a", "pewter": "#96a8a1", "pine": "#01796f",
    "pistachio": "#93c572", "platinum": "#e5e4e2", "raspberry": "#e30b5c", "rose": "#ff007f", "ruby": "#e0115f",
    "rust": "#b7410e", "saffron": "#f4c430", "sage": "#bcb88a", "sand": "#c2b280", "sapphire": "#0f52ba",
    "scarlet": "#ff2400", "sepia": "#704214", "shamrock": "#009e60", "sky": "#87ceeb", "slate": "#708090",
    "straw": "#e4d96f", "taupe": "#483c32", "terracotta": "#e2725b", "topaz": "#ffc87c", "umber": "#635147",
    "vermilion": "#e34234", "vermillion": "#e34234", "wine": "#722f37", "burnt orange": "#cc5500",
    "burnt sienna": "#e97451", "raw umber": "#826644", "sea green": "#2e8b57", "royal blue": "#4169e1",
    "powder blue": "#b0e0e6", "army green": "#4b5320", "olive drab": "#6b8e23", "off white": "#faf9f6",
    "grey": "#808080", "gray": "#808080", "blue grey": "#6699cc", "steel blue": "#4682b4", "brick brown": "#8b4513",
    "dirt": "#9b7653", "mud": "#70543e", "skin": "#e0ac69", "flesh": "#e0ac69", "tanned": "#d2b48c",
    "golden": "#e6be44", "silvery": "#c4c4c4", "coppery": "#b87333", "rosy": "#f4c2c2",
    "asphalt": "#4f4f4f", "concrete": "#a9a9a9", "chestnut": "#954535", "walnut": "#773f1a", "oak": "#b08d57",
}

#: Modifiers and how they move a colour: (delta L, chroma factor).
MODIFIERS: dict[str, tuple[float, float]] = {
    "light": (15.0, 0.8), "pale": (20.0, 0.55), "dark": (-20.0, 0.9), "deep": (-12.0, 1.2),
    "bright": (8.0, 1.3), "vivid": (0.0, 1.35), "muted": (0.0, 0.6), "dull": (-4.0, 0.55),
    "pastel": (18.0, 0.5), "dusty": (-2.0, 0.6), "faded": (8.0, 0.5), "rich": (-6.0, 1.2),
}

#: Words that describe the whole picture rather than an object.
STYLE_WORDS = frozenset(
    {"vintage", "sepia", "warm", "cool", "cold", "vivid", "muted", "pastel", "technicolor", "autumn", "autumnal",
     "summer", "winter", "spring", "sunset", "dusk", "night", "noir", "faded", "saturated", "desaturated",
     "cinematic", "natural", "kodachrome", "film"}
)

_STOP = frozenset(
    {"a", "an", "the", "on", "in", "under", "over", "with", "and", "or", "of", "at", "by", "near", "beside",
     "behind", "above", "below", "across", "along", "into", "onto", "from", "to", "is", "are", "wearing",
     "holding", "while", "look", "looking", "style", "tones", "tone", "colors", "colours", "its", "his", "her",
     "their"}
)
_WORD = re.compile(r"#[0-9a-zA-Z]+|[a-zA-Z]+(?:-[a-zA-Z]+)*|[,.;:!?]")
_PUNCT = frozenset(",.;:!?")
_HEX = re.compile(r"^#([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")


def _vocabulary() -> dict[str, str]:
    vocab = dict(ImageColor.colormap)  # CSS names, e.g. "skyblue"
    vocab.update(EXTRA_COLORS)
    return vocab


VOCABULARY: dict[str, str] = _vocabulary()
_MULTI = sorted((name.split() for name in VOCABULARY if " " in name), key=len, reverse=True)


@dataclass(frozen=True)
class ColorPhrase:
    """A colour the prompt names, and the object it is for.

    Attributes:
        name: the colour as written (modifiers included), e.g. ``"light blue"``.
        rgb: ``(3,)`` ``uint8`` sRGB.
        object: the object words, e.g. ``"car"``; ``None`` if no object follows.
        before: the words between the previous phrase (or punctuation) and the
            colour, e.g. ``("a", "girl", "in", "a")`` for "a girl in a blue
            dress": whose object it is ("girl", one person) and where ("on
            the left") for grounders that use instances.
        after: the words after the object up to the next punctuation or "and"
            when no other colour comes first (``("on", "the", "right")`` for
            "the red car on the right and ...").
    """

    name: str
    rgb: np.ndarray
    object: str | None
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedPrompt:
    """What a prompt says.

    Attributes:
        phrases: (colour, object) pairs in order.
        style: global style words.
        unknown_colors: words that look like colours but are not known.
        conflicts: objects given several different colours, with those colours.
    """

    text: str
    phrases: tuple[ColorPhrase, ...]
    style: tuple[str, ...] = ()
    unknown_colors: tuple[str, ...] = ()
    conflicts: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def objects(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p.object for p in self.phrases if p.object))


def color_of(name: str) -> np.ndarray | None:
    """sRGB of a known colour name (``"sky blue"``, ``"skyblue"``, ``"#87ceeb"``), or ``None``."""
    name = name.strip().lower()
    if _HEX.match(name):
        d = name[1:]
        d = "".join(c * 2 for c in d) if len(d) == 3 else d
        return np.array([int(d[i : i + 2], 16) for i in (0, 2, 4)], np.uint8)
    for key in (name, name.replace(" ", ""), name.replace("-", " "), name.replace("-", "")):
        if key in VOCABULARY:
            return color_of(VOCABULARY[key])
    return None


def apply_modifiers(rgb: np.ndarray, modifiers: list[str]) -> np.ndarray:
    """Move a colour in Lab by each modifier (lightness shift, chroma factor); ``(3,)`` ``uint8``."""
    lab = cv2.cvtColor(rgb.reshape(1, 1, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab).reshape(3)
    for m in modifiers:
        dl, k = MODIFIERS[m]
        lab[0] = np.clip(lab[0] + dl, 5.0, 97.0)
        lab[1:] *= k
    out = cv2.cvtColor(lab.reshape(1, 1, 3).astype(np.float32), cv2.COLOR_Lab2RGB).reshape(3)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def parse_prompt(text: str) -> ParsedPrompt:
    """Parse a prompt.

    Raises:
        InputError: the prompt is empty.
    """
    if text is None or not text.strip():
        raise InputError("empty prompt")
    words = [w.lower() for w in _WORD.findall(text)]
    phrases: list[ColorPhrase] = []
    style: list[str] = []
    unknown: list[str] = []
    i = 0
    context: list[str] = []  # words since the last phrase or punctuation
    open_clause = False  # a phrase was found since the last punctuation
    while i < len(words):
        mods: list[str] = []
        j = i
        while j < len(words) and words[j] in MODIFIERS:
            mods.append(words[j])
            j += 1
        name, rgb, j2 = _match_color(words, j)
        if rgb is None:
            w = words[i]
            if w.startswith("#"):
                unknown.append(w)
            elif (w.endswith("-colored") or w.endswith("-coloured")) or (w.endswith("ish") and len(w) > 5):
                unknown.append(w)
            elif w in STYLE_WORDS:
                style.append(w)
            if w in _PUNCT or (w == "and" and open_clause):
                # the words up to punctuation or "and" follow the last phrase's object
                if phrases and context and open_clause:
                    phrases[-1] = replace(phrases[-1], after=tuple(context))
                context, open_clause = (["and"] if w == "and" else []), False
            else:
                context.append(w)
            i += 1
            continue
        if not mods and name in STYLE_WORDS and j2 < len(words) and words[j2] in {"look", "tones", "tone", "style"}:
            style.append(name)  # "sepia look": a style, not a colour for an object
            i = j2 + 1
            context = []
            continue
        rgb = _modified(rgb, name, mods)
        k = j2
        obj_words: list[str] = []
        while k < len(words):
            w = words[k]
            if w in _STOP or w in _PUNCT or w in MODIFIERS or w in STYLE_WORDS:
                break
            if color_of(w) is not None:
                # A colour word right after a colour is the object when a phrase ends
                # there ("a blue sky", "golden sand."); otherwise it is the next colour.
                ends = k + 1 >= len(words) or words[k + 1] in _STOP or words[k + 1] in _PUNCT
                if obj_words or not ends:
                    break
            obj_words.append(w)
            k += 1
        obj = " ".join(obj_words) if obj_words else None
        phrases.append(ColorPhrase(" ".join([*mods, name]), rgb, obj, tuple(context)))
        i = k
        context, open_clause = [], True
    if phrases and context and open_clause:
        phrases[-1] = replace(phrases[-1], after=tuple(context))
    by_object: dict[str, list[str]] = {}
    for p in phrases:
        if p.object:
            by_object.setdefault(p.object, [])
            if p.name not in by_object[p.object]:
                by_object[p.object].append(p.name)
    conflicts = {o: tuple(c) for o, c in by_object.items() if len(c) > 1}
    return ParsedPrompt(text, tuple(phrases), tuple(dict.fromkeys(style)), tuple(unknown), conflicts)


def prompt_problems(prompt: ParsedPrompt) -> list[str]:
    """What a user should hear about a parsed prompt, one message each (empty: none).

    Unknown colour words, objects given contradictory colours (the first is
    used), and a prompt naming no colour (it then steers the model only
    through its text embedding).
    """
    out = []
    if prompt.unknown_colors:
        out.append(f"unknown colour words in the prompt, ignored: {', '.join(prompt.unknown_colors)}")
    for obj, names in prompt.conflicts.items():
        out.append(f"'{obj}' is given several colours ({', '.join(names)}); using {names[0]}")
    if not prompt.phrases:
        out.append("the prompt names no known colour: it only steers the model through its text embedding")
    elif not prompt.objects:
        out.append("the prompt's colours name no object: they steer the model through its text embedding only")
    return out


def _modified(rgb: np.ndarray, name: str, mods: list[str]) -> np.ndarray:
    """``rgb`` (the colour ``name``) under the modifiers before it; ``"light blue"`` is CSS lightblue, not blue
    moved in Lab."""
    compound = "".join([*mods[-1:], name.replace(" ", "")])
    if mods and compound in VOCABULARY:
        rgb = color_of(compound)
        return apply_modifiers(rgb, mods[:-1]) if len(mods) > 1 else rgb
    return apply_modifiers(rgb, mods) if mods else rgb


def parse_color_list(text: str) -> list[tuple[str, np.ndarray | None]]:
    """The colours of a list such as ``"rust, navy blue, #c9b48f"`` or ``"rust navy sand"``.

    Names, modifiers and hex codes as in prompts (:data:`VOCABULARY`); commas or
    spaces separate the colours, multi-word names (``"sky blue"``) are matched
    whole.  Returns ``(as written, (3,) uint8 sRGB)`` per colour, with ``None``
    for a word that is no colour.
    """
    words = [w.lower() for w in _WORD.findall(text)]
    out: list[tuple[str, np.ndarray | None]] = []
    i = 0
    while i < len(words):
        if words[i] in _PUNCT:
            i += 1
            continue
        mods: list[str] = []
        while i < len(words) and words[i] in MODIFIERS and i + 1 < len(words) and words[i + 1] not in _PUNCT:
            mods.append(words[i])
            i += 1
        name, rgb, i = _match_color(words, i)
        if name.startswith("#") and not _HEX.match(name):
            rgb = None
        out.append((" ".join([*mods, name]), None if rgb is None else _modified(rgb, name, mods)))
    return out


def _match_color(words: list[str], j: int) -> tuple[str, np.ndarray | None, int]:
    """Longest colour name starting at word ``j`` (multi-word names first, ``-ish`` forms too)."""
    if j >= len(words):
        return "", None, j
    for parts in _MULTI:
        n = len(parts)
        if words[j : j + n] == parts:
            return " ".join(parts), color_of(" ".join(parts)), j + n
    w = words[j]
    if j + 1 < len(words) and w + words[j + 1] in VOCABULARY:  # "yellow green" = CSS yellowgreen
        return f"{w} {words[j + 1]}", color_of(w + words[j + 1]), j + 2
    rgb = color_of(w)
    if rgb is not None:
        return w, rgb, j + 1
    for suffix in ("ish", "-ish"):
        if w.endswith(suffix):
            base = w[: -len(suffix)]
            rgb = color_of(base)
            if rgb is None and base.endswith(("d", "n")):  # reddish, greenish -> red, green
                rgb = color_of(base[:-1])
            if rgb is not None:
                return w, rgb, j + 1
    for suffix in ("-colored", "-coloured"):
        if w.endswith(suffix) and color_of(w[: -len(suffix)]) is not None:
            return w[: -len(suffix)], color_of(w[: -len(suffix)]), j + 1
    return w, None, j + 1
