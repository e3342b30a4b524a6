"""The Stable Diffusion backends (``--colorizer sd``, ``--fill sd``) on a tiny random model built here.

The tiny model (:mod:`chromaflow.diffusion.tiny`) is written once per session
into a temporary folder; nothing is downloaded.  Its colours mean nothing:
these tests check the procedures (RePaint masking, the gray loss, joint and
regional attention) and the pipeline's promises (frames, audio, luminance,
determinism), not image quality.  Frames are 64 pixels (8x8 latents), and
torch runs on one thread here (restored after): the tiny networks' operations
last microseconds, so a second thread only adds waiting, which on a machine
busy with other work made this file about 14 times slower (170 s against 12 s).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers", reason="the Stable Diffusion backends need diffusers (pip install 'chromaflow[diffusers]')")

from conftest import N_FRAMES, audio_packets, gray_of, read_frames  # noqa: E402
from test_cli import assert_one_line_error, invoke  # noqa: E402

from chromaflow.color.lab import gray_to_lightness  # noqa: E402
from chromaflow.colorizers.sd import SDColorizer, SDColorizerOptions  # noqa: E402
from chromaflow.diffusion.attention import Regions  # noqa: E402
from chromaflow.diffusion.loading import load_parts  # noqa: E402
from chromaflow.diffusion.sampling import (  # noqa: E402
    decode_latents,
    encode_images,
    encode_prompts,
    gray_error,
    gray_step,
    luma,
    sample,
)
from chromaflow.diffusion.tiny import write_tiny_sd  # noqa: E402
from chromaflow.fill.sd import SDFill, SDFillOptions  # noqa: E402
from chromaflow.guidance.conditions import Conditions  # noqa: E402
from chromaflow.runtime import Runtime, RuntimeOptions  # noqa: E402

CPU = torch.device("cpu")
SIZE = 64  # pixels: an 8x8 latent


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)  # torch's threads are process-wide: leave them as they were


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    return write_tiny_sd(tmp_path_factory.mktemp("tiny_sd") / "sd")


@pytest.fixture(scope="session")
def tiny_inpaint_sd(tmp_path_factory) -> Path:
    return write_tiny_sd(tmp_path_factory.mktemp("tiny_sd") / "inpaint", controlnet=False, inpainting=True)


@pytest.fixture(scope="session")
def parts(tiny_sd: Path):
    return load_parts(str(tiny_sd), None, CPU, torch.float32)


@pytest.fixture(scope="session")
def control_parts(tiny_sd: Path):
    return load_parts(str(tiny_sd), str(tiny_sd / "controlnet"), CPU, torch.float32)


def _image(seed: int = 0, n: int = 1) -> torch.Tensor:
    """``(n, 3, SIZE, SIZE)`` smooth random colours in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return torch.nn.functional.interpolate(low, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


def _texts(parts):
    return encode_prompts(parts, ["a colorful photo"]), encode_prompts(parts, [""])


def _noise(seed: int, n: int = 1) -> torch.Tensor:
    return torch.randn(n, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(seed))


def test_repaint_known_region_follows_the_noised_known_latents(parts) -> None:
    rgb = _image(1)
    known = encode_images(parts, rgb)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :, :4] = 1.0  # the left half is known
    noise = _noise(2)
    cond, uncond = _texts(parts)
    seen = []
    out = sample(parts, cond, uncond, tuple(known.shape), torch.Generator().manual_seed(0), steps=5, guidance=3.0,
                 known=known, known_mask=mask, noise=noise, on_step=lambda i, t, x: seen.append((t, x.clone())))
    assert len(seen) == 5
    keep = mask.bool().expand_as(known)
    for t, x in seen[:-1]:
        expected = parts.scheduler.add_noise(known, noise, torch.tensor([t]))
        assert torch.equal(x[keep], expected[keep]), f"step t={t}"
        assert not torch.equal(x[~keep], expected[~keep])  # the unknown half is generated
    assert seen[-1][0] == -1 and torch.equal(out[keep], known[keep])
    # decoded, the known region is the known colours within the tiny VAE's own reconstruction error
    inner = (slice(None), slice(None), slice(8, SIZE - 8), slice(8, 24))  # away from the known region's edge
    with torch.no_grad():
        err_sample = (decode_latents(parts, out) - rgb)[inner].abs().mean()
        err_vae = (decode_latents(parts, known) - rgb)[inner].abs().mean()
    assert err_sample <= err_vae + 0.01, (float(err_sample), float(err_vae))


def test_one_gray_step_lowers_the_gray_error(parts) -> None:
    target = luma(_image(3))
    mask = torch.zeros_like(target)
    mask[..., :, SIZE // 2:] = 1.0  # the generated region
    x = _noise(4)
    cond, _ = _texts(parts)
    t = 600
    with torch.no_grad():
        eps = parts.unet(x, t, encoder_hidden_states=cond).sample
    a = parts.scheduler.alphas_cumprod[t]
    z0 = lambda lat: (lat - (1 - a).sqrt() * eps) / a.sqrt()  # noqa: E731
    with torch.no_grad():
        before = gray_error(parts, z0(x), target, mask)
        moved = gray_step(parts, x, eps, a, target, mask, weight=0.5)
        after = gray_error(parts, z0(moved), target, mask)
    assert float(after) < float(before)


def test_zero_gray_steps_is_plain_sampling(parts) -> None:
    cond, uncond = _texts(parts)
    noise = _noise(5)
    gray = luma(_image(6))
    kw = dict(steps=4, guidance=3.0, noise=noise, gray=gray)
    ours = sample(parts, cond, uncond, tuple(noise.shape), torch.Generator(), gray_steps=0, **kw)
    # plain DDIM with classifier-free guidance, written out
    sched = parts.scheduler
    sched.set_timesteps(4)
    x = noise.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            e_u, e_c = parts.unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample.chunk(2)
            x = sched.step(e_u + 3.0 * (e_c - e_u), t, x, eta=0.0).prev_sample
    assert torch.equal(ours, x)
    with_gray = sample(parts, cond, uncond, tuple(noise.shape), torch.Generator(), gray_steps=1, **kw)
    assert not torch.equal(with_gray, x)


def test_gray_loss_leaves_out_images_without_a_gray_mask(parts) -> None:
    # a joint call's colour source has an all-zero gray mask: it is not decoded, the others step as alone
    cond, uncond = _texts(parts)
    noise, gray = _noise(20, 2), luma(_image(21, 2))
    mask = torch.ones_like(gray)
    mask[1] = 0.0
    kw = dict(steps=3, guidance=3.0, gray_steps=1)
    both = sample(parts, cond, uncond, (2, 4, 8, 8), torch.Generator(), noise=noise, gray=gray, gray_mask=mask, **kw)
    alone = sample(parts, cond, uncond, (1, 4, 8, 8), torch.Generator(), noise=noise[:1], gray=gray[:1],
                   gray_mask=mask[:1], **kw)
    plain = sample(parts, cond, uncond, (2, 4, 8, 8), torch.Generator(), noise=noise, **kw)
    torch.testing.assert_close(both[:1], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[1:], plain[1:], atol=1e-5, rtol=1e-5)
    assert (both[:1] - plain[:1]).abs().max() > 1e-3  # the gray loss acted on the first


def test_controlnet_encodes_its_condition_once_per_call_exactly(control_parts, monkeypatch) -> None:
    from chromaflow.diffusion import sampling

    parts = control_parts
    cond, uncond = _texts(parts)
    noise, control = _noise(22), _image(23)
    kw = dict(steps=3, guidance=3.0, noise=noise, control=control)
    encoder = parts.controlnet.controlnet_cond_embedding
    calls = []
    hook = encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        once = sample(parts, cond, uncond, tuple(noise.shape), torch.Generator(), **kw)
    finally:
        hook.remove()
    assert len(calls) == 1 and parts.controlnet.controlnet_cond_embedding is encoder
    monkeypatch.setattr(sampling, "_control_encoded_once", lambda *_: contextlib.nullcontext())
    assert torch.equal(sample(parts, cond, uncond, tuple(noise.shape), torch.Generator(), **kw), once)
    no_control = sample(parts, cond, uncond, tuple(noise.shape), torch.Generator(), steps=3, guidance=3.0,
                        noise=noise)
    assert (once - no_control).abs().max() > 1e-4  # the condition matters


def test_known_latents_are_the_latents_of_the_images_with_known_cells(parts) -> None:
    from chromaflow.colorizers.sd import SDRunner

    runner = SDRunner(parts, SDColorizerOptions(resolution=SIZE), Runtime(RuntimeOptions(device="cpu")))
    rgb = _image(30, 3)
    known = torch.zeros(3, 1, SIZE, SIZE)
    known[1] = 1.0  # a colour source
    known[2, ..., :, :36] = 1.0  # the left 4 latent columns whole, the 5th partly
    latents, keep = runner.known_latents(rgb, known)
    assert not keep[0].any() and keep[1].all()
    assert keep[2, ..., :4].all() and not keep[2, ..., 4:].any()
    torch.testing.assert_close(latents[1:], encode_images(parts, rgb)[1:], atol=1e-5, rtol=1e-5)


def test_joint_attention_of_identical_keyframes_is_the_single_frame_result(control_parts) -> None:
    parts = control_parts
    cond, uncond = _texts(parts)
    noise = _noise(7)
    control = _image(8)
    kw = dict(steps=3, guidance=3.0, gray_steps=0)
    single = sample(parts, cond, uncond, (1, 4, 8, 8), torch.Generator(), noise=noise, control=control, **kw)
    joint = sample(parts, cond, uncond, (3, 4, 8, 8), torch.Generator(), noise=noise.repeat(3, 1, 1, 1),
                   control=control.repeat(3, 1, 1, 1), joint=True, **kw)
    for k in range(3):
        torch.testing.assert_close(joint[k:k + 1], single, atol=1e-5, rtol=1e-5)
    # different keyframes: jointly each depends on the other; switched off they are independent
    noises, controls = torch.cat([noise, _noise(9)]), torch.cat([control, _image(10)])
    other_n, other_c = torch.cat([noise, _noise(11)]), torch.cat([control, _image(12)])
    for joint_on in (True, False):
        a = sample(parts, cond, uncond, (2, 4, 8, 8), torch.Generator(), noise=noises, control=controls,
                   joint=joint_on, **kw)
        b = sample(parts, cond, uncond, (2, 4, 8, 8), torch.Generator(), noise=other_n, control=other_c,
                   joint=joint_on, **kw)
        if joint_on:
            assert (a[0] - b[0]).abs().max() > 1e-4
        else:
            torch.testing.assert_close(a[0], b[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(a[0:1], single, atol=1e-5, rtol=1e-5)


def test_regional_prompt_with_an_empty_mask_is_the_generic_prompt(parts) -> None:
    cond, uncond = _texts(parts)
    phrase = encode_prompts(parts, ["a red car"])
    noise = _noise(13)
    kw = dict(steps=3, guidance=3.0, noise=noise)
    plain = sample(parts, cond, uncond, tuple(noise.shape), torch.Generator(), **kw)
    empty = Regions(phrase, torch.zeros(1, 1, 8, 8), slice(0, 1))
    assert torch.equal(sample(parts, cond, uncond, tuple(noise.shape), torch.Generator(), regions=empty, **kw), plain)
    masks = torch.zeros(1, 1, 8, 8)
    masks[..., 2:6, 2:6] = 1.0
    inside = sample(parts, cond, uncond, tuple(noise.shape), torch.Generator(),
                    regions=Regions(phrase, masks, slice(0, 1)), **kw)
    assert (inside - plain)[..., 2:6, 2:6].abs().mean() > 1e-4


def _lightness(seed: int = 0, n: int = 1, h: int = 48, w: int = 72) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gray = np.clip(rng.normal(128, 40, (n, h // 8, w // 8)), 0, 255).astype(np.uint8)
    import cv2

    return np.stack([gray_to_lightness(cv2.resize(g, (w, h), interpolation=cv2.INTER_LINEAR)) for g in gray])


def test_fill_keeps_known_colours_and_fills_the_rest(tiny_sd: Path, tiny_inpaint_sd: Path) -> None:
    runtime = Runtime(RuntimeOptions(device="cpu"))
    L = _lightness(1)[0]
    ab = np.random.default_rng(2).uniform(-40, 40, (*L.shape, 2)).astype(np.float32)
    conf = np.zeros(L.shape, np.float32)
    conf[:, :36] = 1.0
    for folder in (tiny_sd, tiny_inpaint_sd):  # a base checkpoint and an inpainting one
        options = SDFillOptions(model=str(folder), resolution=SIZE, steps=3, gray_steps=1)
        from chromaflow.colorizers.sd import load_sd

        fill = SDFill(load_sd(options, runtime), options, runtime).for_conditions(Conditions(seed=3))
        out = fill.fill(L, ab, conf)
        assert out.shape == ab.shape and out.dtype == np.float32
        assert np.array_equal(out[:, :36], ab[:, :36])
        assert np.isfinite(out).all() and not np.array_equal(out[:, 36:], ab[:, 36:])
        assert np.array_equal(fill.fill(L, ab, conf), out)  # deterministic


def test_colorizer_reference_joins_and_known_colours_stay(control_parts) -> None:
    runtime = Runtime(RuntimeOptions(device="cpu"))
    options = SDColorizerOptions(resolution=SIZE, steps=3)
    col = SDColorizer(control_parts, options, runtime)
    L = _lightness(3, n=2)
    plain = col.colorize(L, [0, 10], Conditions(seed=1))
    assert plain.shape == (*L.shape, 2)
    from chromaflow.guidance.conditions import Reference

    ref = Reference((np.random.default_rng(4).uniform(0, 255, (40, 60, 3))).astype(np.uint8))
    guided = col.colorize(L, [0, 10], Conditions(seed=1, references=(ref,)))
    assert np.abs(guided - plain).mean() > 1e-3  # the reference is attended to
    known_ab = np.full((*L.shape, 2), 20.0, np.float32)
    known_conf = np.zeros(L.shape, np.float32)
    known_conf[:, :10, :10] = 1.0
    kept = col.colorize(L, [0, 10], Conditions(seed=1), (known_ab, known_conf))
    assert np.array_equal(kept[:, :10, :10], known_ab[:, :10, :10])


def _invoke_sd(clip: Path, out: Path, tiny_sd: Path, config: Path, *extra: str):
    return invoke("colorize", clip, "-o", out, "--colorizer", "sd", "--fill", "sd", "--sd-model", tiny_sd,
                  "--config", config, "--device", "cpu", "--seed", "5", *extra)


def test_sd_end_to_end_keeps_frames_audio_luminance_and_is_deterministic(clips, tiny_sd: Path, tmp_path: Path,
                                                                         monkeypatch) -> None:
    config = tmp_path / "sd.toml"
    # every keyframe coloured by the colorizer, and the fill asked wherever propagation is not near-certain
    # (a lossless output, so the gray can be compared level for level)
    config.write_text("[output]\nlossless = true\n[engine]\nderive_keyframes = false\ncorrection_threshold = 0.95\nmin_correction_fraction = 0.0\n"
                      "[colorizer.sd]\nresolution = 64\nsteps = 3\n"
                      "[fill.sd]\nresolution = 64\nsteps = 3\n")
    calls = {"fill": 0, "joint": 0}
    fill, colorize = SDFill.fill, SDColorizer.colorize

    def counting_fill(self, *a, **k):
        calls["fill"] += 1
        return fill(self, *a, **k)

    def counting_colorize(self, lightness, *a, **k):
        calls["joint"] = max(calls["joint"], len(lightness))
        return colorize(self, lightness, *a, **k)

    monkeypatch.setattr(SDFill, "fill", counting_fill)
    monkeypatch.setattr(SDColorizer, "colorize", counting_colorize)
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    r = _invoke_sd(clips.gray_audio_video, a, tiny_sd, config, "--controlnet", str(tiny_sd / "controlnet"))
    assert r.exit_code == 0, r.output
    assert calls["fill"] > 0 and calls["joint"] > 1  # the fill ran, keyframes were coloured together
    r = _invoke_sd(clips.gray_audio_video, b, tiny_sd, config, "--controlnet", str(tiny_sd / "controlnet"))
    assert r.exit_code == 0, r.output
    fa, fb, gray = read_frames(a), read_frames(b), read_frames(clips.gray_audio_video)
    assert len(fa) == N_FRAMES
    assert audio_packets(a) == audio_packets(clips.gray_audio_video)
    for f, g in zip(fa, gray):
        assert np.abs(gray_of(f).astype(int) - gray_of(g).astype(int)).max() <= 1
    assert float(np.mean([np.abs(f.astype(int) - f.mean(-1, keepdims=True)).mean() for f in fa])) > 0.5
    assert all(np.array_equal(x, y) for x, y in zip(fa, fb))
    stored = (a.parent / (a.name + ".chromaflow.toml")).read_text()
    assert "[colorizer.sd]" in stored and str(tiny_sd) in stored


def test_sd_flags_errors_are_one_line(clips, tmp_path: Path) -> None:
    out = tmp_path / "x.mp4"
    r = invoke("colorize", clips.gray_audio_video, "-o", out, "--sd-model", str(tmp_path))
    assert_one_line_error(r, "--colorizer sd")
    r = invoke("colorize", clips.gray_audio_video, "-o", out, "--colorizer", "sd", "--sd-model", str(tmp_path / "no"))
    assert_one_line_error(r, "no such folder")
    r = invoke("colorize", clips.gray_audio_video, "-o", out, "--colorizer", "sd", "--device", "cpu")
    assert_one_line_error(r, "--sd-model")
    assert not out.exists()


def test_colorizer_applies_an_object_phrase_inside_its_mask_only(parts) -> None:
    from chromaflow.guidance.grounding import GroundedObject, ObjectMatch
    from chromaflow.guidance.prompt import ColorPhrase

    runtime = Runtime(RuntimeOptions(device="cpu"))
    col = SDColorizer(parts, SDColorizerOptions(resolution=SIZE, steps=3, joint=False), runtime)
    L = _lightness(5)
    mask = np.zeros(L.shape[1:], np.float32)
    mask[8:40, 8:40] = 1.0

    def car(m):
        return (GroundedObject(ColorPhrase("red", np.array([200, 30, 30], np.uint8), "car"), ObjectMatch("car", (), ()),
                               m, 1.0, ()),)

    plain = col.colorize(L, [0], Conditions(seed=2))
    assert np.array_equal(col.colorize(L, [0], Conditions(seed=2), objects=[car(np.zeros_like(mask))]), plain)
    with_car = col.colorize(L, [0], Conditions(seed=2), objects=[car(mask)])
    assert np.abs(with_car - plain)[0, 8:40, 8:40].mean() > 1e-3
