"""HyRES hybrid codec: bit-exact round trips, sections, checkerboard causality, rate knob, contract."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from codec import container, registry
from codec.errors import BitstreamError, ParameterError
from codec.hybrid import SECTION_NAMES, Config, HybridCodec, Model
from codec.hybrid.rate import RateGain

RESIDUAL_SECTIONS = SECTION_NAMES  # hyper, anchor, nonanchor


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def codec() -> HybridCodec:
    return HybridCodec(weights="random", config=Config.tiny(), device="cpu")


@pytest.fixture(scope="module")
def small(codec, photo):
    """One small coded image shared by the tests that only tamper with its bitstream."""
    return codec.encode(photo[:40, :56], base_quality=50, rate=0.3)


def _repack(bitstream: bytes, **changes) -> bytes:
    c = container.unpack(bitstream)
    return container.pack(dataclasses.replace(c, **changes))


# -- round trip -------------------------------------------------------------------------------
def test_coding_runs_on_one_thread_whatever_torch_is_set_to(codec, photo, monkeypatch):
    """Kernels split their sums by the thread count: coding on the caller's setting let a file
    encoded on one thread decode to garbage on two."""
    seen = []
    for name in ("compress", "decompress"):
        real = getattr(codec.model, name)
        monkeypatch.setattr(codec.model, name, lambda *a, _real=real, **k: (
            seen.append(torch.get_num_threads()), _real(*a, **k))[1])
    torch.set_num_threads(2)
    try:
        res = codec.encode(photo[:40, :56], base_quality=50, rate=0.3)
        assert torch.get_num_threads() == 2  # the caller's setting is left as it was
        back = codec.decode(res.bitstream)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert seen == [1, 1] and np.array_equal(back.image, res.image)


def test_post_filter_runs_on_one_blas_thread(codec, photo, monkeypatch):
    """OpenBLAS's threads spin while they wait: beside another busy process, the encoder's
    hundred small solves took 7 ms each on two threads instead of 27 µs on one."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from codec import postfilter

    def blas_threads() -> set[int]:
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    seen = []
    for name in ("choose", "apply"):
        real = getattr(postfilter, name)
        monkeypatch.setattr(postfilter, name, lambda *a, _real=real, _name=name, **k: (
            seen.append((_name, blas_threads())), _real(*a, **k))[1])
    with threadpool_limits(2, user_api="blas"):
        res = codec.encode(photo[:40, :56], base_quality=50, rate=0.3, postfilter="on")
        assert blas_threads() == {2}  # the caller's setting is left as it was
        codec.decode(res.bitstream)
    assert {name for name, _ in seen} == {"choose", "apply"}
    assert all(threads == {1} for _, threads in seen), seen


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (65, 33), (96, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_round_trip_is_bit_exact(codec, photo, size):
    h, w = size
    image = np.ascontiguousarray(photo[:h, :w])
    enc = codec.encode(image, base_quality=40, rate=0.7, refine="on")
    dec = codec.decode(enc.bitstream)
    assert dec.image.shape == (h, w, 3) and dec.image.dtype == np.uint8
    assert np.array_equal(dec.image, enc.image)
    for name in ("jpeg_base", "base_plus_residual", "refined", "reconstruction"):
        assert enc.intermediates[name].dtype == np.uint8 and enc.intermediates[name].shape == (h, w, 3)
        assert np.array_equal(dec.intermediates[name], enc.intermediates[name]), name
    assert np.array_equal(dec.intermediates["residual_decoded"], enc.intermediates["residual_decoded"])
    res = enc.intermediates["residual"]
    assert res.dtype == np.float32 and res.shape == (h, w, 3) and np.abs(res).max() <= 1
    assert np.allclose(res, (image / 255.0 - enc.intermediates["jpeg_base"] / 255.0), atol=1e-6)
    assert "residual" not in dec.intermediates  # the true residual exists on the encoder side only
    assert set(enc.sections) - {"postfilter"} == {"jpeg", *RESIDUAL_SECTIONS, "check"}
    assert dec.info["picture_check"] == "match"
    assert enc.info["weights"] == "random-init"
    assert enc.encode_ms > 0 and enc.decode_ms > 0


def test_registry_knows_hybrid_and_refuses_other_random_config(codec, photo):
    assert registry.entry("hybrid").codec_id == 2 and registry.entry("hybrid").learned
    enc = codec.encode(photo[:16, :16], base_quality=20, rate=0.1)
    # decode_bitstream builds the default config; the tiny random-init id must not match it.
    with pytest.raises(BitstreamError, match="configuration"):
        registry.decode_bitstream(enc.bitstream, device="cpu")


def test_bad_encode_parameters_raise(codec, photo):
    with pytest.raises(ParameterError):
        codec.encode(photo, rate=1.5)
    with pytest.raises(ParameterError):
        codec.encode(photo, rate=-1.5)
    with pytest.raises(ParameterError):
        codec.encode(photo, base_quality=0)
    with pytest.raises(ParameterError):
        codec.encode(photo, subsampling="4:1:1")


def test_sweep_points_walk_up_the_base_quality_over_the_knobs_range(codec):
    """The base quality never falls along the sweep and the pairs are distinct; the residual's
    rate follows the measured hull (at high base qualities the residual has little left to
    add), but the sweep starts at or below the knob's trained range and ends at its top."""
    points = codec.sweep_points()
    assert len(points) >= 6
    pairs = [(p["base_quality"], p["rate"]) for p in points]
    assert pairs == sorted(pairs) and len(set(pairs)) == len(pairs)
    assert pairs[0][1] <= 0.0 and pairs[-1][1] == 1.0


def test_sweep_follows_the_base_tables_it_is_held_at(codec):
    """Each table family has its own hull of (quality, rate) pairs; a sweep held at one
    family walks that family's hull, and held values replace the hull's without repeats."""
    from codec.hybrid.codec import DEFAULT_BASE_TABLES, SWEEPS

    assert SWEEPS["standard"] != SWEEPS["psnr"]
    for tables, hull in SWEEPS.items():
        points = codec.sweep_points({"base_tables": tables})
        assert [(p["base_quality"], p["rate"]) for p in points] == list(hull)
        assert {p["base_tables"] for p in points} == {tables}
    assert codec.sweep_points() == codec.sweep_points({"base_tables": DEFAULT_BASE_TABLES})
    at_half = codec.sweep_points({"rate": "0.5", "base_tables": "standard"})
    assert [p["base_quality"] for p in at_half] == list(dict.fromkeys(q for q, _ in SWEEPS["standard"]))
    assert {p["rate"] for p in at_half} == {0.5}
    with pytest.raises(ParameterError):
        codec.sweep_points({"base_tables": "nonsense"})


# -- sections ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wide_codec() -> HybridCodec:
    """A random-init codec with wide latent distributions and large latents, so that every
    section holds many non-zero symbols (an untrained model codes almost only zeros)."""
    codec = HybridCodec(weights="random", config=Config.tiny(), device="cpu")
    with torch.no_grad():
        codec.model.latent_codec["y"].entropy_parameters[-1].bias[: codec.config.M] = 4.0  # scales
        codec.model.rate_gain.log_gain0 += 3.0
    return codec


def test_each_section_carries_its_own_information(wide_codec, photo, rng):
    codec = wide_codec
    a = codec.encode(photo[:64, :64], base_quality=30, rate=0.5)
    assert np.array_equal(codec.decode(a.bitstream).image, a.image)
    noise = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    other = dict(codec.encode(noise, base_quality=5, rate=1.0).sections)
    # an untrained hyper analysis maps every image to the same z, so code a different z directly
    eb = codec.model.latent_codec["hyper"].entropy_bottleneck
    other["hyper"] = eb.compress(torch.full((1, codec.config.hyper_channels, 1, 1), 1.0))[0]
    ca = container.unpack(a.bitstream)
    decoded = 0
    for name in RESIDUAL_SECTIONS:
        assert other[name] != a.sections[name]
        swapped = dict(ca.sections)
        swapped[name] = other[name]
        try:  # verify=False: the picture check would refuse every swap, used section or not
            dec = codec.decode(_repack(a.bitstream, sections=swapped), verify=False)
        except BitstreamError:  # foreign symbols blew the decode up: the section was used
            continue
        assert not np.array_equal(dec.intermediates["residual_decoded"], a.intermediates["residual_decoded"]), name
        # the JPEG base never depends on the residual sections
        assert np.array_equal(dec.intermediates["jpeg_base"], a.intermediates["jpeg_base"])
        decoded += 1
    assert decoded >= 2  # most swaps decode (to another residual) rather than fail


@pytest.mark.parametrize("name", ["jpeg", *RESIDUAL_SECTIONS])
def test_corrupt_or_missing_section_fails_cleanly(codec, small, name):
    enc = small
    c = container.unpack(enc.bitstream)
    # a flipped payload byte is caught by the section CRC
    raw = bytearray(enc.bitstream)
    offset = len(enc.bitstream) - sum(len(p) for p in c.sections.values())
    for other, payload in c.sections.items():
        if other == name:
            raw[offset + len(payload) // 2] ^= 0x5A
            break
        offset += len(payload)
    with pytest.raises(BitstreamError, match=name):
        codec.decode(bytes(raw))
    # a missing section
    sections = {k: v for k, v in c.sections.items() if k != name}
    with pytest.raises(BitstreamError, match=name):
        codec.decode(_repack(enc.bitstream, sections=sections))
    # a section with a valid CRC but an impossible length
    sections = dict(c.sections)
    sections[name] = sections[name][:5]
    with pytest.raises(BitstreamError):
        codec.decode(_repack(enc.bitstream, sections=sections))


def test_sections_of_another_image_size_never_crash_the_decoder(codec, small, photo):
    big = codec.encode(photo, base_quality=50, rate=1.0)  # 96x128: more symbols than `small`
    for donor, target in ((small, big), (big, small)):
        for name in RESIDUAL_SECTIONS:
            sections = dict(container.unpack(target.bitstream).sections)
            sections[name] = donor.sections[name]
            try:  # shapes come from the header; the foreign string decodes to garbage or fails cleanly
                dec = codec.decode(_repack(target.bitstream, sections=sections), verify=False)
            except BitstreamError:
                continue
            assert dec.image.shape == target.image.shape


@pytest.mark.parametrize("params", [
    {"base_quality": 0, "rate": 0.5, "refine": True, "subsampling": "4:2:0"},
    {"base_quality": 30, "rate": 1.5, "refine": True, "subsampling": "4:2:0"},
    {"base_quality": 30, "rate": float("nan"), "refine": True, "subsampling": "4:2:0"},
    {"base_quality": 30, "rate": 0.5, "refine": True, "subsampling": "4:1:1"},
    {"base_quality": 30, "rate": 0.5, "refine": True, "subsampling": "4:2:0", "extra": 1},
])
def test_bad_parameters_in_bitstream_fail_cleanly(codec, small, params):
    enc = small
    with pytest.raises(BitstreamError):
        codec.decode(_repack(enc.bitstream, params=params))


def test_wrong_image_size_in_header_fails_cleanly(codec, small):
    enc = small
    assert np.array_equal(codec.decode(enc.bitstream).image, enc.image)
    with pytest.raises(BitstreamError):
        codec.decode(_repack(enc.bitstream, width=200, height=100))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 3e38])
@pytest.mark.parametrize("tensor", ["r_hat", "x_hat", "x_refined"])
def test_non_finite_reconstruction_is_a_bitstream_error(codec, photo, monkeypatch, tensor, bad):
    enc = codec.encode(photo[:64, :64], refine="on")
    decompress = codec.model.decompress

    def spoiled(*args, **kwargs):
        out = decompress(*args, **kwargs)
        out[tensor] = out[tensor].clone()
        out[tensor][0, 1, 2, 3] = bad
        if bad == 3e38:  # finite values, but so many near float32's limit that their sum is not
            out[tensor][0, 0] = bad
        return out

    monkeypatch.setattr(codec.model, "decompress", spoiled)
    with pytest.raises(BitstreamError, match="non-finite"):
        codec.decode(enc.bitstream)


# -- checkerboard -----------------------------------------------------------------------------
def _checkerboard(model):
    return model.latent_codec["y"]


def _anchor_mask(shape):
    h, w = shape[-2:]
    ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((ii + jj) % 2 == 0).expand(shape)  # anchor_parity "even"


def test_checkerboard_coding_anchor_parameters_ignore_non_anchors(codec):
    cb = _checkerboard(codec.model)
    m = codec.config.M
    g = torch.Generator().manual_seed(0)
    side = torch.randn(1, 2 * m, 8, 8, generator=g)
    y1 = torch.randn(1, m, 8, 8, generator=g) * 4
    anchors = _anchor_mask(y1.shape)
    y_non = torch.where(anchors, y1, y1 + 7.0)  # non-anchors changed
    y_anc = torch.where(anchors, y1 + 7.0, y1)  # anchors changed

    def params_of(y):
        seen = []
        hook = cb.entropy_parameters.register_forward_hook(lambda mod, i, o: seen.append(o.clone()))
        try:
            out = cb.compress(y, side)
        finally:
            hook.remove()
        assert len(seen) == 2  # one pass per half: each symbol coded once
        return seen, out

    (p1, o1), (p2, o2), (p3, o3) = params_of(y1), params_of(y_non), params_of(y_anc)
    assert torch.equal(p1[0], p2[0]) and o1["strings"][0] == o2["strings"][0]
    assert not torch.equal(p1[1], p2[1]) or o1["strings"][1] != o2["strings"][1]
    # and the test can fail: anchors do drive the non-anchor parameters
    assert torch.equal(p1[0], p3[0]) and not torch.equal(p1[1], p3[1])


def test_checkerboard_training_pass_is_causal():
    torch.manual_seed(0)
    model = Model(Config.tiny()).train()
    cb = _checkerboard(model)
    m = model.config.M
    y = (torch.randn(1, m, 8, 8) * 3).requires_grad_(True)
    side = torch.randn(1, 2 * m, 8, 8)
    lik = cb(y, side)["likelihoods"]["y"]
    anchors = _anchor_mask(y.shape)
    (grad_a,) = torch.autograd.grad(torch.log(lik)[anchors].sum(), y, retain_graph=True)
    assert torch.all(grad_a[~anchors] == 0) and grad_a[anchors].abs().sum() > 0
    (grad_n,) = torch.autograd.grad(torch.log(lik)[~anchors].sum(), y)
    assert grad_n[anchors].abs().sum() > 0  # non-anchors do see the anchors


def test_decoded_anchors_do_not_depend_on_nonanchor_section(wide_codec, photo):
    codec = wide_codec
    a = codec.encode(photo[:64, :64], rate=0.8)
    b = codec.encode(photo[32:96, 64:128], rate=0.8)
    assert a.sections["nonanchor"] != b.sections["nonanchor"]
    lc = codec.model.latent_codec
    shapes = codec.model.latent_shapes(64, 64)
    strings = lambda nonanchor: [[a.sections["anchor"]], [nonanchor], [a.sections["hyper"]]]  # noqa: E731
    with torch.no_grad():
        ya = lc.decompress(strings(a.sections["nonanchor"]), shapes)["y_hat"]
        yb = lc.decompress(strings(b.sections["nonanchor"]), shapes)["y_hat"]
    anchors = _anchor_mask(ya.shape)
    assert torch.equal(ya[anchors], yb[anchors])
    assert not torch.equal(ya[~anchors], yb[~anchors])


# -- refinement -------------------------------------------------------------------------------
def test_refine_off_is_base_plus_residual(codec, photo):
    image = photo[:48, :80]
    off = codec.encode(image, base_quality=25, rate=0.6, refine=False, postfilter="off")
    on = codec.encode(image, base_quality=25, rate=0.6, refine=True, postfilter="off")
    assert "refined" not in off.intermediates
    assert np.array_equal(off.image, off.intermediates["base_plus_residual"])
    base = off.intermediates["jpeg_base"].astype(np.float32) / np.float32(255.0)
    expected = np.round(np.clip(base + off.intermediates["residual_decoded"], 0, 1) * 255).astype(np.uint8)
    assert np.abs(expected.astype(int) - off.image.astype(int)).max() <= 1
    # the refiner is decoder-side only: the residual sections are the same bytes
    assert all(off.sections[k] == on.sections[k] for k in off.sections)
    # an untrained refiner is the identity (zero-initialised last convolution)
    assert np.array_equal(on.image, off.image)


# A filter that only adds a bias: 0.004 happens to lower this crop's error (kept), 0.05 raises it.
@pytest.mark.parametrize("bias,expected", [(0.0, "off"), (0.05, "off"), (0.004, "on")])
def test_refine_auto_keeps_the_filter_only_where_it_lowers_the_error(photo, bias, expected):
    codec = HybridCodec(weights="random", config=Config.tiny(), device="cpu")
    with torch.no_grad():
        codec.model.refine.tail.bias.fill_(bias)
    image = photo[:48, :64]
    coded = {r: codec.encode(image, base_quality=30, rate=0.5, refine=r, postfilter="off")
             for r in ("auto", "on", "off")}
    sse = {r: int(((coded[r].image.astype(int) - image) ** 2).sum()) for r in ("on", "off")}
    kept = "on" if sse["on"] < sse["off"] else "off"  # a tie (the identity filter) keeps it off
    auto = coded["auto"]
    assert auto.params["refine"] == kept and auto.bitstream == coded[kept].bitstream
    assert np.array_equal(auto.image, coded[kept].image)
    assert np.array_equal(codec.decode(auto.bitstream).image, auto.image)
    if kept == "off":  # what the filter would have given is still shown, under its own name
        assert np.array_equal(auto.intermediates["refined_discarded"], coded["on"].image)
    assert kept == expected  # both outcomes are exercised


# Both biases make the refined picture farther from the crop than base + residual; the
# post-filter takes the 0.05 one's bias out and, with base + residual as a guide, goes further.
@pytest.mark.parametrize("bias,expected", [(0.0, "off"), (0.05, "on")])
def test_refine_auto_compares_the_post_filtered_pictures(photo, bias, expected):
    from codec.hybrid.codec import _net_db

    codec = HybridCodec(weights="random", config=Config.tiny(), device="cpu")
    with torch.no_grad():
        codec.model.refine.tail.bias.fill_(bias)
    image = photo[:48, :64]
    settings = dict(base_quality=30, rate=0.5)
    assert codec.encode(image, **settings, postfilter="off").params["refine"] == "off"
    coded = {r: codec.encode(image, **settings, refine=r) for r in ("auto", "on", "off")}
    kept = "on" if _net_db(coded["on"], coded["off"], image) > 0 else "off"
    auto = coded["auto"]
    assert kept == expected and auto.params["refine"] == kept  # both outcomes are exercised
    assert auto.bitstream == coded[kept].bitstream and np.array_equal(auto.image, coded[kept].image)
    assert np.array_equal(codec.decode(auto.bitstream).image, auto.image)


def test_unquantized_depends_on_the_base_not_the_rate(codec, photo):
    image = photo[:40, :56]
    ceiling = codec.unquantized(image, base_quality=20, rate=0.1)
    assert ceiling.shape == image.shape and ceiling.dtype == np.uint8
    assert np.array_equal(ceiling, codec.unquantized(image, base_quality=20, rate=0.9))
    assert not np.array_equal(ceiling, codec.unquantized(image, base_quality=90))


# A bias-only filter: +0.004 happens to bring this crop's ceiling closer (kept), -0.004 not.
@pytest.mark.parametrize("bias,expected", [(-0.004, "off"), (0.004, "on")])
def test_unquantized_refines_as_refine_says(photo, bias, expected):
    codec = HybridCodec(weights="random", config=Config.tiny(), device="cpu")
    with torch.no_grad():
        codec.model.refine.tail.bias.fill_(bias)
    image = photo[:40, :56]
    ceiling = {r: codec.unquantized(image, base_quality=20, refine=r, postfilter="off") for r in ("auto", "on", "off")}
    sse = {r: int(((ceiling[r].astype(int) - image) ** 2).sum()) for r in ("on", "off")}
    assert ("on" if sse["on"] < sse["off"] else "off") == expected
    assert np.array_equal(ceiling["auto"], ceiling[expected])


def test_refine_reads_old_switch_spellings(codec):
    for given, want in ((True, "on"), (False, "off"), ("false", "off"), ("1", "on"), ("auto", "auto")):
        assert codec.resolve_params({"refine": given})["refine"] == want
    with pytest.raises(ParameterError, match="refine"):
        codec.resolve_params({"refine": "maybe"})


def test_refine_changes_the_image_once_trained(photo):
    codec = HybridCodec(weights="random", config=Config.tiny(), device="cpu")
    with torch.no_grad():
        codec.model.refine.tail.bias.fill_(0.05)
    off = codec.encode(photo[:32, :32], refine=False, postfilter="off")
    on = codec.encode(photo[:32, :32], refine=True, postfilter="off")
    assert not np.array_equal(on.image, off.image)
    assert np.array_equal(on.intermediates["base_plus_residual"], off.image)
    assert np.array_equal(codec.decode(on.bitstream).image, on.image)


def test_conditioned_refiner_starts_as_the_filter_it_loads_then_uses_base_and_rate(photo):
    plain = HybridCodec(weights="random", config=Config.tiny(), device="cpu")
    with torch.no_grad():
        plain.model.refine.tail.bias.fill_(0.05)
    cond = HybridCodec(weights="random", config=dataclasses.replace(Config.tiny(), refine_conditioned=True),
                       device="cpu")
    missing = cond.model.load_state_dict(plain.model.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith(("refine.head_base.", "refine.rate_film.")) for k in missing)
    image = photo[:32, :48]
    same = dict(base_quality=20, rate=0.4, refine="on", postfilter="off")
    assert np.array_equal(cond.encode(image, **same).image, plain.encode(image, **same).image)

    with torch.no_grad():
        cond.model.refine.tail.weight.normal_(0, 0.05)
        cond.model.refine.head_base.weight.normal_(0, 0.2)
        cond.model.refine.rate_film[-1].weight.normal_(0, 0.5)
    x, base = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    f = cond.model.refine
    with torch.no_grad():
        ref = f(x, base, torch.tensor([0.4]))
        assert not torch.equal(ref, f(x, torch.rand(1, 3, 16, 16), torch.tensor([0.4])))
        assert not torch.equal(ref, f(x, base, torch.tensor([-0.6])))
    with pytest.raises(ValueError, match="base= and rate="):
        f(x)
    coded = cond.encode(image, **same)
    assert np.array_equal(cond.decode(coded.bitstream).image, coded.image)
    # the ceiling tells the filter the finest knob, whatever rate the caller passes
    assert np.array_equal(cond.unquantized(image, base_quality=20, rate=-0.5, refine="on"),
                          cond.unquantized(image, base_quality=20, rate=0.9, refine="on"))


# -- rate knob --------------------------------------------------------------------------------
def test_gain_is_strictly_monotone_in_rate_for_any_parameters():
    torch.manual_seed(3)
    rg = RateGain(channels=5, points=4, span=4.0, lowest=-1.0)
    rates = torch.linspace(-1, 1, 41)
    for trial in range(3):
        if trial:  # arbitrary "trained" parameters keep the guarantee
            with torch.no_grad():
                for p in rg.parameters():
                    p.add_(torch.randn_like(p) * 3)
        gain, inverse = rg(rates)
        g = gain[:, :, 0, 0]
        assert torch.all(g[1:] > g[:-1]), "a larger rate must mean a larger gain on every channel"
        assert gain.shape == inverse.shape == (41, 5, 1, 1)


def test_below_zero_the_gains_extend_the_first_segment_and_leave_0_to_1_alone():
    torch.manual_seed(4)
    extended, clamped = RateGain(5, 4, 4.0, lowest=-1.0), RateGain(5, 4, 4.0)
    with torch.no_grad():
        for p in extended.parameters():
            p.add_(torch.randn_like(p))
    clamped.load_state_dict(extended.state_dict())
    inside = torch.linspace(0, 1, 11)
    for a, b in zip(extended(inside), clamped(inside)):
        assert torch.equal(a, b)  # files coded in [0, 1] decode as before the extension
    log_g = extended.log_gains()
    gain, inverse = extended(torch.tensor([-1.0, -2.0]))
    step = (log_g[1] - log_g[0]) * (extended.points - 1)
    assert torch.allclose(gain[0, :, 0, 0].log(), log_g[0] - step, atol=1e-5)
    assert torch.equal(gain[1], gain[0])  # clamped at the knob's lowest value
    assert torch.all(clamped(torch.tensor([-1.0]))[0] == clamped(torch.tensor([0.0]))[0])


def test_rate_knob_moves_the_residual_bytes(codec, photo):
    image = photo[:64, :96]
    lo = codec.encode(image, base_quality=30, rate=0.0)
    hi = codec.encode(image, base_quality=30, rate=1.0)
    assert lo.sections["jpeg"] == hi.sections["jpeg"]  # the two knobs are independent
    assert lo.sections["anchor"] != hi.sections["anchor"]
    lowest = codec.encode(image, base_quality=30, rate=-1.0)
    assert lowest.sections["anchor"] != lo.sections["anchor"]
    assert np.array_equal(codec.decode(lowest.bitstream).image, lowest.image)


def test_lambda_mapping(codec):
    model = codec.model
    lam = model.lambda_for_rate(torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(lam, torch.tensor([0.002, (0.002 * 0.045) ** 0.5, 0.045]), rtol=1e-5)
    for t in (0.0, 0.3, 1.0):
        assert abs(model.rate_for_lambda(float(model.lambda_for_rate(torch.tensor(t)))) - t) < 1e-5
    assert model.rate_for_lambda(1.0) == 1.0 and model.rate_for_lambda(1e-9) == -1.0
    # below 0, λ continues on its log-linear path
    assert float(model.lambda_for_rate(torch.tensor(-1.0))) == pytest.approx(0.002 * 0.002 / 0.045, rel=1e-5)
    assert abs(model.rate_for_lambda(float(model.lambda_for_rate(torch.tensor(-0.5)))) + 0.5) < 1e-5


# -- model contract ---------------------------------------------------------------------------
def test_forward_contract_and_gradients():
    torch.manual_seed(0)
    cfg = Config.tiny()
    model = Model(cfg).train()
    assert model.stride == 64
    x = torch.rand(2, 3, 64, 128)
    base = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    out = model(x, torch.tensor([0.1, 0.9]), base)
    assert {"x_hat", "x_refined", "likelihoods"} <= set(out)
    assert out["x_hat"].shape == out["x_refined"].shape == x.shape
    assert set(out["likelihoods"]) == {"y", "z"}
    bpp = sum(torch.log2(v).sum() for v in out["likelihoods"].values()) / (-2 * 64 * 128)
    lam = model.lambda_for_rate(torch.tensor([0.1, 0.9]))
    mse = ((out["x_refined"] - x) ** 2).mean(dim=(1, 2, 3))
    loss = (lam * 255**2 * mse).mean() + bpp
    loss.backward()
    for name in ("g_a.0.conv1.weight", "g_s.head.fuse.2.weight", "g_s.body.0.conv_a.0.conv.0.weight", "rate_gain.log_gain0", "rate_gain.raw_steps",
                 "rate_gain.inverse_correction", "latent_codec.y.context_prediction.weight",
                 "latent_codec.y.entropy_parameters.0.weight", "latent_codec.hyper.h_a.0.weight",
                 "latent_codec.hyper.h_s.6.weight", "latent_codec.hyper.entropy_bottleneck.matrices.0", "refine.tail.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert model.aux_loss().requires_grad
    with pytest.raises(ValueError):
        model(x, torch.tensor([0.5, 0.5]))
    without_refiner = model(x, torch.tensor([0.1, 0.9]), base, refine=False)
    assert "x_refined" not in without_refiner and without_refiner["x_hat"].shape == x.shape


def test_forward_survives_channels_last_batches():
    """Image batches built by permuting HWC arrays are channels-last; torch's CPU backward of a
    strided 1x1 convolution crashes on those, so the model must not hand them on."""
    torch.manual_seed(0)
    model = Model(Config.tiny()).train()
    x = torch.rand(2, 64, 64, 3).permute(0, 3, 1, 2)
    assert x.is_contiguous(memory_format=torch.channels_last)
    out = model(x, torch.rand(2), x.clamp(0.1, 0.9))
    (out["x_hat"].square().mean() + sum(-torch.log2(v).mean() for v in out["likelihoods"].values())).backward()
    assert model.g_a[0].skip.weight.grad is not None


def test_coding_runs_every_analysis_stage_channels_last():
    """Without gradients the analysis runs channels-last (about twice as fast on a CPU), its
    first, full-resolution stage too: torch.cat returns NCHW where an input's size-1 batch
    dimension has an unusual stride, so the joined residual and base must be converted after it."""
    model = Model(Config.tiny()).eval()
    model.update(force=True)
    assert model.config.base_side_info
    layouts = []
    for stage in model.g_a:
        stage.register_forward_pre_hook(
            lambda _, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    # As unsqueezing permuted HWC arrays makes them: channels-last, with a batch stride of 3.
    x, base = (torch.rand(64, 64, 3).permute(2, 0, 1).unsqueeze(0) for _ in range(2))
    assert base.stride(0) == 3 and base.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        model.compress(x, base, 0.5)
    assert layouts and all(layouts), layouts


def test_image_tensors_stay_channels_last_when_joined():
    from codec.learned import image_to_tensor

    image = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    x = image_to_tensor(image, "cpu")
    assert torch.equal(x[0], torch.from_numpy(image).permute(2, 0, 1).float() / 255.0)
    joined = torch.cat([x, x - 0.5], dim=1)
    assert joined.is_contiguous(memory_format=torch.channels_last)


def test_construction_is_deterministic_and_state_round_trips():
    cfg = Config.tiny()
    torch.manual_seed(7)
    a = Model(cfg)
    torch.manual_seed(7)
    b = Model(cfg)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    a.update(force=True)
    c = Model(cfg)
    c.load_state_dict(a.state_dict())  # resizes the CDF buffers
    assert torch.equal(c.latent_codec["hyper"].entropy_bottleneck._quantized_cdf,
                       a.latent_codec["hyper"].entropy_bottleneck._quantized_cdf)


def test_config_validation():
    with pytest.raises(ValueError):
        Config(rate_points=1)
    with pytest.raises(ValueError):
        Config(context_kernel=4)
    assert Config.tiny().N < Config().N


def test_eval_forward_matches_the_coded_bitstream(wide_codec, photo):
    """Training's model of coding is the coding: same reconstruction, and the estimated bits are
    the bytes written (a symbol coded twice, or a context the decoder lacks, would break this)."""
    codec = wide_codec
    image = np.ascontiguousarray(photo[:64, :128])
    enc = codec.encode(image, base_quality=20, rate=0.9, refine=False, postfilter="off")
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    base = torch.from_numpy(enc.intermediates["jpeg_base"]).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = codec.model(x, torch.tensor([0.9]), base)
    recon = np.round(out["x_hat"].clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert np.mean(recon == enc.image) > 0.99
    bits = {k: float(-torch.log2(v).sum()) for k, v in out["likelihoods"].items()}
    y_bytes = len(enc.sections["anchor"]) + len(enc.sections["nonanchor"])
    assert bits["y"] > 2000  # enough symbols for the comparison to mean something
    assert abs(8 * y_bytes - bits["y"]) < 0.05 * bits["y"] + 2 * 64
    assert abs(8 * len(enc.sections["hyper"]) - bits["z"]) < 0.05 * bits["z"] + 64
    # channel_bits spreads the same estimate of y over its channels
    per_channel = codec.channel_bits(image, base_quality=20, rate=0.9)
    assert per_channel.shape == (codec.config.M,)
    assert per_channel.sum() == pytest.approx(bits["y"], rel=1e-4)


def test_latent_refinement_is_encoder_only_deterministic_and_exact(wide_codec, photo):
    """The residual's latent refined for the image (``optimize``) codes as any other: the
    decoder needs nothing new, the encoder leaves the model (weights, eval mode) and torch's
    random state as they were, and one image gives one file."""
    img = photo[:40, :56]
    plain = wide_codec.encode(img, base_quality=30, rate=0.5)
    rng_before = torch.get_rng_state()
    weights_before = {k: v.clone() for k, v in wide_codec.model.state_dict().items()}
    refined = wide_codec.encode(img, base_quality=30, rate=0.5, optimize=2)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert all(torch.equal(v, weights_before[k]) for k, v in wide_codec.model.state_dict().items())
    assert not any(m.training for m in wide_codec.model.modules())
    assert refined.sections["jpeg"] == plain.sections["jpeg"]
    assert any(refined.sections[k] != plain.sections[k] for k in RESIDUAL_SECTIONS)  # the latent moved
    assert wide_codec.encode(img, base_quality=30, rate=0.5, optimize=2).bitstream == refined.bitstream
    assert np.array_equal(wide_codec.decode(refined.bitstream).image, refined.image)
    c = container.unpack(refined.bitstream)
    stripped = dataclasses.replace(c, params={k: v for k, v in c.params.items() if k != "optimize"})
    assert np.array_equal(wide_codec.decode(container.pack(stripped)).image, refined.image)


def test_base_scan_keeps_the_shorter_base_and_old_files_read_as_baseline(codec, photo):
    img = photo[:48, :64]
    # (the post-filter off: whether its taps pay depends on the file's size, which the scan changes)
    res = {s: codec.encode(img, base_quality=70, rate=0.3, base_scan=s, postfilter="off")
           for s in ("baseline", "progressive", "smallest")}
    assert codec.resolve_params({})["base_scan"] == "smallest"
    assert res["smallest"].sections["jpeg"] == min(res["baseline"].sections["jpeg"],
                                                   res["progressive"].sections["jpeg"], key=len)
    assert res["baseline"].sections["jpeg"] != res["progressive"].sections["jpeg"]
    # the same base picture, so the same residual and reconstruction
    assert all(np.array_equal(r.image, res["baseline"].image) for r in res.values())
    assert all(r.sections["anchor"] == res["baseline"].sections["anchor"] for r in res.values())
    c = container.unpack(res["baseline"].bitstream)
    old = container.pack(dataclasses.replace(c, params={k: v for k, v in c.params.items() if k != "base_scan"}))
    back = codec.decode(old)
    assert back.params["base_scan"] == "baseline" and np.array_equal(back.image, res["baseline"].image)


def test_base_tables_choose_the_jpeg_base_and_old_files_read_as_standard(codec, photo):
    import io

    from PIL import Image

    from codec.jpeg import complete, quant_tables

    img = photo[:40, :56]
    res = {t: codec.encode(img, base_quality=40, rate=0.3, base_tables=t) for t in ("psnr", "standard")}
    with Image.open(io.BytesIO(complete(res["psnr"].sections["jpeg"], 40, "psnr"))) as im:
        assert list(im.quantization[0]) == quant_tables(40)[0]
    assert res["psnr"].sections["jpeg"] != res["standard"].sections["jpeg"]
    assert codec.resolve_params({})["base_tables"] == "psnr"
    for tables, r in res.items():
        back = codec.decode(r.bitstream)
        assert back.params["base_tables"] == tables and np.array_equal(back.image, r.image)
    # a file from before the choice existed has no such key: its base used the standard tables
    c = container.unpack(res["standard"].bitstream)
    old = container.pack(dataclasses.replace(c, params={k: v for k, v in c.params.items() if k != "base_tables"}))
    back = codec.decode(old)
    assert back.params["base_tables"] == "standard" and np.array_equal(back.image, res["standard"].image)


def test_the_base_is_abbreviated_and_old_files_with_a_whole_jpeg_still_decode(codec, photo):
    from codec.jpeg import jpeg_decode, jpeg_encode

    img = photo[:48, :64]
    enc = codec.encode(img, base_quality=30, rate=0.3, base_scan="baseline")
    whole = jpeg_encode(img, 30, "4:2:0", "psnr", "baseline")
    section = enc.sections["jpeg"]
    # no JFIF marker and no quantisation tables: they follow from base_quality and base_tables
    assert b"JFIF" in whole and b"JFIF" not in section and b"\xff\xdb" not in section
    assert len(whole) - len(section) >= 150
    assert np.array_equal(enc.intermediates["jpeg_base"], jpeg_decode(whole, 64, 48))
    assert np.array_equal(codec.decode(enc.bitstream).image, enc.image)
    c = container.unpack(enc.bitstream)
    old = container.pack(dataclasses.replace(c, sections={**c.sections, "jpeg": whole}))
    assert np.array_equal(codec.decode(old).image, enc.image)


@pytest.mark.parametrize("channels", [1, 2, 3, 7, 16])
def test_refine_channel_max_is_amax(channels):
    from codec.hybrid.refine import _channel_max

    x = torch.randn(2, channels, 5, 6).contiguous(memory_format=torch.channels_last)
    assert torch.equal(_channel_max(x), x.amax(dim=1, keepdim=True))


def test_conditioned_refine_head_is_the_sum_of_its_two_convolutions():
    from codec.hybrid.refine import MultiScaleRefine

    torch.manual_seed(0)
    net = MultiScaleRefine(8, conditioned=True).double()
    for p in net.parameters():  # the zero-initialised parts too
        torch.nn.init.normal_(p, std=0.3)
    x, base = torch.rand(1, 3, 16, 24, dtype=torch.float64), torch.rand(1, 3, 16, 24, dtype=torch.float64)
    rate = torch.tensor([0.3], dtype=torch.float64)
    conv, act = net.head
    f = act(conv(x) + net.head_base(base - 0.5))
    scale, shift = net.rate_film(rate.reshape(-1, 1)).chunk(2, dim=1)
    f = f * (1 + scale[..., None, None]) + shift[..., None, None]
    half = net.branch_half(f)
    half = half + torch.nn.functional.interpolate(net.branch_quarter(half), size=half.shape[-2:], mode="bilinear")
    g = net.branch_full(f) + torch.nn.functional.interpolate(half, size=f.shape[-2:], mode="bilinear")
    g = net.channel_attention(g)
    pooled = torch.cat([g.mean(dim=1, keepdim=True), g.amax(dim=1, keepdim=True)], dim=1)
    expected = x + net.tail(g * torch.sigmoid(net.spatial_attention.conv(pooled)))
    torch.testing.assert_close(net(x, base, rate), expected, rtol=0, atol=1e-12)


def test_synthesis_head_in_strips_is_the_whole_picture_computed_at_once(monkeypatch):
    from codec.hybrid.transforms import BaseConditionedHead

    torch.manual_seed(0)
    head = BaseConditionedHead(8, 6).double()
    monkeypatch.setattr(BaseConditionedHead, "STRIP_ROWS", 10)  # strips that do not divide 58
    features, base = torch.randn(2, 8, 29, 20, dtype=torch.float64), torch.rand(2, 3, 58, 40, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(head(features, base), head._whole(features, base), rtol=0, atol=1e-12)


@pytest.mark.parametrize("conditioned", [False, True])
def test_refine_in_strips_is_the_whole_picture_computed_at_once(monkeypatch, conditioned):
    from codec.hybrid.refine import MultiScaleRefine

    torch.manual_seed(1)
    net = MultiScaleRefine(8, conditioned=conditioned).double()
    for p in net.parameters():  # the zero-initialised parts too
        torch.nn.init.normal_(p, std=0.3)
    monkeypatch.setattr(MultiScaleRefine, "STRIP_ROWS", 6)  # strips that do not divide 46
    x, base = torch.rand(2, 3, 46, 20, dtype=torch.float64), torch.rand(2, 3, 46, 20, dtype=torch.float64)
    rate = torch.tensor([0.3, -0.5], dtype=torch.float64)
    with torch.no_grad():
        strips = net(x, base, rate)
        film = net.rate_film(rate.reshape(-1, 1)).chunk(2, dim=1) if conditioned else None
        whole = net._whole(x.contiguous(memory_format=torch.channels_last),
                           base.contiguous(memory_format=torch.channels_last), film)
    torch.testing.assert_close(strips, whole, rtol=0, atol=1e-12)
