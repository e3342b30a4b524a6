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
    snapshot, _ = load_model(part / "model_step3.safetensors")  # the weights so far, usable as they are
    assert snapshot.config == cfg.model
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
    assert (tmp_path / "full" / "train.log").read_text().count("validation (photos) at step") == 2


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
    r = runner.invoke(app, ["train", str(tmp_path / "run"), "--resume", "--max-minutes", "-1"])
    assert r.exit_code == 2 and "max-minutes" in r.output


def test_cache_module_lists_photos(tmp_path):
    with pytest.raises(InputError):
        cache_mod.list_photos(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError):
        cache_mod.list_photos(tmp_path / "empty")


@pytest.fixture()
def frames(tmp_path):
    """Video frames of four clips named ``<source>_<clip>_<index>.jpg`` (and one ``_f<index>``)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for clip in ("davis16train_bear", "camvid_0006R0", "intel_walk", "cotracker_cat"):
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        for i in range(3):
            img = np.full((72, 96, 3), 90, np.uint8)
            cv2.circle(img, (30 + 5 * i, 36), 20, colour, -1)
            name = f"{clip}_f{i:05d}.jpg" if clip.startswith("camvid") else f"{clip}_{i:05d}.jpg"
            cv2.imwrite(str(folder / name), img)
    return folder


def test_frames_split_by_clip(frames):
    from pathlib import Path

    files = sorted(frames.iterdir())
    assert cache_mod.clip_of(Path("camvid_0006R0_f00960.jpg")) == "camvid_0006R0"
    assert cache_mod.clip_of(Path("davis16train_car-turn_00012.jpg")) == "davis16train_car-turn"
    assert subject_of(Path("davis16train_car-turn_00012.jpg")) == "car turn"
    assert subject_of(Path("camvid_0006R0_f00960.jpg")) == "street"
    train_, val = cache_mod.split_frames(files, 0.25, seed=0)
    assert (train_, val) == cache_mod.split_frames(files, 0.25, seed=0)
    clips_t = {cache_mod.clip_of(p) for p in train_}
    clips_v = {cache_mod.clip_of(p) for p in val}
    assert len(clips_v) == 1 and len(clips_t) == 3 and not clips_t & clips_v
    assert len(train_) + len(val) == len(files)


def test_bin_targets_prior_and_readout():
    from chromaflow.models.chroma_bins import annealed_mean, bin_centers, bin_prior, soft_targets

    n, step = 22, 10.0
    ab = torch.tensor([[[[3.0, -47.5]], [[61.2, 0.0]]]])  # (1, 2, 1, 2)
    q = soft_targets(ab, n, step)
    assert q.shape == (1, n * n, 1, 2) and torch.allclose(q.sum(1), torch.ones(1, 1, 2))
    centers = bin_centers(n, step)
    assert torch.allclose(torch.einsum("bqhw,qc->bchw", q, centers), ab, atol=1e-4)
    # the T = 1 read-out of the targets' log is their mean; lower T moves to the heaviest bin
    logits = torch.log(q + 1e-12)
    assert torch.allclose(annealed_mean(logits, n, step, temperature=1.0), ab, atol=1e-3)
    mode = centers[q[0, :, 0, 0].argmax()]
    assert torch.allclose(annealed_mean(logits, n, step, temperature=0.05)[0, :, 0, 0], mode, atol=0.5)
    # a bimodal red / green distribution reads out near gray at T = 1, vivid at low T when one side wins
    two = torch.full((1, n * n, 1, 1), -30.0)
    red = int(((centers - torch.tensor([55.0, 45.0])) ** 2).sum(1).argmin())
    green = int(((centers - torch.tensor([-55.0, 45.0])) ** 2).sum(1).argmin())
    two[0, red], two[0, green] = 0.0, 0.0
    assert abs(float(annealed_mean(two, n, step, 1.0)[0, 0])) < 1
    two[0, red] = 0.5
    assert float(annealed_mean(two, n, step, 0.1)[0, 0]) > 50
    # the prior: positive, sums to 1, heavier where the data are; dividing by it favours rare bins
    data = torch.zeros(4, 2, 8, 8)
    data[:, 0] = 2.0
    data[0, :, 0, 0] = torch.tensor([60.0, 40.0])
    p = bin_prior(data, n, step)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-5) and bool((p > 0).all())
    near_gray = int(((centers - torch.tensor([2.0, 0.0])) ** 2).sum(1).argmin())
    assert p[near_gray] > p[red] * 10
    mixed = torch.full((1, n * n, 1, 1), -30.0)
    mixed[0, near_gray], mixed[0, red] = 0.5, 0.0
    plain = annealed_mean(mixed, n, step, 1.0)
    rebalanced = annealed_mean(mixed, n, step, 1.0, prior=p, prior_power=0.5)
    assert float(rebalanced[0, 0]) > float(plain[0, 0]) + 5


def test_training_with_frames_bins_and_init(photos, frames, tmp_path, fake_text):
    cfg_path = write_config(tmp_path, photos, steps=2, kind="regression")
    text = cfg_path.read_text().replace("crop_size = 64", f'crop_size = 64\nframes = "{frames}"\n'
                                        "frames_val_fraction = 0.25\nframes_share = 0.5")
    text = text.replace("heads = 2", "heads = 2\nbins = 22")
    cfg_path.write_text(text)
    cfg = load_config(cfg_path)
    lines: list[str] = []
    path = train(cfg, tmp_path / "mixed", quiet=True, echo=lines.append)
    net, meta = load_model(path)
    assert net.config.bins == 22 and net.bin_prior.shape == (484,)
    assert float(net.bin_prior.sum()) == pytest.approx(1.0, abs=1e-2)
    log = "\n".join(lines)
    assert "validation (frames) at step 2" in log and "bins mean L1" in log
    assert "(shares 0.5, 0.5)" in log
    metrics = (tmp_path / "mixed" / "metrics.jsonl").read_text()
    assert "val_frames_ab_l1" in metrics and "val_bins_l1" in metrics
    # a run initialised from those weights starts from them (0 steps: the export is the initialisation)
    from dataclasses import replace

    lines.clear()
    start = train(replace(cfg, steps=0, init=str(path)), tmp_path / "init", quiet=True, echo=lines.append)
    again, _ = load_model(start)
    for (k, va), vb in zip(net.state_dict().items(), again.state_dict().values()):
        if k != "bin_prior":
            assert torch.equal(va, vb), k
    assert any("initialised from" in m for m in lines)


def test_unguided_readout_of_a_bin_head():
    """A regression network with a bin head reads out its annealed mean when nothing guides it."""
    from chromaflow.colorizers.chroma_model import ChromaModel, Guidance, ModelOptions
    from chromaflow.models.chroma_unet import ChromaUNet, ChromaUNetConfig
    from chromaflow.models.efficientnet import load_efficientnet_lite0

    torch.manual_seed(0)
    net = ChromaUNet(ChromaUNetConfig(widths=(8, 8, 16, 16), emb_dim=16, heads=2, bins=22))
    with torch.no_grad():
        net.out_bins.weight.normal_(0, 2.0)
    encoder = load_efficientnet_lite0(pretrained=False)
    light = np.tile(np.linspace(20, 80, 64, dtype=np.float32), (48, 1))[None]
    opts = ModelOptions(saturation=1.0, model_side=64, bin_readout=True)
    cold = ChromaModel(net, "regression", replace_temp(opts, 0.2), encoder=encoder).predict(light)
    warm = ChromaModel(net, "regression", replace_temp(opts, 1.0), encoder=encoder).predict(light)
    assert np.abs(cold).mean() > np.abs(warm).mean() + 0.5
    # the read-out off (the default): the regression head's output, whatever the temperature
    from dataclasses import replace

    off = replace(opts, bin_readout=False)
    head = ChromaModel(net, "regression", replace_temp(off, 0.2), encoder=encoder).predict(light)
    assert np.array_equal(head, ChromaModel(net, "regression", replace_temp(off, 1.0), encoder=encoder).predict(light))
    assert not np.allclose(head, cold, atol=0.5)
    # with a palette the network's regression output is used: the bin temperature changes nothing
    pal = Guidance(palette_lab=np.array([[50, 40, 20]], np.float32))
    a = ChromaModel(net, "regression", replace_temp(opts, 0.2), encoder=encoder).predict(light, pal)
    b = ChromaModel(net, "regression", replace_temp(opts, 1.0), encoder=encoder).predict(light, pal)
    assert np.array_equal(a, b)


def replace_temp(options, t):
    from dataclasses import replace

    return replace(options, bin_temperature=t)


def test_chroma_spread_and_its_deficit():
    from chromaflow.training.train import chroma_spread, spread_deficit

    flat = torch.zeros(1, 2, 4, 4)
    flat[:, 0] = 30.0  # one uniform colour: no spread, whatever the colour
    stripes = torch.zeros(1, 2, 4, 4)
    stripes[:, 0, :, :2], stripes[:, 0, :, 2:] = 10.0, -10.0
    assert float(chroma_spread(flat)[0]) == pytest.approx(0.0, abs=1e-3)
    assert float(chroma_spread(stripes)[0]) == pytest.approx(10.0, abs=1e-3)
    assert float(chroma_spread(2 * stripes)[0]) == pytest.approx(20.0, abs=1e-3)
    # the per-crop log MSE weighs a crop by the inverse of its error: halving the error of an accurate crop
    # lowers it as much as halving the error of an inaccurate one (a plain MSE would barely see the first)
    from chromaflow.training.train import crop_log_mse

    good, bad = stripes + 0.2, stripes + 2.0
    base = crop_log_mse(torch.cat([good, bad]), torch.cat([stripes, stripes]), floor=0.0)
    better_good = crop_log_mse(torch.cat([stripes + 0.1, bad]), torch.cat([stripes, stripes]), floor=0.0)
    better_bad = crop_log_mse(torch.cat([good, stripes + 1.0]), torch.cat([stripes, stripes]), floor=0.0)
    assert float(better_good) == pytest.approx(float(better_bad), abs=1e-5) and float(better_good) < float(base)
    # a prediction half as vivid as the truth falls short of 0.8 of it by 0.3 of it; a vivid one not at all
    assert float(spread_deficit(0.5 * stripes, stripes, 0.8)) == pytest.approx(3.0, abs=1e-3)
    assert float(spread_deficit(stripes, stripes, 0.8)) == 0.0
    assert float(spread_deficit(torch.cat([stripes, 0.5 * stripes]), torch.cat([stripes, stripes]), 0.8)) == (
        pytest.approx(1.5, abs=1e-3))


def test_regression_loss_options(photos, tmp_path, fake_text):
    """MSE and the spread term change the loss (and so the run); a bad loss name is refused."""
    from chromaflow.models.chroma_unet import ChromaUNet
    from chromaflow.training.train import CachedCrops, chroma_spread, prepare_caches, training_loss

    cfg = load_config(write_config(tmp_path, photos, steps=1, kind="regression"))
    caches = prepare_caches(cfg, lambda m: None)
    batch = CachedCrops(caches.photo_train).batch(np.arange(4))
    net = ChromaUNet(cfg.model)

    def loss(**kw):
        return training_loss(net, batch, "regression", cfg.drop, np.random.default_rng(0),
                             torch.Generator().manual_seed(0), **kw).item()

    l1, mse, log_mse = loss(), loss(loss="mse"), loss(loss="psnr")
    assert len({l1, mse, log_mse}) == 3
    assert loss(spread_loss=1.0, spread_target=1.0) == loss(spread_loss=1.0, spread_target=1.0)  # same seeds
    with torch.no_grad():  # a network that predicts gray everywhere: the term adds the truth's whole spread
        for p in net.parameters():
            p.zero_()
    gray_l1, gray_spread = loss(), loss(spread_loss=1.0, spread_target=1.0)
    truth = float(chroma_spread(batch["ab"] / 64.0).mean())
    assert truth > 0.01 and gray_spread == pytest.approx(gray_l1 + truth, abs=1e-3)
    bad = write_config(tmp_path, photos, steps=1, kind="regression")
    bad.write_text(bad.read_text().replace('kind = "regression"', 'kind = "regression"\nloss = "huber"'))
    with pytest.raises(InputError, match="train.loss"):
        load_config(bad)


def write_pack_config(tmp_path, photos, frames, pack, steps=3, workers=1):
    cfg = tmp_path / "pack.toml"
    cfg.write_text(f"""
[data]
photos = "{photos}"
frames = "{frames}"
val_fraction = 0.34
frames_val_fraction = 0.25
frames_share = 0.5
crop_size = 64
pack = "{pack}"
workers = {workers}
[model]
widths = [8, 8, 16, 16]
emb_dim = 16
heads = 2
[train]
kind = "regression"
loss = "psnr"
steps = {steps}
batch_size = 4
warmup = 1
threads = 1
log_every = 1
val_every = 2
checkpoint_every = 2
""")
    return cfg


def test_training_pack_built_read_and_trained_from(photos, frames, tmp_path, fake_text):
    from chromaflow.training.pack import Pack, PackSpec, build_pack, pack_size, packed_sources

    cfg = load_config(write_pack_config(tmp_path, photos, frames, tmp_path / "pack"))
    folder = build_pack(cfg.data, tmp_path / "pack", PackSpec(short_side=48, include_val=True), quiet=True)
    assert not (tmp_path / "pack.part").exists() and (folder / "encoder.safetensors").is_file()
    with pytest.raises(InputError, match="already exists"):
        build_pack(cfg.data, folder, quiet=True)
    pack = Pack(folder)
    # the cache's split: the same held-out photos and clips
    _, val = split_photos(cache_mod.list_photos(photos), 0.34, 0)
    assert sorted(pack.entries[i]["name"] for i in pack.select("photos", "val")) == [p.name for p in val]
    assert len(pack.select("frames", "val")) == 3 and len(pack.entries) == 6 + 12
    assert all(min(im.shape[:2]) == 48 for im in pack.images)  # shrunk to the short side (72 -> 48)
    assert pack_size(folder) > (folder / "images.bin").stat().st_size
    # without the validation images, and refusing a config split otherwise
    small = build_pack(cfg.data, tmp_path / "small", PackSpec(short_side=48), quiet=True, encoder_weights=False)
    assert {e["split"] for e in Pack(small).entries} == {"train"}
    from dataclasses import replace

    with pytest.raises(InputError, match="split with"):
        packed_sources(folder, replace(cfg.data, split_seed=3), torch.device("cpu"))
    sources, shares, vals = packed_sources(folder, cfg.data, torch.device("cpu"))
    assert shares == [0.5, 0.5] and set(vals) == {"photos", "frames"}
    b = sources[0].batch(np.array([0, 1, 1]), np.random.default_rng(5))
    assert [f.shape for f in b["feats"]] == [(3, 40, 8, 8), (3, 112, 4, 4), (3, 320, 2, 2)]
    assert b["lightness"].shape == (3, 1, 16, 16) and b["ab"].shape == (3, 2, 16, 16)
    assert b["palette"].shape == (3, 5, 3) and b["text"].shape == (3, 384)
    again = sources[0].batch(np.array([0, 1, 1]), np.random.default_rng(5))
    assert torch.equal(b["ab"], again["ab"]) and torch.equal(b["feats"][2], again["feats"][2])
    assert not torch.equal(b["ab"][1], b["ab"][2])  # two fresh random crops of the same image
    # threads cut the same crops
    threaded, _, _ = packed_sources(folder, replace(cfg.data, workers=3), torch.device("cpu"))
    c = threaded[0].batch(np.array([0, 1, 1]), np.random.default_rng(5))
    assert torch.equal(b["ab"], c["ab"]) and torch.equal(b["feats"][0], c["feats"][0])
    v1, v2 = vals["photos"].batch(np.array([0])), vals["photos"].batch(np.array([0]))
    assert torch.equal(v1["ab"], v2["ab"])  # validation: the centre crop

    # a run from the pack: reproducible, resumes exactly, pauses on a time limit
    full = train(cfg, tmp_path / "full", quiet=True, echo=lambda m: None)
    lines: list[str] = []
    assert train(cfg, tmp_path / "part", quiet=True, echo=lines.append, max_minutes=0) is None
    assert any("paused at step 0 (0 min used)" in m for m in lines)
    assert any("training pack" in m and "encoder on cpu" in m for m in lines)
    resumed = train(None, tmp_path / "part", resume=True, quiet=True, echo=lines.append)
    a, _ = load_model(full)
    r, _ = load_model(resumed)
    for (k, va), vb in zip(a.state_dict().items(), r.state_dict().values()):
        assert torch.equal(va, vb), k
    assert "val_frames_ab_rmse" in (tmp_path / "full" / "metrics.jsonl").read_text()


def test_training_device_and_pack_errors(photos, frames, tmp_path):
    from chromaflow.training.pack import PackSpec

    bad = write_pack_config(tmp_path, photos, frames, tmp_path / "pack")
    bad.write_text(bad.read_text().replace('kind = "regression"', 'kind = "regression"\ndevice = "gpu"'))
    with pytest.raises(InputError, match="train.device"):
        load_config(bad)
    with pytest.raises(InputError, match="format"):
        PackSpec(image_format="png")
    cfg = load_config(write_pack_config(tmp_path, photos, frames, tmp_path / "missing"))
    with pytest.raises(InputError, match="not a training pack"):
        train(cfg, tmp_path / "run", quiet=True, echo=lambda m: None)
    if not torch.cuda.is_available():
        from dataclasses import replace

        with pytest.raises(InputError, match="no CUDA device"):
            train(replace(cfg, device="cuda"), tmp_path / "run2", quiet=True, echo=lambda m: None)
        assert not (tmp_path / "run2").exists()  # refused before anything is written


def test_encoder_feature_weights_round_trip(tmp_path):
    from safetensors.torch import save_file

    from chromaflow.models.efficientnet import HEAD_PREFIXES, feature_state, load_efficientnet_lite0

    net = load_efficientnet_lite0(pretrained=False, seed=3)
    state = feature_state(net)
    assert state and not any(k.startswith(HEAD_PREFIXES) for k in state)
    save_file(state, str(tmp_path / "enc.safetensors"))
    back = load_efficientnet_lite0(pretrained=True, weights=tmp_path / "enc.safetensors")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(net(x), back(x)):  # float16 weights: close, not equal
            assert torch.allclose(a, b, rtol=0.02, atol=0.02 * float(a.abs().max()))
    save_file({"x": torch.zeros(2)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(InputError, match="not EfficientNet-Lite0"):
        load_efficientnet_lite0(pretrained=True, weights=tmp_path / "bad.safetensors")
