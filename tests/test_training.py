"""Training: cache, config, reproducible and resumable runs, the train command (tiny synthetic data)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from chromaflow.cli import app
from chromaflow.errors import InputError
from chromaflow.models.weights import load_model
from chromaflow.training import cache as cache_mod
from chromaflow.training.cache import CacheSpec, build_cache, caption_for, split_photos, subject_of
from chromaflow.training.config import load_config
from chromaflow.training.train import make_hints, train


class FakeText:
    """Deterministic stand-in for the sentence encoder (no 2 s model load in tests)."""

    def encode(self, texts):
        out = np.zeros((len(texts), 384), np.float32)
        for i, t in enumerate(texts):
            out[i, sum(map(ord, t)) % 384] = 1.0
        return out


@pytest.fixture()
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = ["a_n01443537_goldfish.jpg", "b_n02084071_123_dog.jpg", "c_bsds_train_1.jpg", "d_pets_cats_cat.1.jpg",
             "a_n01440764_tench.jpg", "d_pets_dogs_dog.2.jpg"]
    for i, name in enumerate(names):
        img = np.zeros((80, 100, 3), np.uint8)
        img[:] = rng.integers(0, 255, 3)
        cv2.rectangle(img, (10 + i, 10), (60, 50 + i), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
        cv2.imwrite(str(folder / name), img)
    return folder


@pytest.fixture()
def fake_text(monkeypatch):
    import chromaflow.models.text as text_mod

    monkeypatch.setattr(text_mod, "shared_text_encoder", lambda: FakeText())


def test_subjects_and_captions():
    from pathlib import Path

    assert subject_of(Path("a_n01443537_great_white_shark.jpg")) == "great white shark"
    assert subject_of(Path("b_n00007846_147031_person.jpg")) == "person"
    assert subject_of(Path("d_pets_training_set_cats_cat.12.jpg")) == "cat"
    assert subject_of(Path("c_bsds_test_5.jpg")) == "scene"
    lab = np.array([[50, 60, 40], [50, 61, 41], [50, -5, -40]], np.float32)
    assert caption_for("apple", lab, np.array([0.5, 0.3, 0.2])) == "a photo of an apple, mostly red and blue"


def test_split_is_reproducible_and_disjoint(photos):
    files = sorted(photos.iterdir())
    a = split_photos(files, 0.34, seed=1)
    assert a == split_photos(files, 0.34, seed=1)
    assert len(a[1]) == 2 and not set(a[0]) & set(a[1])


def test_build_cache(photos, tmp_path):
    files = sorted(photos.iterdir())
    out = build_cache(files, tmp_path / "c", CacheSpec(crop_size=64, crops_per_photo=2), FakeText(), quiet=True)
    f8 = np.load(out / "f8.npy")
    assert f8.shape == (12, 40, 8, 8) and f8.dtype == np.float16
    assert np.load(out / "f32.npy").shape == (12, 320, 2, 2)
    ab = np.load(out / "ab.npy")
    assert ab.shape == (12, 2, 16, 16)
    assert np.abs(ab).max() > 5  # coloured photos
    caps = json.loads((out / "captions.json").read_text())
    assert np.load(out / "text.npy").shape == (len(caps), 384)
    assert any("goldfish" in c for c in caps)
    assert not list(out.glob("*.part"))
    with pytest.raises(ValueError):
        build_cache(files, tmp_path / "d", CacheSpec(crop_size=70), FakeText(), quiet=True)


def test_make_hints_modes():
    from chromaflow.training.config import DropConfig

    ab = torch.randn(64, 2, 16, 16) * 20
    hints, mask = make_hints(ab, DropConfig(), np.random.default_rng(0))
    share = mask.mean(dim=(1, 2, 3))
    assert (share == 0).any() and (share > 0.3).any() and ((share > 0) & (share < 0.3)).any()
    assert torch.equal(hints, ab * mask)


def write_config(tmp_path, photos, steps=4, kind="diffusion", seed=0):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f"""
[data]
photos = "{photos}"
cache_dir = "{tmp_path / 'cache'}"
val_fraction = 0.34
crops_per_photo = 2
crop_size = 64
[model]
widths = [8, 8, 16, 16]
emb_dim = 16
heads = 2
[train]
kind = "{kind}"
seed = {seed}
steps = {steps}
batch_size = 4
warmup = 2
threads = 1
log_every = 1
val_every = 2
checkpoint_every = 2
""")
    return cfg


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nkind = 'gan'\n")
    with pytest.raises(InputError, match="kind"):
        load_config(bad)
    bad.write_text("[train]\nstepz = 3\n")
    with pytest.raises(InputError, match="stepz"):
        load_config(bad)
    bad.write_text("[trian]\n")
    with pytest.raises(InputError, match="trian"):
        load_config(bad)
    bad.write_text("[train\n")
    with pytest.raises(InputError, match="TOML"):
        load_config(bad)
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_train_is_reproducible_and_resumes_exactly(photos, tmp_path, fake_text):
    cfg = load_config(write_config(tmp_path, photos, steps=4))
    full = train(cfg, tmp_path / "full", quiet=True, echo=lambda m: None)
    with pytest.raises(InputError, match="already holds"):
        train(cfg, tmp_path / "full", quiet=True, echo=lambda m: None)
    # the same run paused after 3 steps (between checkpoints) and resumed
    lines: list[str] = []
    part = tmp_path / "part"
    assert train(cfg, part, quiet=True, echo=lines.append, stop_at=3) is None
    assert not (part / "model.safetensors").exists()
    resumed = train(None, part, resume=True, quiet=True, echo=lines.append)
    assert any("paused at step 3" in m for m in lines) and any("resumed at step 3" in m for m in lines)
    a, _ = load_model(full)
    b, meta = load_model(resumed)
    assert meta["kind"] == "diffusion"
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    # a different seed gives different weights (the comparison above can fail)
    other = train(load_config(write_config(tmp_path, photos, steps=4, seed=1)), tmp_path / "seed1", quiet=True,
                  echo=lambda m: None)
    c, _ = load_model(other)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))
    log = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    assert any("val_ab_rmse" in line for line in log)
    assert (tmp_path / "full" / "train.log").read_text().count("validation at step") == 2


def test_regression_kind_trains(photos, tmp_path, fake_text):
    cfg = load_config(write_config(tmp_path, photos, steps=2, kind="regression"))
    path = train(cfg, tmp_path / "reg", quiet=True, echo=lambda m: None)
    _, meta = load_model(path)
    assert meta["kind"] == "regression"


def test_train_command_errors(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["train", str(tmp_path / "run")])
    assert r.exit_code == 2 and "--config" in r.output
    r = runner.invoke(app, ["train", str(tmp_path / "run"), "--resume"])
    assert r.exit_code == 2 and "nothing to resume" in r.output
    r = runner.invoke(app, ["train", str(tmp_path / "run"), "--config", str(tmp_path / "none.toml")])
    assert r.exit_code == 2 and "not found" in r.output


def test_cache_module_lists_photos(tmp_path):
    with pytest.raises(InputError):
        cache_mod.list_photos(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        cache_mod.list_photos(tmp_path / "empty")
