"""Prompt grounding: class matching, class activation maps, masks, hints, and saving them."""

from __future__ import annotations

import logging
import zlib

import cv2
import numpy as np
import pytest

from chromaflow.color.lab import rgb_to_lab
from chromaflow.guidance.grounding import (
    PERSON_CLASSES,
    ClassVocabulary,
    Grounder,
    GroundingOptions,
    PromptGrounder,
    class_activation_map,
    describe_matches,
    imagenet_classes,
    object_hints,
    object_phrases,
    refine_map,
    sky_mask,
    square_windows,
    superpixels,
)
from chromaflow.guidance.prompt import parse_prompt
from chromaflow.io.inspection import GroundingWriter


class WordsText:
    """A stand-in sentence encoder: bag of hashed words after "a photo of a", unit norm."""

    def encode(self, texts):
        out = np.zeros((len(texts), 8192), np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().removeprefix("a photo of a ").replace("-", " ").split():
                out[i, zlib.crc32(w.encode()) % 8192] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)


def test_class_list():
    classes = imagenet_classes()
    assert len(classes.wnids) == 1000 and list(classes.wnids) == sorted(classes.wnids)
    assert classes.names[0] == "tench" and classes.names[817] == "sports car"
    assert all(n in classes.names for n in PERSON_CLASSES)


def test_word_matching():
    vocab = ClassVocabulary(WordsText())
    opts = GroundingOptions()
    names = imagenet_classes().names
    car = vocab.match("car", opts)
    assert car.grounded and names.index("sports car") in car.classes
    assert names.index("car mirror") not in car.classes  # "car" only qualifies the mirror
    cups = vocab.match("cups", opts)  # plural
    assert names.index("cup") in cups.classes
    assert vocab.match("sky", opts).special == "sky" and vocab.match("sky", opts).grounded
    woman = vocab.match("woman", opts)
    assert woman.special == "person" and names.index("jean") in woman.classes
    nothing = vocab.match("qwertyzzz", opts)
    assert not nothing.grounded
    lines = describe_matches([car, nothing])
    assert "sports car" in lines[0] and "no ImageNet class" in lines[1]


def test_word_matching_keeps_only_classes_near_the_best():
    vocab = ClassVocabulary(WordsText())
    names = imagenet_classes().names
    # "sports car" is a class itself (similarity 1); other cars (0.9 by head noun) are further than the margin
    exact = vocab.match("sports car", GroundingOptions())
    assert [names[i] for i in exact.classes] == ["sports car"]
    loose = vocab.match("sports car", GroundingOptions(similarity_margin=1.0))
    assert len(loose.classes) > 1 and loose.classes[0] == names.index("sports car")


def test_class_activation_map_finds_the_channel_blob():
    head = np.zeros((4, 6, 8), np.float32)
    head[2, 1:3, 5:7] = 3.0
    head[1] = 1.0
    fc = np.zeros((2, 4), np.float32)
    fc[0, 2] = 1.0  # class 0 looks at channel 2
    fc[1, 1] = -1.0  # class 1 is negative everywhere
    cam = class_activation_map(head, fc, np.array([1.0, 0.0]))
    assert cam.shape == (6, 8) and cam.max() == pytest.approx(1.0)
    assert cam[1:3, 5:7].min() == pytest.approx(1.0) and cam[4, 1] == 0.0
    assert not class_activation_map(head, fc, np.array([0.0, 1.0])).any()  # ReLU: nothing activates


def test_refine_map_snaps_to_edges():
    gray = np.full((96, 128), 60, np.uint8)
    gray[30:70, 40:90] = 200  # a bright object
    coarse = np.zeros((3, 4), np.float32)
    coarse[1, 1:3] = 1.0  # the object's blob at stride 32
    seg = superpixels(gray, 60)
    refined = refine_map(coarse, gray, seg)
    assert refined.shape == gray.shape and 0 <= refined.min() and refined.max() <= 1
    inside, outside = refined[35:65, 45:85].mean(), refined[:20].mean()
    assert inside > 0.5 and outside < 0.1
    # superpixels make the map follow the object's boundary better than bilinear resizing alone
    ring = np.zeros_like(gray, bool)
    ring[24:76, 34:96] = True
    ring[30:70, 40:90] = False
    plain = cv2.resize(coarse, (128, 96), interpolation=cv2.INTER_LINEAR)
    assert refined[ring].mean() < plain[ring].mean()


def test_sky_mask():
    rng = np.random.default_rng(0)
    gray = np.clip(rng.normal(90, 40, (120, 160)), 0, 255).astype(np.uint8)  # textured ground
    gray[:45] = 220  # smooth bright sky touching the top
    gray[80:100, 60:120] = 230  # a smooth bright patch that does not touch the top
    m = sky_mask(gray)
    assert m[5:40].mean() > 0.9 and m[60:].mean() < 0.05
    assert not sky_mask(np.clip(rng.normal(90, 40, (120, 160)), 0, 255).astype(np.uint8)).any()


def test_square_windows():
    assert square_windows(100, 100, scales=(1.0,)) == [(0, 100, 0, 100)]
    wins = square_windows(90, 160, scales=(1.0,))
    assert wins[0] == (0, 90, 0, 160) and all(y1 - y0 == x1 - x0 == 90 for y0, y1, x0, x1 in wins[1:])
    assert [w[2] for w in wins[1:]] == [0, 35, 70]  # half overlapping at most, flush with both ends
    small = square_windows(90, 160, scales=(0.5,))[1:]
    assert all(y1 - y0 == x1 - x0 == 45 for y0, y1, x0, x1 in small)
    assert sorted({w[0] for w in small}) == [0, 22, 45] and len(small) == 3 * 7
    covered = np.zeros((90, 160), bool)
    for y0, y1, x0, x1 in small:
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_object_hints():
    masks = np.zeros((2, 10, 12), np.float32)
    masks[0, :5] = 1.0
    masks[1, 6:, :6] = 0.4  # under the core threshold: no hint
    masks[1, 6:, 6:] = 0.8
    red, blue = np.array([220, 20, 30], np.uint8), np.array([30, 60, 220], np.uint8)
    ab, conf = object_hints(masks, np.stack([red, blue]), strength=0.9)
    red_ab = rgb_to_lab(red.reshape(1, 1, 3)).reshape(3)[1:]
    blue_ab = rgb_to_lab(blue.reshape(1, 1, 3)).reshape(3)[1:]
    assert np.allclose(ab[:5], red_ab, atol=1e-3) and np.allclose(conf[:5], 0.9)
    assert np.allclose(ab[6:, 6:], blue_ab, atol=1e-3) and np.allclose(conf[6:, 6:], 0.72)
    assert not conf[6:, :6].any() and not conf[5].any() and not ab[5].any()


def test_object_phrases_keep_the_first_colour():
    phrases = object_phrases(parse_prompt("a red car, a blue car and a green tree"))
    assert [(p.name, p.object) for p in phrases] == [("red", "car"), ("green", "tree")]


@pytest.fixture(scope="module")
def grounder():
    from chromaflow.models.efficientnet import load_efficientnet_lite0

    # random weights: the plumbing, not the accuracy; accept any evidence
    opts = GroundingOptions(min_evidence=0.0, superpixels=50)
    return PromptGrounder(load_efficientnet_lite0(pretrained=False), WordsText(), opts)


def test_grounder_masks_and_hints(grounder):
    rng = np.random.default_rng(1)
    gray = cv2.GaussianBlur(rng.integers(0, 255, (72, 128)).astype(np.uint8), (0, 0), 3)
    gray[:20] = 235  # sky
    prompt = parse_prompt("a red car under a light blue sky, a green qwertyzzz")
    g = grounder.ground(gray, prompt)
    assert [o.phrase.object for o in g.objects] == ["car", "sky", "qwertyzzz"]
    car, sky, unknown = g.objects
    assert car.found and car.classes and car.mask.shape == gray.shape
    assert sky.found and sky.mask[:15].mean() > 0.8
    assert not unknown.found and unknown.evidence == 0.0
    stack = np.stack([o.mask for o in g.objects])
    assert ((stack > 0).sum(axis=0) <= 1).all()  # masks never overlap
    assert np.array_equal(g.hint_conf > 0, stack.max(axis=0) >= 0.5)
    red_ab = rgb_to_lab(car.phrase.rgb.reshape(1, 1, 3)).reshape(3)[1:]
    core = car.mask >= 0.5
    assert np.allclose(g.hint_ab[core], red_ab, atol=1e-3)
    again = grounder.ground(gray, prompt)  # deterministic
    assert np.array_equal(again.hint_ab, g.hint_ab) and np.array_equal(again.hint_conf, g.hint_conf)
    empty = grounder.ground(gray, parse_prompt("a vintage look"))
    assert empty.objects == () and not empty.hint_conf.any()


def test_grounder_takes_an_object_as_absent_without_evidence(grounder):
    strict = PromptGrounder(grounder.encoder, WordsText(), GroundingOptions(min_evidence=1.1))
    gray = np.full((64, 64), 128, np.uint8)
    g = strict.ground(gray, parse_prompt("a red car"))
    assert not g.objects[0].found and not g.hint_conf.any()


def test_grounding_writer(grounder, tmp_path):
    gray = np.full((48, 64), 120, np.uint8)
    gray[:16] = 240
    g = grounder.ground(gray, parse_prompt("a light blue sky and a red bow tie"))
    writer = GroundingWriter(tmp_path / "masks")
    writer(7, gray, g)
    writer(9, gray, g)
    names = sorted(p.name for p in (tmp_path / "masks").iterdir())
    assert names == [
        # named after the grounder that found each mask
        "frame_000007_hints.png", "frame_000007_mask_1_sky_cam.png", "frame_000007_mask_2_bow-tie_cam.png",
        "frame_000009_hints.png", "frame_000009_mask_1_sky_cam.png", "frame_000009_mask_2_bow-tie_cam.png",
        "grounding.tsv",
    ]
    sky = cv2.imread(str(tmp_path / "masks" / "frame_000007_mask_1_sky_cam.png"), cv2.IMREAD_UNCHANGED)
    assert sky.shape == gray.shape and sky[:10].min() > 200
    hints = cv2.imread(str(tmp_path / "masks" / "frame_000007_hints.png"))
    assert hints[4, 4, 0] > hints[4, 4, 2]  # BGR: blue over the sky
    rows = (tmp_path / "masks" / "grounding.tsv").read_text().splitlines()
    assert rows[0].startswith("frame\tobject") and len(rows) == 5
    assert rows[1].split("\t")[:5] == ["7", "sky", "light blue", "#add8e6", "cam"]
    (tmp_path / "file").write_text("x")
    from chromaflow.errors import OutputError

    with pytest.raises(OutputError):
        GroundingWriter(tmp_path / "file")


class _OnceGrounder(Grounder):
    """Finds the prompt's object (left half of the frame) only in the frames listed."""

    name = "once"

    def __init__(self, frames_with_object, vocabulary_matches):
        self.frames = set(frames_with_object)
        self.calls = 0
        self._matches = vocabulary_matches

    def matches(self, prompt):
        return self._matches

    def ground(self, gray, prompt):
        from chromaflow.guidance.grounding import GroundedObject, Grounding

        found = self.calls in self.frames
        self.calls += 1
        mask = np.zeros(gray.shape, np.float32)
        if found:
            mask[:, : gray.shape[1] // 2] = 1.0
        phrase = object_phrases(prompt)[0]
        ab, conf = object_hints(mask[None], phrase.rgb[None], 0.9)
        return Grounding((GroundedObject(phrase, self._matches[0], mask, 1.0, ()),), ab, conf)


def test_prompt_hints_track_masks_between_anchors():
    from chromaflow.colorizers.base import Carried
    from chromaflow.guidance.conditions import Conditions
    from chromaflow.guidance.grounding import ObjectMatch
    from chromaflow.guidance.hints import PromptHints

    seen = []
    hints = PromptHints(_OnceGrounder({0}, [ObjectMatch("car", (817,), (1.0,))]),
                        on_grounding=lambda f, g, gr: seen.append((f, float(gr.hint_conf.mean()))))
    assert hints.begin(Conditions(prompt="a red car"))
    light = np.full((24, 32), 50.0, np.float32)
    first = hints.at(light, 0)
    assert first is not None and first[1][:, :16].min() == pytest.approx(0.9) and not first[1][:, 16:].any()
    still = Carried(0, lambda x: (x, np.ones(light.shape, np.float32)))  # nothing moved, all reliable
    tracked = hints.at(light, 8, still)  # grounding misses the object here: the tracked mask stands
    assert tracked is not None and np.allclose(tracked[0], first[0]) and np.allclose(tracked[1], first[1])
    lost = Carried(8, lambda x: (x, np.zeros(light.shape, np.float32)))  # the motion cannot be trusted
    assert hints.at(light, 16, lost) is None
    assert hints.at(light, 24, Carried(3, still.sample)) is None  # no hints were made at frame 3
    assert [f for f, _ in seen] == [0, 8, 16, 24] and seen[1][1] == pytest.approx(seen[0][1])
    memory = hints.memory()  # a shot's memory can be restored (a shot run on its own)
    hints.start_shot()
    assert hints.at(light, 32, Carried(8, still.sample)) is None
    hints.start_shot(memory)
    assert hints.at(light, 40, Carried(8, still.sample)) is not None


def test_prompt_hints_report_objects_never_found(caplog):
    from chromaflow.guidance.conditions import Conditions
    from chromaflow.guidance.grounding import ObjectMatch
    from chromaflow.guidance.hints import PromptHints

    hints = PromptHints(_OnceGrounder(set(), [ObjectMatch("car", (817,), (1.0,))]))
    assert hints.begin(Conditions(prompt="a red car"))
    assert not PromptHints(_OnceGrounder(set(), [])).begin(Conditions(prompt="warm red tones"))  # no object
    light = np.full((24, 32), 50.0, np.float32)
    for f in range(3):
        assert hints.at(light, f) is None
    with caplog.at_level(logging.INFO, logger="chromaflow"):
        hints.finish()
    assert any("'car' was not found on any of the 3 grounded frames" in r.getMessage() for r in caplog.records)


def test_prompt_objects_change_only_their_surroundings(tiny_model):
    """With carried colours known over part of the frame (a re-anchored keyframe), the prompt's
    edit stays around its object; elsewhere the frame is what it is without the prompt."""
    from dataclasses import replace

    from chromaflow.colorizers.chroma_model import ChromaModel, ModelColorizer, ModelOptions
    from chromaflow.guidance.conditions import Conditions
    from chromaflow.guidance.grounding import ObjectMatch
    from chromaflow.guidance.hints import PromptHints

    model = ChromaModel.load(ModelOptions(weights=str(tiny_model)))
    col = ModelColorizer(model)
    hints = PromptHints(_OnceGrounder({0}, [ObjectMatch("car", (817,), (1.0,))]))  # the object: columns 0-31
    rng = np.random.default_rng(0)
    light = np.clip(rng.normal(50, 15, (1, 32, 64)), 0, 100).astype(np.float32)
    known_conf = np.zeros((1, 32, 64), np.float32)
    known_conf[:, ::2, 44:] = 1.0  # carried colours on every other row of the right part
    known = (rng.normal(0, 20, (1, 32, 64, 2)).astype(np.float32), known_conf)
    cond = Conditions(prompt="a red car", seed=3)
    assert hints.begin(cond)
    out = hints.colorize(col, light, [0], cond, known)
    base = model.predict(light, replace(col.guidance_for(cond), text=None), *known)
    assert np.allclose(out[0][::2, 44:], known[0][0][::2, 44:])  # carried colours kept
    assert np.allclose(out[0][1::2, 44:], base[0][1::2, 44:], atol=1e-4)  # between them: no prompt edit
    assert not np.allclose(out[0][:, :32], base[0][:, :32], atol=1e-2)  # the object itself changed
