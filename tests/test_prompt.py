"""Prompt parsing: colours, modifiers, hex codes, objects, style, unknown words, conflicts."""

from __future__ import annotations

import numpy as np
import pytest

from chromaflow.color.lab import rgb_to_lab
from chromaflow.errors import InputError
from chromaflow.guidance.prompt import VOCABULARY, apply_modifiers, color_of, parse_prompt


def _pairs(text):
    return [(p.name, p.object) for p in parse_prompt(text).phrases]


def test_vocabulary_is_large_and_css_compounds_resolve():
    assert len(VOCABULARY) >= 200
    np.testing.assert_array_equal(color_of("sky blue"), color_of("skyblue"))
    np.testing.assert_array_equal(color_of("#87CEEB"), [0x87, 0xCE, 0xEB])
    np.testing.assert_array_equal(color_of("#f80"), [0xFF, 0x88, 0x00])
    assert color_of("blorange") is None


def test_colour_object_pairs():
    assert _pairs("a red car on a grey road under a blue sky") == [("red", "car"), ("grey", "road"), ("blue", "sky")]
    assert _pairs("The dark forest green jacket and a reddish barn.") == [
        ("dark forest green", "jacket"),
        ("reddish", "barn"),
    ]
    assert parse_prompt("a red car on a grey road").objects == ("car", "road")


def test_modifiers_move_the_colour_in_lab():
    blue = color_of("blue")
    l0 = rgb_to_lab(blue.reshape(1, 1, 3))[0, 0, 0]
    assert rgb_to_lab(apply_modifiers(blue, ["dark"]).reshape(1, 1, 3))[0, 0, 0] < l0 - 5
    pale = rgb_to_lab(apply_modifiers(color_of("red"), ["pale"]).reshape(1, 1, 3))[0, 0]
    red = rgb_to_lab(color_of("red").reshape(1, 1, 3))[0, 0]
    assert np.hypot(*pale[1:]) < np.hypot(*red[1:])
    light_blue = parse_prompt("a light blue dress").phrases[0]
    np.testing.assert_array_equal(light_blue.rgb, color_of("lightblue"))  # the CSS colour, not a shifted blue


def test_hex_style_unknown_and_conflicts():
    p = parse_prompt("a #ff8800 hat, a foo-colored wall, a #12zz45 door; vintage look")
    assert ("#ff8800", "hat") in [(x.name, x.object) for x in p.phrases]
    assert "foo-colored" in p.unknown_colors and "#12zz45" in p.unknown_colors
    assert "vintage" in p.style
    q = parse_prompt("a red car and a blue car")
    assert q.conflicts == {"car": ("red", "blue")}


def test_prompt_without_colour_and_empty_prompt():
    assert parse_prompt("a man walking his dog").phrases == ()
    with pytest.raises(InputError):
        parse_prompt("   ")


def test_two_word_css_names():
    assert _pairs("yellow green grass and a blue violet scarf") == [("yellow green", "grass"), ("blue violet", "scarf")]
    assert tuple(parse_prompt("yellow green grass").phrases[0].rgb) == (0x9A, 0xCD, 0x32)
