"""The embedded model: network, sampler, inference runner, fill, weights (tiny random networks)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from chromaflow.colorizers.chroma_model import ChromaModel, Guidance, ModelColorizer, ModelOptions
from chromaflow.errors import InputError
from chromaflow.fill.model import ModelFill
from chromaflow.guidance.color_names import basic_color_name
from chromaflow.guidance.conditions import Conditions
from chromaflow.guidance.palette import parse_hex_list
from chromaflow.models.chroma_unet import ChromaUNet, ChromaUNetConfig
from chromaflow.models.weights import average_models, load_model, save_model
from chromaflow.samplers.ddim import DDIMSampler, SamplerOptions
from chromaflow.samplers.schedule import alpha_bar

TINY = ChromaUNetConfig(widths=(8, 8, 16, 16), emb_dim=16, heads=2)


def tiny_net(seed: int = 0) -> ChromaUNet:
    torch.manual_seed(seed)
    net = ChromaUNet(TINY)
    # zero-initialised output convs make a fresh network constant; give them weights
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    return net.eval()


@pytest.fixture(scope="module")
def encoder():
    from chromaflow.models.efficientnet import load_efficientnet_lite0

    return load_efficientnet_lite0(pretrained=False, seed=0)


def net_inputs(b: int, h: int = 16, w: int = 24, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        x_t=torch.randn(b, 2, h, w, generator=g),
        t=torch.rand(b, generator=g),
        lightness=torch.rand(b, 1, h, w, generator=g) * 100,
        hints=torch.randn(b, 2, h, w, generator=g) * 20,
        hint_mask=(torch.rand(b, 1, h, w, generator=g) < 0.1).float(),
        feats=(torch.randn(b, 40, h // 2, w // 2, generator=g), torch.randn(b, 112, h // 4, w // 4, generator=g),
               torch.randn(b, 320, h // 8, w // 8, generator=g)),
        palette=torch.rand(b, 5, 3, generator=g) * 60,
        palette_on=torch.tensor([True, False] * (b // 2) + [True] * (b % 2)),
        text=torch.randn(b, 384, generator=g),
        text_on=torch.tensor([False, True] * (b // 2) + [False] * (b % 2)),
    )


def test_network_shapes_and_dropped_conditions_are_ignored():
    net = tiny_net()
    inp = net_inputs(4)
    with torch.no_grad():
        out = net(**inp)
        assert out.shape == (4, 2, 16, 24)
        # a dropped palette/text must not influence the output
        changed = dict(inp, palette=inp["palette"] * 0 + 7, text=inp["text"] * 0 - 1)
        inp_off = dict(inp, palette_on=torch.zeros(4, dtype=torch.bool), text_on=torch.zeros(4, dtype=torch.bool))
        changed_off = dict(changed, palette_on=inp_off["palette_on"], text_on=inp_off["text_on"])
        assert torch.allclose(net(**inp_off), net(**changed_off), atol=1e-6)
        # ... while a present one does
        assert not torch.allclose(net(**inp), net(**changed), atol=1e-4)


def test_group_attention_joins_frames_only_within_a_group():
    net = tiny_net()
    inp = net_inputs(4)
    with torch.no_grad():
        alone = net(**inp, group=1)
        joint = net(**inp, group=2)
        # frame 0 alone equals frame 0 in a batch of independent frames
        single = {k: (tuple(f[:1] for f in v) if k == "feats" else v[:1]) for k, v in inp.items()}
        assert torch.allclose(net(**single), alone[:1], atol=1e-5)
        # joint colouring changes the result: frames now see each other
        assert not torch.allclose(joint, alone, atol=1e-5)
        # and groups do not leak into each other: perturbing frames 2-3 leaves frames 0-1 alone
        other = dict(inp, x_t=torch.cat([inp["x_t"][:2], inp["x_t"][2:] + 1]))
        assert torch.allclose(net(**other, group=2)[:2], joint[:2], atol=1e-5)
    with pytest.raises(ValueError):
        net(**inp, group=3)


def test_schedule_endpoints():
    a = alpha_bar(torch.tensor([0.0, 0.5, 1.0]))
    assert a[0] == pytest.approx(1.0)
    assert 0 < a[2] < 1e-3
    assert a[0] > a[1] > a[2]


def test_ddim_keeps_known_values_and_is_seeded():
    calls = []

    def denoise(x_t, t, pal_on, txt_on):
        calls.append(x_t.shape[0])
        return torch.tanh(x_t) * 0.5

    sampler = DDIMSampler(SamplerOptions(steps=5))
    known = torch.full((2, 2, 8, 8), 0.3)
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, :4] = 1
    a = sampler.sample(denoise, (2, 2, 8, 8), torch.Generator().manual_seed(1), known=known, known_mask=mask)
    b = sampler.sample(denoise, (2, 2, 8, 8), torch.Generator().manual_seed(1), known=known, known_mask=mask)
    c = sampler.sample(denoise, (2, 2, 8, 8), torch.Generator().manual_seed(2), known=known, known_mask=mask)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.all(a[:, :, :4] == 0.3)
    assert calls == [2] * 15  # 5 steps x 3 samples, one pass each without guidance


def test_guidance_is_compositional_and_batched():
    def denoise(x_t, t, pal_on, txt_on):
        return torch.zeros_like(x_t) + pal_on.float()[:, None, None, None] * 1.0 + txt_on.float()[:, None, None, None] * 10.0

    s = DDIMSampler(SamplerOptions(palette_guidance=2.0, text_guidance=3.0))
    x = torch.zeros(1, 2, 4, 4)
    t = torch.ones(1)
    assert float(s.guided(denoise, x, t, True, True)[0, 0, 0, 0]) == pytest.approx(2.0 + 30.0)
    assert float(s.guided(denoise, x, t, True, False)[0, 0, 0, 0]) == pytest.approx(2.0)
    assert float(s.guided(denoise, x, t, False, False)[0, 0, 0, 0]) == pytest.approx(0.0)


def test_sampler_options_are_checked():
    with pytest.raises(ValueError):
        SamplerOptions(steps=0)
    with pytest.raises(ValueError):
        SamplerOptions(temperature=0.0)


@pytest.mark.parametrize("kind", ["diffusion", "regression"])
def test_chroma_model_predict_shapes_determinism_and_hints(encoder, kind):
    model = ChromaModel(tiny_net(), kind, ModelOptions(model_side=64, sampler=SamplerOptions(steps=3)), encoder)
    rng = np.random.default_rng(0)
    light = rng.uniform(0, 100, (2, 45, 70)).astype(np.float32)
    g = Guidance(palette_lab=np.array([[50, 40, 20], [70, -20, 30]], np.float32), seed=3)
    a = model.predict(light, g)
    b = model.predict(light, g)
    assert a.shape == (2, 45, 70, 2) and a.dtype == np.float32
    assert np.array_equal(a, b)
    hint_ab = np.zeros((2, 45, 70, 2), np.float32)
    hint_ab[..., 0] = 25.0
    conf = np.zeros((2, 45, 70), np.float32)
    conf[:, 10:20, 10:30] = 1.0
    conf[:, 30:40, 40:60] = 0.5
    h = model.predict(light, g, hint_ab=hint_ab, hint_conf=conf)
    assert np.all(h[conf == 1.0] == hint_ab[conf == 1.0])
    assert not np.allclose(h[conf == 0.5], hint_ab[conf == 0.5])


def test_model_colorizer_and_fill(encoder):
    model = ChromaModel(tiny_net(), "diffusion", ModelOptions(model_side=64, sampler=SamplerOptions(steps=2)), encoder)
    light = np.random.default_rng(1).uniform(0, 100, (3, 40, 64)).astype(np.float32)
    pal = parse_hex_list("#ff0000,#00ff00")
    col = ModelColorizer(model)
    out = col.colorize(light, [0, 5, 9], Conditions(palette=pal, seed=4))
    assert out.shape == (3, 40, 64, 2)
    assert np.array_equal(out, col.colorize(light, [0, 5, 9], Conditions(palette=pal, seed=4)))
    ab = np.full((40, 64, 2), -12.0, np.float32)
    conf = np.zeros((40, 64), np.float32)
    conf[:, :20] = 1.0
    filled = ModelFill(model).fill(light[0], ab, conf)
    assert filled.shape == (40, 64, 2)
    assert np.all(filled[:, :20] == -12.0)


def test_weights_round_trip(tmp_path):
    net = tiny_net(3)
    path = tmp_path / "m.safetensors"
    save_model(net, path, kind="regression", extra={"steps": "7"})
    loaded, meta = load_model(path)
    assert meta["kind"] == "regression" and meta["steps"] == "7"
    assert loaded.config == TINY
    inp = net_inputs(2)
    with torch.no_grad():
        # float16 storage: close, not equal
        assert torch.allclose(net(**inp), loaded(**inp), atol=2e-2)
    assert not list(tmp_path.glob("*.part"))
    with pytest.raises(InputError):
        load_model(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    with pytest.raises(InputError):
        load_model(bad)


def test_average_models_is_the_weighted_mean_of_the_weights(tmp_path):
    a, b = tiny_net(3), tiny_net(4)
    save_model(a, tmp_path / "a.safetensors", kind="regression", extra={"steps": "5"})
    save_model(b, tmp_path / "b.safetensors", kind="regression")
    fa, _ = load_model(tmp_path / "a.safetensors")  # the stored (float16) values
    fb, _ = load_model(tmp_path / "b.safetensors")
    mean, meta = average_models([tmp_path / "a.safetensors", tmp_path / "b.safetensors"], [0.25, 0.75])
    assert meta["steps"] == "5" and mean.config == TINY
    for (k, va), vb, vm in zip(fa.state_dict().items(), fb.state_dict().values(), mean.state_dict().values()):
        assert torch.allclose(vm, 0.25 * va + 0.75 * vb, atol=1e-6), k
    assert any(not torch.equal(vm, va) for vm, va in zip(mean.state_dict().values(), fa.state_dict().values()))
    save_model(tiny_net(3), tmp_path / "d.safetensors", kind="diffusion")
    with pytest.raises(InputError, match="same network"):
        average_models([tmp_path / "a.safetensors", tmp_path / "d.safetensors"], [0.5, 0.5])
    with pytest.raises(InputError, match="add up"):
        average_models([tmp_path / "a.safetensors", tmp_path / "b.safetensors"], [0.5, 0.6])
    with pytest.raises(InputError, match="two weights files"):
        average_models([tmp_path / "a.safetensors"], [1.0])


@pytest.mark.parametrize(
    ("rgb", "name"),
    [((220, 20, 30), "red"), ((250, 140, 20), "orange"), ((240, 220, 40), "yellow"), ((30, 150, 40), "green"),
     ((30, 60, 200), "blue"), ((128, 0, 128), "purple"), ((250, 170, 190), "pink"), ((120, 70, 30), "brown"),
     ((10, 10, 10), "black"), ((128, 128, 128), "gray"), ((245, 245, 245), "white")],
)
def test_basic_color_names(rgb, name):
    from chromaflow.color.lab import rgb_to_lab

    assert basic_color_name(rgb_to_lab(np.array([[rgb]], np.uint8))[0, 0]) == name


def test_saturation_gain_scales_unguided_predictions_only(encoder):
    base = ModelOptions(model_side=64, saturation=1.0)
    plain = ChromaModel(tiny_net(), "regression", base, encoder)
    vivid = plain.with_options(ModelOptions(model_side=64, saturation=2.0))
    light = np.random.default_rng(2).uniform(0, 100, (1, 40, 64)).astype(np.float32)
    a, b = plain.predict(light), vivid.predict(light)
    np.testing.assert_allclose(b, 2.0 * a, rtol=1e-4, atol=1e-3)  # guided upsampling is linear in chroma
    # with hints or a palette the prediction is not scaled
    hint_ab = np.full((1, 40, 64, 2), 9.0, np.float32)
    conf = np.zeros((1, 40, 64), np.float32)
    conf[:, :, :32] = 1.0
    np.testing.assert_array_equal(vivid.predict(light, hint_ab=hint_ab, hint_conf=conf),
                                  plain.predict(light, hint_ab=hint_ab, hint_conf=conf))
    g = Guidance(palette_lab=np.array([[60.0, 30.0, 30.0]], np.float32))
    np.testing.assert_array_equal(vivid.predict(light, g), plain.predict(light, g))


def test_blend_with_the_regression_companion(encoder):
    opts = ModelOptions(model_side=64, saturation=1.0, sampler=SamplerOptions(steps=3))
    diff, reg = tiny_net(0), tiny_net(1)
    light = np.random.default_rng(3).uniform(0, 100, (2, 40, 64)).astype(np.float32)
    alone = ChromaModel(diff, "diffusion", opts, encoder).predict(light)
    regression = ChromaModel(reg, "regression", opts, encoder).predict(light)
    full = ChromaModel(diff, "diffusion", replace(opts, blend=1.0), encoder, companion=reg).predict(light)
    half = ChromaModel(diff, "diffusion", replace(opts, blend=0.5), encoder, companion=reg).predict(light)
    np.testing.assert_allclose(full, regression, atol=1e-4)
    np.testing.assert_allclose(half, 0.5 * (alone + regression), atol=1e-3)
    # guided predictions are the diffusion sample alone
    g = Guidance(palette_lab=np.array([[60.0, 30.0, 30.0]], np.float32), seed=1)
    np.testing.assert_array_equal(
        ChromaModel(diff, "diffusion", replace(opts, blend=1.0), encoder, companion=reg).predict(light, g),
        ChromaModel(diff, "diffusion", opts, encoder).predict(light, g),
    )
