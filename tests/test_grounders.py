"""The detector grounders and the combined grounder ``auto``: words, masks, fallbacks, bad models.

Most tests give the grounders stand-in models (plain callables returning
boxes and probability maps) so they run without any model file; one opt-in
test runs the real detectors of ``../shared/models`` on a real frame when
that folder is there.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_grounding import WordsText

from chromaflow.guidance import detectors as D
from chromaflow.guidance import grounders as G
from chromaflow.guidance.prompt import parse_prompt
from chromaflow.store import ModelStore
from chromaflow.store.store import ModelEntry

SHARED_MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
SHARED_CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "clips"


class ToyText:
    """A sentence encoder where 'doggo' is close to 'dog' and everything else is far apart."""

    def encode(self, texts):
        out = np.zeros((len(texts), 64), np.float32)
        for i, t in enumerate(texts):
            w = t.removeprefix("a photo of a ")
            out[i, 0 if w in ("dog", "doggo") else 1 + hash(w) % 63] = 1.0
        return out


def test_words_match_names_plurals_head_nouns_and_similar_words() -> None:
    names = list(G.CLASS_WORDS)

    def best(word, text=None):
        c = G.match_word(word, names, text)
        return (c[0].grounder, c[0].key, c[0].how) if c else None

    assert best("cups") == ("coco", "cup", "name")  # plural folded
    assert best("mug") == ("coco", "cup", "name")  # synonym
    assert best("sports car") == ("voc", "car", "head noun")  # a kind of car
    assert best("jeans")[:2] == ("parts", "lower")
    assert best("sweater")[:2] == ("parts", "upper")
    assert best("dress")[:2] == ("parts", "dress")
    assert best("suit")[:2] == ("parts", "outfit")
    assert best("hands")[:2] == ("parts", "skin")
    assert best("woman")[:2] == ("person", "person")
    assert best("sky")[:2] == ("sky", "sky")
    assert best("road")[:2] == ("road", "road")
    assert best("bow tie")[:2] == ("coco", "tie")
    assert best("flibbertigibbet") is None
    assert best("doggo") is None  # no name matches ...
    assert best("doggo", ToyText())[1] == "dog" and best("doggo", ToyText())[2] == "similar"  # ... but it is similar
    # a word both VOC and COCO know: both are candidates, the pixel masks first
    cands = G.match_word("dog", names)
    assert [(c.grounder, c.key) for c in cands[:2]] == [("voc", "dog"), ("coco", "dog")]


# ----------------------------------------------------------------------------- stand-in models

H, W = 120, 160
CAR = (10, 60, 60, 100)  # x0, y0, x1, y1
PERSON = (90, 10, 130, 110)


def _scene() -> np.ndarray:
    rng = np.random.default_rng(0)
    gray = np.full((H, W), 150, np.uint8)
    gray[CAR[1]:CAR[3], CAR[0]:CAR[2]] = 60
    gray[PERSON[1]:PERSON[3], PERSON[0]:PERSON[2]] = 200
    gray[PERSON[1]:PERSON[1] + 18, PERSON[0] + 12:PERSON[2] - 12] = 120  # a head
    return np.clip(gray + rng.normal(0, 2, gray.shape), 0, 255).astype(np.uint8)


class FakeModels:
    """Boxes for a car and a person, a pose with hips at row 60, and parts maps of the person."""

    def __init__(self, options, missing=()):
        self.options = options
        self.failed = {m: f"model for {m} is not here" for m in missing}
        self.calls = {}

    def get(self, what):
        self.calls[what] = self.calls.get(what, 0) + 1
        if what in self.failed:
            return None
        if what == "coco":
            return lambda gray: [D.Detection("car", 0.9, CAR), D.Detection("person", 0.85, PERSON)]
        if what == "pose":
            def pose(gray, box):
                pts = np.zeros((33, 3), np.float32)
                pts[:, 2] = 1.0
                pts[:, :2] = (110.0, 20.0)  # head and the rest at the centre top
                for i, xy in {11: (97, 28), 12: (123, 28), 13: (94, 45), 14: (126, 45), 15: (93, 58), 16: (127, 58),
                              23: (102, 60), 24: (118, 60), 25: (102, 85), 26: (118, 85), 27: (102, 108),
                              28: (118, 108)}.items():
                    pts[i, :2] = xy  # shoulders, elbows, wrists, hips, knees, ankles
                mask = np.zeros((H, W), np.float32)
                mask[PERSON[1]:PERSON[3], PERSON[0]:PERSON[2]] = 1.0
                return pts, mask, 0.9
            return pose
        if what == "parts":
            def parts(gray):
                out = np.zeros((3, 64, 64), np.float32)
                out[1] = 1.0  # clothes everywhere: the grounder keeps them inside the person
                return out
            return parts
        if what == "voc":
            def voc(gray):
                out = np.zeros((21, 32, 32), np.float32)
                out[0] = 1.0
                return out
            return voc
        if what == "face":
            return lambda gray: []
        if what == "road":
            def road(gray):
                out = np.zeros((4, 32, 32), np.float32)
                out[0] = 1.0
                return out
            return road
        raise AssertionError(what)


def _auto(missing=(), **kw) -> G.AutoGrounder:
    options = G.DetectorGroundingOptions(use=("parts", "person", "voc", "coco", "road", "sky"), **kw)
    g = G.AutoGrounder(options, None, WordsText(), cam=None)
    g.models = FakeModels(options, missing)
    return g


def _inside(mask, box, pad=3):
    x0, y0, x1, y1 = box
    m = mask >= 0.5
    out = m.copy()
    out[max(0, y0 - pad):y1 + pad, max(0, x0 - pad):x1 + pad] = False
    return float(m[y0:y1, x0:x1].mean()), int(out.sum())


def test_objects_land_in_their_masks_and_clothes_split_at_the_hips() -> None:
    gray = _scene()
    g = _auto().ground(gray, parse_prompt("a red car, a blue shirt and green trousers"))
    car, shirt, trousers = g.objects
    assert (car.grounder, shirt.grounder, trousers.grounder) == ("coco", "parts", "parts")
    cover, outside = _inside(car.mask, CAR)
    assert cover > 0.8 and outside == 0  # GrabCut keeps the dark car, nothing beyond its box
    rows_shirt = np.nonzero((shirt.mask >= 0.5).any(1))[0]
    rows_trousers = np.nonzero((trousers.mask >= 0.5).any(1))[0]
    assert rows_shirt.min() >= 22 and rows_shirt.max() < 66  # shoulders to hips (the torso widened a little)
    assert rows_trousers.min() >= 56 and rows_trousers.max() < 112  # hips to ankles
    masks = np.stack([o.mask for o in g.objects])
    assert ((masks > 0).sum(0) <= 1).all()  # disjoint
    # hints only inside the masks, at each object's named colour
    assert not g.hint_conf[np.stack([o.mask for o in g.objects]).max(0) < 0.5].any()
    red = np.median(g.hint_ab[car.mask >= 0.9], axis=0)
    blue = np.median(g.hint_ab[shirt.mask >= 0.9], axis=0)
    cap = G.DetectorGroundingOptions().max_chroma
    assert red[0] > 0.6 * cap and blue[1] < -0.6 * cap  # the named hues ...
    assert np.hypot(*red) <= cap + 0.01 and np.hypot(*blue) <= cap + 0.01  # ... at a plausible chroma


def test_the_more_specific_object_keeps_the_overlap() -> None:
    gray = _scene()
    g = _auto().ground(gray, parse_prompt("a green woman and a blue shirt"))
    woman, shirt = g.objects
    assert woman.grounder == "person" and shirt.grounder == "parts"
    both = (woman.mask > 0) & (shirt.mask > 0)
    assert not both.any() and (shirt.mask >= 0.5).sum() > 100
    assert (woman.mask[80:100, 95:125] >= 0.5).mean() > 0.8  # the legs stay the woman's


def test_models_run_once_per_frame_and_only_those_needed() -> None:
    g = _auto()
    g.ground(_scene(), parse_prompt("a blue sky"))
    assert "coco" not in g.models.calls  # the sky needs no model
    g.ground(_scene(), parse_prompt("a red car, a blue shirt, green trousers, brown hair"))
    assert set(g.models.calls) >= {"coco", "pose", "parts"}


def test_missing_models_are_one_warning_and_the_prompt_still_runs(caplog) -> None:
    g = _auto(missing=("coco", "pose"))
    with caplog.at_level(logging.WARNING, logger="chromaflow"):
        for _ in range(3):
            out = g.ground(_scene(), parse_prompt("a red car and a light blue sky"))
    warnings = [r for r in caplog.records if "prompt grounding without" in r.getMessage()]
    assert len(warnings) == 1 and "coco" in warnings[0].getMessage()
    car, sky = out.objects
    assert not car.found and car.grounder == ""


def test_an_unknown_word_and_an_absent_object_are_reported(caplog) -> None:
    from chromaflow.guidance.hints import PromptHints

    g = _auto()
    lines = g.describe(g.matches(parse_prompt("a red flibbertigibbet, a blue boat")))
    assert "no grounder knows" in lines[0] and "coco (boat)" in lines[1]
    hints = PromptHints(g)
    from chromaflow.guidance.conditions import Conditions

    with caplog.at_level(logging.INFO, logger="chromaflow"):
        assert hints.begin(Conditions(prompt="a blue boat, a red car"))
        for i in range(2):
            hints.at(np.full((H, W), 50.0, np.float32) + 0 * i, i)
        hints.finish()
    text = caplog.text
    assert "'boat' was not found on any of the 2 grounded frames" in text
    assert "'car': found on 2 of 2 grounded frames (by coco 2)" in text


def test_twenty_objects_in_one_prompt() -> None:
    words = ["car", "shirt", "trousers", "boat", "dog", "cat", "cup", "bottle", "chair", "sky", "road", "bus",
             "train", "horse", "sheep", "cow", "bench", "kite", "clock", "vase"]
    colors = ["red", "blue", "green", "yellow", "orange", "purple", "pink", "brown", "white", "black"]
    prompt = ", ".join(f"a {colors[i % 10]} {w}" for i, w in enumerate(words))
    g = _auto().ground(_scene(), parse_prompt(prompt))
    assert len(g.objects) == 20
    assert {o.phrase.object for o in g.objects if o.found} >= {"car", "shirt", "trousers"}


def test_instance_words_say_one_person_or_all_and_where() -> None:
    def said(text):
        out, prev = [], None
        for p in parse_prompt(text).phrases:
            prev = G.instances_of(p, prev)
            out.append((p.object, prev.one, prev.where))
        return out

    assert said("a girl in a blue dress, a pink pillow") == [("dress", True, None), ("pillow", True, None)]
    assert said("two men in grey suits") == [("suits", False, None)]
    assert said("people in blue coats") == [("coats", False, None)]
    assert said("the man on the left in a red shirt and blue jeans") == [("shirt", True, "left"),
                                                                          ("jeans", True, "left")]
    assert said("red cups on a white table") == [("cups", False, None), ("table", True, None)]
    assert said("the red car on the right.") == [("car", True, "right")]
    assert said("a grey shirt, green grass") == [("shirt", False, None), ("grass", False, None)]  # whose: all
    assert said("a man in a red shirt on the left and a woman in a blue dress") == [("shirt", True, "left"),
                                                                                  ("dress", True, None)]
    assert said("a red car on the right and a blue van on the left") == [("car", True, "right"),
                                                                           ("van", True, "left")]
    assert said("a girl walking two brown dogs") == [("dogs", False, None)]
    assert said("a girl in a blue dress and red cups") == [("dress", True, None), ("cups", False, None)]
    assert said("a blue cup in his left hand") == [("cup", True, None)]  # "left" without "the" is no position


LEFT, RIGHT = (8, 30, 38, 110), (70, 10, 110, 110)  # a child at the edge, a bigger one in the middle


class TwoPeople(FakeModels):
    """Two people; the pose follows each box (shoulders a fifth of the way down, hips at the middle)."""

    def get(self, what):
        if what == "coco":
            self.calls["coco"] = self.calls.get("coco", 0) + 1
            return lambda gray: [D.Detection("person", 0.8, LEFT), D.Detection("person", 0.85, RIGHT),
                                 D.Detection("person", 0.5, (9, 31, 38, 108))]  # the left one again
        if what == "pose":
            self.calls["pose"] = self.calls.get("pose", 0) + 1

            def pose(gray, box):
                self.calls["pose runs"] = self.calls.get("pose runs", 0) + 1
                x0, y0, x1, y1 = box
                w, h = x1 - x0, y1 - y0
                pts = np.zeros((33, 3), np.float32)
                pts[:, 2] = 1.0
                pts[:, :2] = (x0 + w / 2, y0 + 0.08 * h)
                for i, (fx, fy) in {11: (0.2, 0.2), 12: (0.8, 0.2), 13: (0.1, 0.35), 14: (0.9, 0.35),
                                    23: (0.3, 0.5), 24: (0.7, 0.5), 25: (0.3, 0.75), 26: (0.7, 0.75),
                                    27: (0.3, 0.97), 28: (0.7, 0.97)}.items():
                    pts[i, :2] = (x0 + fx * w, y0 + fy * h)
                mask = np.zeros((H, W), np.float32)
                mask[int(y0):int(y1), int(x0):int(x1)] = 1.0
                return pts, mask, 0.9
            return pose
        return super().get(what)


def _two_people_scene() -> np.ndarray:
    gray = np.full((H, W), 150, np.uint8)
    for x0, y0, x1, y1 in (LEFT, RIGHT):
        gray[y0:y1, x0:x1] = 200
    return gray


def _owner_of(mask) -> str:
    left = (mask[LEFT[1]:LEFT[3], LEFT[0]:LEFT[2]] >= 0.5).sum()
    right = (mask[RIGHT[1]:RIGHT[3], RIGHT[0]:RIGHT[2]] >= 0.5).sum()
    return "both" if left and right else "left" if left else "right" if right else "none"


def test_a_garment_of_one_person_goes_to_that_person_only() -> None:
    g = _auto()
    g.models = TwoPeople(g.options)
    gray = _two_people_scene()
    owner = lambda text: [_owner_of(o.mask) for o in g.ground(gray, parse_prompt(text)).objects]  # noqa: E731
    assert owner("a girl in a blue dress") == ["right"]  # the most prominent: bigger, nearer the middle
    assert owner("the boy on the left in a red shirt and grey shorts") == ["left", "left"]
    assert owner("two kids in blue shirts") == ["both"]
    assert owner("a blue shirt") == ["both"]  # a garment alone does not say whose
    assert owner("the man on the right in a grey suit") == ["right"]
    assert g.models.calls["pose runs"] == 5 * 2  # the duplicate box of the left child is the same person


def test_different_owner_words_are_different_people() -> None:
    class OnePerson(TwoPeople):
        def get(self, what):
            if what == "coco":
                return lambda gray: [D.Detection("person", 0.8, LEFT)]
            return super().get(what)

    g = _auto()
    text = "a girl in a blue dress, the boy on the left in a white t-shirt"
    g.models = OnePerson(g.options)
    assert [_owner_of(o.mask) for o in g.ground(_two_people_scene(), parse_prompt(text)).objects] == ["left", "none"]
    g.models = TwoPeople(g.options)
    assert [_owner_of(o.mask) for o in g.ground(_two_people_scene(), parse_prompt(text)).objects] == ["right", "left"]


class CloseUp(FakeModels):
    """A head and shoulders filling the frame: the detector sees no person, the selfie segmenter does."""

    def get(self, what):
        self.calls[what] = self.calls.get(what, 0) + 1
        if what == "coco":
            return lambda gray: []
        if what == "selfie":
            def selfie(gray):
                out = np.zeros((H, W), np.float32)
                out[20:, 30:130] = 1.0  # head and shoulders to the bottom of the frame
                return out
            return selfie
        if what == "face":
            return lambda gray: [D.Detection("face", 0.9, (60, 20, 100, 60))]
        if what == "pose":
            raise AssertionError("the pose model is not run on a close-up")
        return super().get(what)


def test_a_close_up_finds_the_clothes_below_the_face() -> None:
    g = _auto()
    g.models = CloseUp(g.options)
    suit, = g.ground(_scene(), parse_prompt("a charcoal suit")).objects
    assert suit.found and suit.grounder == "parts"
    rows = np.nonzero((suit.mask >= 0.5).any(1))[0]
    assert rows.min() >= 60 and rows.max() >= H - 3  # under the chin, down to the frame's edge
    cols = np.nonzero((suit.mask >= 0.5).any(0))[0]
    assert cols.min() >= 27 and cols.max() <= 132  # inside the person


def test_a_selfie_blob_without_a_face_is_no_person() -> None:
    class NoFace(CloseUp):
        def get(self, what):
            if what == "face":
                return lambda gray: []
            return super().get(what)

    g = _auto()
    g.models = NoFace(g.options)
    suit, = g.ground(_scene(), parse_prompt("a charcoal suit")).objects
    assert not suit.found


def test_a_pose_with_shoulders_at_the_neck_is_not_believed() -> None:
    pts = np.zeros((33, 3), np.float32)
    pts[:, 2] = 1.0
    for i, xy in {0: (50, 20), 11: (40, 40), 12: (60, 40), 23: (42, 70), 24: (58, 70)}.items():
        pts[i, :2] = xy
    assert G.plausible_pose(pts)
    assert not G.plausible_pose(pts, face=(40, 5, 60, 45))  # the chin below the "shoulders"
    pts[[23, 24], 1] = 48  # hips just under the shoulders
    assert not G.plausible_pose(pts)
    assert not G.plausible_pose(None)


def test_refine_box_methods() -> None:
    gray = _scene()
    for method in ("grabcut", "box"):
        m = G.refine_box(gray, CAR, method)
        cover, outside = _inside(m, CAR)
        assert cover > 0.8 and outside == 0
    assert not G.refine_box(gray, (5, 5, 6, 6)).any()  # too small to be an object


def test_things_standing_in_a_box_are_not_the_boxed_object() -> None:
    """A white table's box has dark cups in its middle (as dark as the room around): GrabCut keeps the
    table, not the cups."""
    rng = np.random.default_rng(1)
    gray = np.full((H, W), 70, np.uint8)  # a dark room
    table = (10, 50, 150, 115)
    gray[table[1]:table[3], table[0]:table[2]] = 235
    cups = [(62, 68, 72, 95), (88, 68, 98, 95)]
    for x0, y0, x1, y1 in cups:
        gray[y0:y1, x0:x1] = 72
    gray = np.clip(gray + rng.normal(0, 2, gray.shape), 0, 255).astype(np.uint8)
    m = G.refine_box(gray, table)
    for x0, y0, x1, y1 in cups:
        assert (m[y0 + 3:y1 - 3, x0 + 3:x1 - 3] >= 0.5).mean() < 0.1
    assert (m[100:112, 20:140] >= 0.5).mean() > 0.9


def test_a_corrupt_model_file_is_one_warning(tmp_path: Path, monkeypatch, caplog) -> None:
    pytest.importorskip("onnxruntime")
    from chromaflow.store import store as store_module

    bad = tmp_path / "deimv2_hgnetv2_femto_coco.onnx"
    bad.write_bytes(b"this is not an onnx file" * 10)
    entry = ModelEntry("deimv2_femto_coco", bad.name, (), hashlib.sha256(bad.read_bytes()).hexdigest())
    monkeypatch.setattr(store_module, "_DEFAULT", ModelStore({entry.name: entry}, mirrors=[tmp_path], offline=True))
    options = G.DetectorGroundingOptions(use=("coco", "sky"))
    g = G.AutoGrounder(options, None, WordsText(), cam=None)
    with caplog.at_level(logging.WARNING, logger="chromaflow"):
        out = g.ground(_scene(), parse_prompt("a red car and a light blue sky"))
    assert not out.objects[0].found
    assert "cannot be loaded (onnx)" in caplog.text and caplog.text.count("prompt grounding without") == 1
    # and a file that fails its checksum is refused before any runtime reads it
    bad.write_bytes(b"changed")
    monkeypatch.setattr(store_module, "_DEFAULT", ModelStore({entry.name: entry}, mirrors=[tmp_path], offline=True))
    g = G.AutoGrounder(options, None, WordsText(), cam=None)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="chromaflow"):
        g.ground(_scene(), parse_prompt("a red car"))
    assert "bad checksum" in caplog.text


def test_face_anchor_layouts() -> None:
    short = D._ssd_anchors(128, *D._merge_layers((8, 16, 16, 16)))
    full = D._ssd_anchors(192, (4,), (1,))
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    assert np.allclose(short[0], [0.5 / 16, 0.5 / 16]) and np.allclose(short[512], [0.5 / 8, 0.5 / 8])


@pytest.mark.skipif(not (SHARED_MODELS.is_dir() and SHARED_CLIPS.is_dir()), reason="../shared/models not here")
def test_real_detectors_on_a_real_frame(monkeypatch) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    from chromaflow.io import open_source
    from chromaflow.store import store as store_module

    monkeypatch.setattr(store_module, "_DEFAULT", ModelStore(mirrors=[SHARED_MODELS], offline=True))
    with open_source(SHARED_CLIPS / "juggle.mp4") as src:
        rgb = next(f.rgb for f in src if f.index == 30)
    gray = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (854, 480), interpolation=cv2.INTER_AREA)
    g = G.AutoGrounder(G.DetectorGroundingOptions(), None, WordsText(), cam=None)
    out = g.ground(gray, parse_prompt("a white ball, a grey shirt, dark blue trousers"))
    ball, shirt, trousers = out.objects
    assert (ball.grounder, shirt.grounder, trousers.grounder) == ("coco", "parts", "parts")
    # the benchmark's boxes of this frame (benchmarks/prompts.toml, juggle, frame 30)
    for obj, (x0, y0, x1, y1) in ((ball, (0.56, 0.73, 0.61, 0.82)), (shirt, (0.51, 0.24, 0.60, 0.42)),
                                  (trousers, (0.52, 0.52, 0.60, 0.70))):
        box = obj.mask[int(y0 * 480):int(y1 * 480), int(x0 * 854):int(x1 * 854)]
        assert (box >= 0.5).mean() > 0.7, obj.phrase.object


@pytest.mark.skipif(not (SHARED_MODELS.is_dir() and SHARED_CLIPS.is_dir()), reason="../shared/models not here")
@pytest.mark.parametrize("clip,frame", [("bedroom", 160), ("carphone", 30)])
def test_real_instances_and_close_ups(monkeypatch, clip, frame) -> None:
    """bedroom: the girl's dress and the boy's clothes go to the right child; carphone: a close-up the
    detector misses, the suit below the face (the benchmark's own prompts and boxes)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    from chromaflow.bench.prompts import load_prompts
    from chromaflow.io import open_source
    from chromaflow.store import store as store_module

    monkeypatch.setattr(store_module, "_DEFAULT", ModelStore(mirrors=[SHARED_MODELS], offline=True))
    spec = load_prompts(Path(__file__).resolve().parents[1] / "benchmarks" / "prompts.toml")[clip]
    with open_source(SHARED_CLIPS / f"{clip}.mp4") as src:
        rgb = next(f.rgb for f in src if f.index == frame)
    h, w = rgb.shape[:2]
    gray = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (854, round(854 * h / w)), interpolation=cv2.INTER_AREA)
    g = G.AutoGrounder(G.DetectorGroundingOptions(), None, WordsText(), cam=None)
    objects = {o.phrase.object: o for o in g.ground(gray, parse_prompt(spec.prompt)).objects}
    expected = {"bedroom": {"dress", "t-shirt", "shorts"}, "carphone": {"suit", "face"}}[clip]
    assert {o for o, g in objects.items() if g.grounder} >= expected
    boxes = [b for b in spec.boxes if b.frame == frame and b.object in expected]
    assert len(boxes) >= 2
    for b in boxes:
        rs, cs = b.pixels(*gray.shape)
        assert (objects[b.object].mask[rs, cs] >= 0.5).mean() > 0.7, b.object
    if clip == "bedroom":  # the dress is the girl's, in the middle, not the boy's at the left edge
        dress = objects["dress"].mask >= 0.5
        assert dress.any() and not dress[:, : gray.shape[1] // 5].any()


# ----------------------------------------------------------------------------- the same eyes elsewhere


def test_reference_colours_stay_within_like_regions() -> None:
    from chromaflow.guidance.correspondence import SemanticMatcher
    from chromaflow.models.efficientnet import load_efficientnet_lite0

    rng = np.random.default_rng(1)
    texture = np.clip(128 + rng.normal(0, 20, (96, 128)), 0, 255).astype(np.uint8)
    ref = np.repeat(texture[..., None], 3, axis=2).astype(np.int16)
    ref[:, :64] += np.array([60, -30, -30], np.int16)  # left half reddish, right half bluish
    ref[:, 64:] += np.array([-30, -30, 60], np.int16)
    ref = np.clip(ref, 0, 255).astype(np.uint8)
    gray = texture.copy()

    def labeller_for(flipped):
        def label(g):
            out = np.ones(g.shape, np.int32)
            out[:, g.shape[1] // 2:] = 2
            return out[:, ::-1].copy() if flipped and g is not gray else out
        return label

    encoder = load_efficientnet_lite0(pretrained=True).eval()
    plain = SemanticMatcher(encoder, work_side=128)
    ab_plain, _ = plain.transfer(gray, ref)
    # the reference's labels are mirrored: its right (bluish) half is label 1, like the frame's left half
    labelled = SemanticMatcher(encoder, work_side=128, labeller=labeller_for(True), label_penalty=0.5)
    ab_lab, _ = labelled.transfer(gray, ref)
    left_plain_a = float(ab_plain[:, :4, 0].mean())
    left_lab_b = float(ab_lab[:, 1:7, 1].mean())
    assert left_plain_a > 0  # without labels the frame's left takes the reference's left (red)
    assert left_lab_b < -10  # with them it takes the like-labelled half (blue)


def test_tag_palette_tags_what_the_detectors_find() -> None:
    from chromaflow.guidance.tags import tag_palette

    class DogModels:
        failed: dict = {}

        def get(self, what):
            if what == "coco":
                return lambda g: [D.Detection("dog", 0.9, (0, 0, g.shape[1] / 2, g.shape[0]))]
            return None

    frames = [np.full((64, 96), 128, np.uint8), np.full((64, 96), 90, np.uint8)]
    with_det = tag_palette(frames, models=DogModels())
    without = tag_palette(frames, detectors=False)
    assert any(name == "dog (detector)" for name, _ in with_det.tags)
    assert not any("detector" in name for name, _ in without.tags)
    assert with_det.palette.hex() != without.palette.hex()
