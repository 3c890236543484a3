"""lic-train: data, losses, the loop, exact resume, signals, DDP, export and the manifest.

Tiny model configs on 64 px crops of a few scikit-image photographs written to a temporary
folder: every test runs in seconds on a CPU.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec import weights as W
from codec.errors import BitstreamError, ParameterError, WeightsError
from codec.jpeg import jpeg_decode, jpeg_encode
from codec.registry import decode_bitstream
from training import cli
from training.checkpoint import load_checkpoint
from training.config import MODES, RunConfig, apply_overrides, parse_overrides
from training.data import CropSampler, check_crop, find_images, load_images
from training.export import export_checkpoint, retire_weights, validate_manifest
from training.losses import RateDistortionLoss, ms_ssim_per_sample
from training.models import codec_class, codec_from_model, load_source, select_parameters
from training.trainer import Trainer, resume_config


def _tiny(codec: str) -> dict[str, str]:
    """``Config.tiny()`` of ``codec`` as ``--config`` overrides (the fields it changes)."""
    cls = codec_class(codec).config_class
    tiny, default = cls.tiny(), cls()
    out = {}
    for f in dataclasses.fields(cls):
        v = getattr(tiny, f.name)
        if v != getattr(default, f.name):
            out[f.name] = ",".join(map(str, v)) if isinstance(v, tuple) else str(v)
    return out


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A training folder (with a sub-folder) of three photographs and a validation folder."""
    from skimage import data

    root = tmp_path_factory.mktemp("images")
    (root / "train" / "sub").mkdir(parents=True)
    (root / "val").mkdir()
    photos = [data.astronaut()[:112, :144], data.coffee()[:96, :128], data.chelsea()[:128, :160]]
    for i, img in enumerate(photos):
        Image.fromarray(np.ascontiguousarray(img)).save(root / "train" / ("sub" if i == 2 else "") / f"p{i}.png")
    Image.fromarray(np.ascontiguousarray(data.astronaut()[200:264, 180:260])).save(root / "val" / "v.png")
    return root


@pytest.fixture
def weights_dir(tmp_path, monkeypatch):
    d = tmp_path / "weights"
    monkeypatch.setenv("LIC_WEIGHTS_DIR", str(d))
    return d


def _cfg(folders, out, mode="hybrid", **kw) -> RunConfig:
    base = dict(mode=mode, data=str(folders / "train"), out=str(out),
                model_config=_tiny(MODES[mode]), crop=64, batch=2, steps=4, lr=1e-3,
                warmup_steps=0, lr_decay_at=(), log_every=1, val_every=0, checkpoint_every_minutes=60)
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture(scope="module")
def hybrid_ckpt(folders, tmp_path_factory):
    """A hybrid run of a few steps: its last.ckpt (shared by refine and export tests)."""
    out = tmp_path_factory.mktemp("hybrid_run")
    Trainer(_cfg(folders, out, steps=3)).run()
    return out / "last.ckpt"


def test_a_run_on_a_pack_says_so_in_its_training_record(folders, tmp_path):
    import shutil

    from training.checkpoint import training_record
    from training.pack import PACK_INFO

    data = tmp_path / "pack"
    shutil.copytree(folders / "train", data)
    (data / PACK_INFO).write_text(json.dumps({"jpeg_quality": 95, "max_side": 768}))
    Trainer(_cfg(folders, tmp_path / "run", steps=1, data=str(data))).run()
    record = training_record(load_checkpoint(tmp_path / "run" / "last.ckpt"))
    assert record["data"] == str(data)
    assert record["data_pack"] == {"jpeg_quality": 95, "max_side": 768}
    (data / PACK_INFO).write_text("{not json")
    with pytest.raises(ParameterError, match="pack summary"):
        Trainer(_cfg(folders, tmp_path / "run2", steps=1, data=str(data)))


# -- config and data --------------------------------------------------------------------------
def test_config_overrides_parse_types_and_reject_unknown_fields():
    cls = codec_class("wavelet").config_class
    cfg = apply_overrides(cls, None, parse_overrides(["M=16", "use_adaptive_quant=false", "delta_init=1,2,2,3"]))
    assert cfg.M == 16 and cfg.use_adaptive_quant is False and cfg.delta_init == (1.0, 2.0, 2.0, 3.0)
    with pytest.raises(ParameterError, match="valid: .*use_adaptive_quant"):
        apply_overrides(cls, None, {"no_such_field": "1"})
    with pytest.raises(ParameterError, match="true/false"):
        apply_overrides(cls, None, {"use_adaptive_quant": "maybe"})
    with pytest.raises(ParameterError, match="key=value"):
        parse_overrides(["M16"])


def test_crop_must_be_a_multiple_of_the_stride(folders, tmp_path):
    check_crop(128, 64)
    for bad in (32, 96, 0):
        with pytest.raises(ParameterError, match="multiple of the model's stride 64"):
            check_crop(bad, 64)
    with pytest.raises(ParameterError, match="stride"):
        Trainer(_cfg(folders, tmp_path, crop=48))


def test_sampler_is_deterministic_resumable_and_codes_jpeg_bases(folders):
    images = load_images(find_images(folders / "train"))
    assert len(images) == 3  # the sub-folder is searched too
    s = CropSampler(images, 64, seed=5, base_quality=(20, 40))
    s.sample(2)
    state = s.state_dict()
    a = s.sample(3)
    s.load_state_dict(state)
    b = s.sample(3)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    assert a.images.shape == (3, 64, 64, 3) and a.images.dtype == np.uint8
    for k in range(3):
        assert 20 <= a.qualities[k] <= 40
        data = jpeg_encode(a.images[k], int(a.qualities[k]), "4:2:0")
        assert a.base_bits[k] == 8 * len(data)
        assert np.array_equal(a.bases[k], jpeg_decode(data, 64, 64))
    assert CropSampler(images, 64, seed=5).sample(2).bases is None
    # the base tables of the codec's default (psnr) when asked: its bases are those the codec codes
    p = CropSampler(images, 64, seed=5, base_quality=(20, 40), base_tables="psnr").sample(2)
    for k in range(2):
        data = jpeg_encode(p.images[k], int(p.qualities[k]), "4:2:0", "psnr")
        assert p.base_bits[k] == 8 * len(data) and np.array_equal(p.bases[k], jpeg_decode(data, 64, 64))


def _symmetries(patch: np.ndarray) -> list[np.ndarray]:
    turns = [np.rot90(patch, k) for k in range(4)]
    return turns + [t[:, ::-1] for t in turns]


@pytest.mark.parametrize("augment, expected", [("flip", {0, 4}), ("dihedral", set(range(8)))])
def test_sampler_augmentation_gives_the_crop_its_symmetries(augment, expected, tmp_path):
    # One image as large as the crop, so that every crop is the whole image, transformed.
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    symmetries = _symmetries(image)
    sampler = CropSampler([image], 64, seed=1, augment=augment)
    seen = set()
    for crop in sampler.sample(64).images:
        seen |= {k for k, s in enumerate(symmetries) if np.array_equal(crop, s)}
    assert seen == expected  # flip: identity and the left-right mirror (symmetry 4) only
    with pytest.raises(ParameterError, match="augmentation"):
        CropSampler([image], 64, seed=1, augment="rotate")
    args = cli.parse_args(["wavelet", "--data", "d", "--out", str(tmp_path), "--augment", augment])
    assert cli.run_config_from_args(args)[0].augment == augment
    with pytest.raises(ParameterError, match="--augment"):
        RunConfig(data="d", augment="rotate").validate()


def test_loss_counts_base_bits_and_ms_ssim_fits_small_crops():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    x_hat = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    lik = {"y": torch.full((2, 4, 4, 4), 0.5)}  # 64 bits per sample
    lam = torch.tensor([0.01, 0.02])
    plain = RateDistortionLoss()(x_hat, x, lik, lam)
    assert plain.bpp_latent.item() == pytest.approx(64 / 4096)
    with_base = RateDistortionLoss()(x_hat, x, lik, lam, base_bits=torch.tensor([4096.0, 8192.0]))
    assert with_base.bpp.item() == pytest.approx(64 / 4096 + 1.5)
    assert with_base.loss.item() == pytest.approx(plain.loss.item() + 1.5, rel=1e-5)
    s = ms_ssim_per_sample(x_hat, x)  # 64 px: three scales
    assert s.shape == (2,) and torch.all((s > 0) & (s < 1))
    from pytorch_msssim import ms_ssim

    big, noisy = torch.rand(1, 3, 176, 176), torch.rand(1, 3, 176, 176)
    noisy = (0.8 * big + 0.2 * noisy)
    assert ms_ssim_per_sample(noisy, big).item() == pytest.approx(
        ms_ssim(noisy, big, data_range=1.0).item(), abs=1e-5)  # five scales: the standard value
    half_rate = RateDistortionLoss()(x_hat, x, lik, lam, rate_weight=0.5)
    assert half_rate.loss.item() == pytest.approx(plain.loss.item() - 0.5 * 64 / 4096, rel=1e-5)
    distortion_only = RateDistortionLoss()(x_hat, x, lik, lam, rate_weight=None)
    assert distortion_only.loss.item() == pytest.approx(255 ** 2 * plain.mse.item(), rel=1e-4)
    with pytest.raises(ParameterError, match="nothing is downloaded"):
        RateDistortionLoss(vgg_weight=1.0)
    with pytest.raises(ParameterError, match="no such file"):
        RateDistortionLoss(vgg_weight=1.0, vgg_weights="/nonexistent/vgg16.pth")


def test_rate_warmup_ramps_the_rate_weight(tmp_path):
    cfg = RunConfig(mode="hybrid", data="x", rate_warmup_steps=100)
    assert [cfg.rate_weight(s) for s in (0, 25, 50, 75, 99, 100, 10_000)] == [0, 0, 0, 0.5, 0.98, 1, 1]
    assert RunConfig(mode="hybrid", data="x").rate_weight(0) == 1.0
    grown = RunConfig(mode="wavelet", data="x", widen_rate_warmup_steps=10)
    assert [grown.new_channel_rate_weight(s) for s in (0, 5, 8, 10)] == [0, 0, 0.6, 1]
    assert grown.rate_weight(0) == 1.0  # the old channels pay from the start
    with pytest.raises(ParameterError, match="rate-warmup-steps"):
        RunConfig(mode="hybrid", data="x", rate_warmup_steps=-1).validate()
    with pytest.raises(ParameterError, match="widen-rate-warmup-steps"):
        RunConfig(mode="wavelet", data="x", widen_rate_warmup_steps=-1).validate()
    args = cli.parse_args(["wavelet", "--data", "d", "--out", str(tmp_path), "--widen-rate-warmup-steps", "400"])
    assert cli.run_config_from_args(args)[0].widen_rate_warmup_steps == 400


def test_continuous_training_draws_the_knob_from_its_rate_range(folders, tmp_path, weights_dir):
    with pytest.raises(ParameterError, match="LO < HI"):
        RunConfig(mode="wavelet", data="x", rate_range=(0.5, 0.5)).validate()
    with pytest.raises(ParameterError, match="knob's range -1 to 1"):
        Trainer(_cfg(folders, tmp_path / "h", rate_range=(-1.5, 1.0)))
    args = cli.parse_args(["wavelet", "--data", "d", "--out", str(tmp_path), "--rate-range", "-0.25", "1"])
    assert cli.run_config_from_args(args)[0].rate_range == (-0.25, 1.0)

    trainer = Trainer(_cfg(folders, tmp_path / "w", mode="wavelet", steps=6, rate_range=(-0.25, 1.0)))
    drawn, knob_to_lambda = [], trainer.raw.lambda_for_rate
    trainer.raw.lambda_for_rate = lambda rate: drawn.append(rate.clone()) or knob_to_lambda(rate)
    trainer.run()
    drawn = torch.cat(drawn)
    assert len(drawn) == 12 and drawn.min() >= -0.25 and drawn.max() <= 1.0 and (drawn < 0).any()
    entry = export_checkpoint(tmp_path / "w" / "last.ckpt", "w-wide")
    assert entry["rate_range"] == [-0.25, 1.0] and entry["lambda_range"][0] < 0.002
    assert validate_manifest(weights_dir) == []


# -- training -----------------------------------------------------------------------------------
def _fixed_batch_loss(trainer: Trainer, batch, rate: float) -> float:
    """Deterministic loss (eval mode: rounded latents) of ``trainer``'s model on ``batch``."""
    from training.trainer import _to_tensor

    model = trainer.raw
    was = model.training
    model.eval()
    with torch.no_grad():
        x = _to_tensor(batch.images, trainer.device)
        kw = {"base": _to_tensor(batch.bases, trainer.device)} if batch.bases is not None else {}
        r = torch.full((x.shape[0],), rate)
        out = model(x, r, **kw)
        # The JPEG base's bits are a constant the model cannot lower: leave them out so the
        # check measures what training can change.
        loss = trainer.loss_fn(out["x_hat"], x, out["likelihoods"], model.lambda_for_rate(r), None).loss
    model.train(was)
    return float(loss)


@pytest.mark.parametrize("mode", ["hybrid", "wavelet"])
def test_a_few_dozen_steps_lower_the_loss(folders, tmp_path, mode):
    trainer = Trainer(_cfg(folders, tmp_path, mode=mode, steps=30, lr=2e-3, lambda_schedule=(0.01,)))
    held_out = CropSampler(load_images(find_images(folders / "train")), 64, seed=99,
                           base_quality=(30, 30) if mode == "hybrid" else None).sample(4)
    rate = trainer.raw.rate_for_lambda(0.01)
    before = _fixed_batch_loss(trainer, held_out, rate)
    result = trainer.run()
    after = _fixed_batch_loss(trainer, held_out, rate)
    assert result.step == 30 and result.reason == "done" and result.skipped_steps == 0
    assert after < 0.8 * before, (before, after)
    rows = (tmp_path / "train.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss,bpp") and len(rows) == 31


def test_refine_trains_only_the_post_filter_with_the_rest_in_eval_mode(folders, tmp_path, hybrid_ckpt,
                                                                       weights_dir):
    modes = []

    def spy(t: Trainer):
        modes.append((t.raw.training, t.raw.g_a.training, t.raw.refine.training))

    trainer = Trainer(_cfg(folders, tmp_path, mode="refine", init=str(hybrid_ckpt), steps=3), on_step=spy)
    start = load_checkpoint(hybrid_ckpt)["model"]
    trainer.run()
    end = trainer.raw.state_dict()
    assert modes == [(False, False, True)] * 3
    changed = {k for k in start if not torch.equal(start[k], end[k])}
    assert changed and all(k.startswith("refine.") for k in changed), sorted(changed)[:5]
    assert "checkpoint" in trainer.started_from
    assert [h["mode"] for h in trainer.history] == ["hybrid"] and trainer.history[0]["steps"] == 3
    entry = export_checkpoint(tmp_path / "last.ckpt", "refined", check=False)
    assert entry["training"]["mode"] == "refine" and entry["training"]["total_steps"] == 6


def test_joint_trains_the_residual_codec_and_the_filter_together(folders, tmp_path, hybrid_ckpt):
    modes = []
    trainer = Trainer(_cfg(folders, tmp_path, mode="joint", init=str(hybrid_ckpt), steps=2),
                      on_step=lambda t: modes.append((t.raw.g_a.training, t.raw.refine.training)))
    start = load_checkpoint(hybrid_ckpt)["model"]
    trainer.run()
    end = trainer.raw.state_dict()
    changed = {k.split(".")[0] for k in start if not torch.equal(start[k], end[k])}
    # the filter learns only through x_refined, the loss's picture
    assert {"refine", "g_a", "g_s"} <= changed, sorted(changed)
    assert modes == [(True, True)] * 2
    with pytest.raises(ParameterError, match="needs --init"):
        _cfg(folders, tmp_path / "x", mode="joint").validate()


def test_refine_from_carries_a_filter_over_to_another_main_model(folders, tmp_path, hybrid_ckpt):
    """A filter trained on one main model starts the filter run of a retrained one; both
    trainings stay in the record."""
    Trainer(_cfg(folders, tmp_path / "filter", mode="refine", init=str(hybrid_ckpt), steps=2)).run()
    Trainer(_cfg(folders, tmp_path / "main", init=str(hybrid_ckpt), steps=2)).run()
    filt, main = (load_checkpoint(tmp_path / d / "last.ckpt")["model"] for d in ("filter", "main"))
    trainer = Trainer(_cfg(folders, tmp_path / "both", mode="refine", init=str(tmp_path / "main" / "last.ckpt"),
                           refine_from=str(tmp_path / "filter" / "last.ckpt"), steps=1))
    now = trainer.raw.state_dict()
    assert all(torch.equal(now[k], (filt if k.startswith("refine.") else main)[k]) for k in now)
    assert any(not torch.equal(filt[k], main[k]) for k in now if k.startswith("refine."))
    assert "its refinement filter from checkpoint" in trainer.started_from
    assert [(h["mode"], h["steps"]) for h in trainer.history] == [("refine", 2), ("hybrid", 2), ("hybrid", 3)]

    Trainer(_cfg(folders, tmp_path / "wide", mode="refine", pretrain=str(hybrid_ckpt), steps=1,
                 model_config=dict(_tiny("hybrid"), refine_channels="6"))).run()
    with pytest.raises(WeightsError, match="refinement filter"):
        Trainer(_cfg(folders, tmp_path / "x", mode="refine", init=str(hybrid_ckpt),
                     refine_from=str(tmp_path / "wide" / "last.ckpt")))
    with pytest.raises(ParameterError, match="--refine-from"):
        _cfg(folders, tmp_path / "y", init=str(hybrid_ckpt), refine_from=str(hybrid_ckpt)).validate()

    # a grown filter (here conditioned) goes over to a main model that never had one
    grown = dict(_tiny("hybrid"), refine_conditioned="true")
    Trainer(_cfg(folders, tmp_path / "cond", mode="refine", pretrain=str(hybrid_ckpt), steps=1,
                 model_config=grown)).run()
    cond = load_checkpoint(tmp_path / "cond" / "last.ckpt")["model"]
    trainer = Trainer(_cfg(folders, tmp_path / "z", mode="refine", pretrain=str(tmp_path / "main" / "last.ckpt"),
                           refine_from=str(tmp_path / "cond" / "last.ckpt"), model_config=grown, steps=1))
    now = trainer.raw.state_dict()
    assert all(torch.equal(now[k], (cond if k.startswith("refine.") else main)[k]) for k in now)


@pytest.mark.parametrize("change", [{"refine_channels": "6"}, {"refine_conditioned": "true"}])
def test_refine_pretrain_grows_the_filter_and_keeps_the_main_model(folders, tmp_path, hybrid_ckpt, change):
    start = load_checkpoint(hybrid_ckpt)["model"]
    trainer = Trainer(_cfg(folders, tmp_path, mode="refine", pretrain=str(hybrid_ckpt),
                           model_config=dict(_tiny("hybrid"), **change), steps=2))
    trainer.run()
    end = trainer.raw.state_dict()
    if "refine_channels" in change:
        assert start["refine.head.0.weight"].shape[0] != 6 and end["refine.head.0.weight"].shape[0] == 6
    else:  # the base's head convolution starts at zero and learns
        assert "refine.head_base.weight" not in start and end["refine.head_base.weight"].abs().sum() > 0
    main = [k for k in start if not k.startswith("refine.")]
    assert main and all(torch.equal(start[k], end[k]) for k in main)
    assert "transfer" in trainer.started_from and trainer.history[0]["mode"] == "hybrid"


def test_nonfinite_step_is_skipped_not_fatal(folders, tmp_path):
    trainer = Trainer(_cfg(folders, tmp_path, mode="wavelet", steps=4))
    real = trainer.loss_fn.forward
    calls = {"n": 0}
    snapshots = {}

    def flaky(*a, **kw):
        calls["n"] += 1
        terms = real(*a, **kw)
        return terms._replace(loss=terms.loss * float("nan")) if calls["n"] == 2 else terms

    def spy(t):
        snapshots[t.step] = {k: v.clone() for k, v in t.raw.named_parameters() if k in t.main_names}

    trainer.loss_fn.forward = flaky
    trainer.on_step = spy
    result = trainer.run()
    assert result.step == 4 and result.skipped_steps == 1
    assert all(torch.equal(snapshots[1][k], snapshots[2][k]) for k in snapshots[1])  # step 2 skipped
    assert any(not torch.equal(snapshots[2][k], snapshots[3][k]) for k in snapshots[2])


def _stop_at(step):
    def hook(t: Trainer):
        if t.step == step:
            t.request_stop()
    return hook


def test_resume_after_interruption_continues_exactly(folders, tmp_path):
    straight = Trainer(_cfg(folders, tmp_path / "a", steps=6, warmup_steps=2, lr_decay_at=(0.5,)))
    straight.run()

    first = Trainer(_cfg(folders, tmp_path / "b", steps=6, warmup_steps=2, lr_decay_at=(0.5,)),
                    on_step=_stop_at(3))
    r1 = first.run()
    assert (r1.reason, r1.step) == ("stopped", 3)
    cfg, doc = resume_config(tmp_path / "b", {"max_minutes": 30.0})
    assert doc["step"] == 3 and cfg.max_minutes == 30.0
    second = Trainer(cfg, resume=doc)
    r2 = second.run()
    assert (r2.reason, r2.step) == ("done", 6)

    a, b = straight.raw.state_dict(), second.raw.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for oa, ob in ((straight.optimizer, second.optimizer), (straight.aux_optimizer, second.aux_optimizer)):
        sa, sb = oa.state_dict(), ob.state_dict()
        assert sa["param_groups"] == sb["param_groups"]
        for i in sa["state"]:
            for key in sa["state"][i]:
                assert torch.equal(torch.as_tensor(sa["state"][i][key]), torch.as_tensor(sb["state"][i][key]))
    assert straight.scheduler.state_dict() == second.scheduler.state_dict()
    steps = [int(line.split(",")[0]) for line in (tmp_path / "b" / "train.csv").read_text().splitlines()[1:]]
    assert steps == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ParameterError, match="cannot change on --resume"):
        resume_config(tmp_path / "b", {"crop": 128})


def test_validation_points_stay_in_the_trained_knob_range():
    from codec.wavelet.codec import Config, WaveletCodec
    from training.validate import validation_points

    codec = WaveletCodec(weights="random", config=Config.tiny(), device="cpu")
    rates = {r: [p["rate"] for p in validation_points(codec, 3, knob_range=r)] for r in ((0.0, 1.0), (-0.25, 1.0))}
    # the default range keeps the points of the logs written before the sweep reached below 0
    assert rates[(0.0, 1.0)] == [0.0, 0.6, 1.0]
    assert rates[(-0.25, 1.0)][0] == -0.25 and rates[(-0.25, 1.0)][-1] == 1.0
    assert min(p["rate"] for p in validation_points(codec, 3)) == -0.5
    assert all(p["postfilter"] == "off" for p in validation_points(codec, 3))


def test_validation_codes_the_base_the_run_trains_on():
    from codec.hybrid import Config, HybridCodec
    from codec.hybrid.codec import SWEEPS
    from training.validate import validation_points

    codec = HybridCodec(weights="random", config=Config.tiny(), device="cpu")
    points = validation_points(codec, 8, fixed={"base_tables": "standard", "subsampling": "4:4:4"})
    assert [(p["base_quality"], p["rate"]) for p in points] == list(SWEEPS["standard"])
    assert all(p["base_tables"] == "standard" and p["subsampling"] == "4:4:4" for p in points)


def test_validation_does_not_perturb_training(folders, tmp_path):
    quiet = Trainer(_cfg(folders, tmp_path / "a", mode="wavelet", steps=3))
    quiet.run()
    checked = Trainer(_cfg(folders, tmp_path / "b", mode="wavelet", steps=3, val=str(folders / "val"),
                           val_every=1, val_images=1, val_points=2))
    checked.run()
    a, b = quiet.raw.state_dict(), checked.raw.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = (tmp_path / "b" / "val.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 2 * 2  # 3 validations x 2 points x (image + mean)
    assert checked.validation["step"] == 3 and len(checked.validation["points"]) == 2
    # The post-filter is fitted per image outside the model: validation leaves it off.
    assert all(p["params"]["postfilter"] == "off" for p in checked.validation["points"])


def test_weight_average_ramps_swaps_in_and_out_and_saves():
    from training.average import WeightAverage

    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(0.0)
    avg = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(10.0)
    avg.update(model)  # the ramp's first decay is min(0.5, 1/10) = 0.1
    assert avg.state["weight"].flatten().tolist() == pytest.approx([9.0, 9.0])
    for _ in range(20):
        avg.update(model)
    assert avg.current_decay() == 0.5 and avg.state["weight"][0, 0].item() == pytest.approx(10.0, abs=1e-5)
    with torch.no_grad():
        model.weight.fill_(-1.0)
    with avg.applied(model):
        assert model.weight[0, 0].item() == pytest.approx(10.0, abs=1e-5)
    assert model.weight[0, 0].item() == -1.0
    again = WeightAverage(torch.nn.Linear(2, 1), decay=0.5)
    again.load_state_dict(avg.state_dict())
    assert again.updates == 21 and torch.equal(again.state["weight"], avg.state["weight"])
    with pytest.raises(KeyError, match="lacks"):
        WeightAverage(torch.nn.Linear(2, 2, bias=True), 0.5).load_state_dict({"state": {}, "updates": 1})
    with pytest.raises(ValueError):
        WeightAverage(model, decay=1.0)


def test_ema_leaves_training_alone_and_is_what_validation_and_export_see(folders, tmp_path, weights_dir):
    plain = Trainer(_cfg(folders, tmp_path / "plain", mode="wavelet", steps=4))
    plain.run()
    # Switched on when resuming: the same optimisation, plus an average from step 2 on.
    Trainer(_cfg(folders, tmp_path / "avg", mode="wavelet", steps=4), on_step=_stop_at(2)).run()
    cfg, doc = resume_config(tmp_path / "avg", {"ema": 0.9, "val": str(folders / "val"), "val_images": 1,
                                                "val_points": 1})
    averaged = Trainer(cfg, resume=doc)
    averaged.run()
    a, b = plain.raw.state_dict(), averaged.raw.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert averaged.average.updates == 2 and averaged.validation["weights"] == "average (ema 0.9)"

    ck = load_checkpoint(tmp_path / "avg" / "last.ckpt")
    key = next(k for k, v in ck["model"].items() if v.is_floating_point() and v.numel() > 1)
    assert ck["ema"]["updates"] == 2 and not torch.equal(ck["ema"]["state"][key], ck["model"][key])
    mean = export_checkpoint(tmp_path / "avg" / "last.ckpt", "mean")
    last = export_checkpoint(tmp_path / "avg" / "last.ckpt", "last", averaged=False)
    assert mean["training"]["ema"] == {"decay": 0.9, "updates": 2}
    assert (mean["training"]["exported"], last["training"]["exported"]) == ("moving average", "last step")
    assert "validation" in mean["results"] and "validation" not in last["results"]
    stored = {n: torch.load(weights_dir / f"{n}.pt", weights_only=True)["state_dict"][key] for n in ("mean", "last")}
    assert torch.equal(stored["mean"], ck["ema"]["state"][key]) and torch.equal(stored["last"], ck["model"][key])
    assert torch.equal(load_source(tmp_path / "avg" / "last.ckpt").state_dict[key], ck["ema"]["state"][key])
    assert "averaged" in load_source(tmp_path / "avg" / "last.ckpt").description

    # A resumed run continues the saved average rather than starting another.
    cfg, doc = resume_config(tmp_path / "avg", {"steps": 5})
    more = Trainer(cfg, resume=doc)
    assert more.average.updates == 2
    more.run()
    assert more.average.updates == 3
    with pytest.raises(ParameterError, match="--ema"):
        Trainer(_cfg(folders, tmp_path / "bad", mode="wavelet", ema=1.0))


def test_sigterm_checkpoints_and_restores_handlers(folders, tmp_path):
    def send(t: Trainer):
        if t.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    result = Trainer(_cfg(folders, tmp_path, mode="wavelet", steps=10), on_step=send).run()
    assert (result.reason, result.step) == ("signal", 2)
    assert load_checkpoint(tmp_path / "last.ckpt")["step"] == 2
    assert signal.getsignal(signal.SIGTERM) is before


def test_wavelet_transfer_recipe_freezes_then_fine_tunes(folders, tmp_path):
    Trainer(_cfg(folders, tmp_path / "pre", mode="wavelet", steps=2)).run()
    pre = tmp_path / "pre" / "last.ckpt"
    snaps = {}

    def spy(t: Trainer):
        snaps[t.step] = {k: v.detach().clone() for k, v in t.raw.named_parameters()}

    trainer = Trainer(_cfg(folders, tmp_path / "ft", mode="wavelet", steps=4, pretrain=str(pre),
                           freeze_except=("ll_context", "gate"), freeze_steps=2), on_step=spy)
    start = load_checkpoint(pre)["model"]
    trainer.run()
    moved = {k for k in snaps[2] if not torch.equal(snaps[2][k], start[k])}
    assert moved and all(k.split(".")[0] in ("ll_context", "gate") or k.endswith("quantiles") for k in moved)
    assert not torch.equal(snaps[4]["g_a.0.weight"], start["g_a.0.weight"])  # then everything trains
    with pytest.raises(ParameterError, match="sub-modules: .*ll_context"):
        select_parameters(trainer.raw, ["freq_attention_typo"])
    assert select_parameters(trainer.raw, ["bands.*.attn"])


def test_init_from_a_narrower_latent_grows_it(folders, tmp_path):
    Trainer(_cfg(folders, tmp_path / "narrow", mode="wavelet", steps=1)).run()
    narrow = tmp_path / "narrow" / "last.ckpt"
    wide_config = {**_tiny("wavelet"), "M": "16"}
    trainer = Trainer(_cfg(folders, tmp_path / "wide", mode="wavelet", steps=1, init=str(narrow),
                           model_config=wide_config))
    assert trainer.model_config.M == 16
    assert trainer.started_from.endswith("grown from M=8 → M=16")
    trainer.run()
    assert load_checkpoint(tmp_path / "wide" / "last.ckpt")["model_config"]["M"] == 16
    # anything but a wider latent still has to fit exactly
    with pytest.raises(WeightsError, match="only M can grow"):
        Trainer(_cfg(folders, tmp_path / "other", mode="wavelet", init=str(narrow),
                     model_config={**wide_config, "N": "12"}))
    # an override that leaves the shapes alone loads the weights as they are
    same = Trainer(_cfg(folders, tmp_path / "lam", mode="wavelet", init=str(narrow),
                        model_config={**_tiny("wavelet"), "lambda_max": "0.05"}))
    assert same.model_config.lambda_max == 0.05 and "grown" not in same.started_from
    assert same.new_channels is None


def test_a_grown_runs_new_channels_start_without_their_rate(folders, tmp_path):
    from codec.wavelet.widen import new_channels

    Trainer(_cfg(folders, tmp_path / "narrow", mode="wavelet", steps=1)).run()
    narrow = tmp_path / "narrow" / "last.ckpt"
    wide_config = {**_tiny("wavelet"), "M": "16"}

    def first_step_bpp(out, warmup):
        t = Trainer(_cfg(folders, out, mode="wavelet", steps=1, init=str(narrow),
                         model_config=wide_config, widen_rate_warmup_steps=warmup))
        t.run()
        with open(out / "train.csv") as f:
            return t, float(next(csv.DictReader(f))["bpp"])

    grown, warm_bpp = first_step_bpp(tmp_path / "warm", 4)
    cls = codec_class("wavelet").config_class
    expected = new_channels(cls.tiny(M=8), cls.tiny(M=16))
    assert torch.equal(grown.new_channels, expected) and int(expected.sum()) == 8
    _, cold_bpp = first_step_bpp(tmp_path / "cold", 0)
    assert warm_bpp < cold_bpp  # same data, same weights: the first step counts the old channels' bits only
    # the mask survives a resume, so the ramp goes on where it stopped
    cfg, doc = resume_config(tmp_path / "warm", {"steps": 2})
    assert torch.equal(Trainer(cfg, resume=doc).new_channels, expected)


def _ddp_worker(rank: int, world: int, port: int, cfg_dict: dict, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from training.dist import init_distributed

    dist = init_distributed("cpu")
    try:
        trainer = Trainer(RunConfig.from_dict(cfg_dict), dist=dist)
        trainer.run()
        flat = torch.cat([p.detach().flatten() for p in trainer.raw.parameters()])
        torch.save(flat, Path(out, f"rank{rank}.pt"))
    finally:
        dist.close()


def test_two_cpu_ranks_with_gloo(folders, tmp_path):
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = _cfg(folders, tmp_path / "run", steps=2).to_dict()
    mp.spawn(_ddp_worker, args=(2, port, cfg, str(tmp_path)), nprocs=2, join=True)
    doc = load_checkpoint(tmp_path / "run" / "last.ckpt")
    assert doc["step"] == 2 and doc["world_size"] == 2 and len(doc["sampler"]) == 2
    assert doc["sampler"][0] != doc["sampler"][1]  # each rank draws from its own shard and seed
    p0, p1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert torch.equal(p0, p1)  # DDP-averaged gradients and hand-averaged quantiles keep ranks equal
    assert len((tmp_path / "run" / "train.csv").read_text().splitlines()) == 3  # rank 0 only


# -- export and the manifest ----------------------------------------------------------------------
def test_export_load_round_trip_and_manifest(hybrid_ckpt, weights_dir, photo):
    cls = codec_class("hybrid")
    e1 = export_checkpoint(hybrid_ckpt, "h32")
    e2 = export_checkpoint(hybrid_ckpt, "h16", fp16=True, default=True)
    assert (e1["weights_id"], e2["weights_id"]) == (1, 2)
    assert e1["training"]["steps"] == 3 and e1["training"]["continuous"] and e1["rate_range"] == [0.0, 1.0]
    assert e1["training"]["final_lr"] == pytest.approx(1e-3)  # the run has no decay
    assert validate_manifest(weights_dir) == []

    doc = torch.load(weights_dir / "h16.pt", weights_only=True)
    assert set(doc) == {"format", "codec", "config", "state_dict", "weights_id"} and doc["weights_id"] == 2
    sd = doc["state_dict"]
    params = {n for n, _ in cls.model_class(cls.config_class.tiny()).named_parameters()}
    assert params and all(sd[n].dtype == torch.float16 for n in params)
    assert all(v.dtype == torch.int32 for k, v in sd.items() if k.endswith("_quantized_cdf"))

    # The in-memory codec used for validation codes exactly like the exported fp32 weights.
    ck = load_checkpoint(hybrid_ckpt)
    cfg = cls.config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in ck["model_config"].items()})
    model = cls.model_class(cfg)
    model.load_state_dict(ck["model"])
    mem = codec_from_model(cls, model, cfg)
    disk = cls(weights="h32", device="cpu")
    image = np.ascontiguousarray(photo[:40, :56])
    a, b = mem.encode(image, rate=0.4), disk.encode(image, rate=0.4)
    enc_h32 = b.bitstream
    assert a.sections == b.sections and np.array_equal(a.image, b.image)

    half = cls(weights="default", device="cpu")  # h16 is the default: fp16 loads as fp32
    assert half.weights_name == "h16" and half.weights_id == 2
    enc = half.encode(image, rate=0.8)
    assert np.array_equal(half.decode(enc.bitstream).image, enc.image)

    again = export_checkpoint(hybrid_ckpt, "h32", default=True)  # same tensors keep their id
    assert again["weights_id"] == 1
    changed = load_checkpoint(hybrid_ckpt)
    key = next(k for k, v in changed["model"].items() if v.is_floating_point() and v.numel() > 1)
    changed["model"][key] = changed["model"][key] + 0.5
    other = hybrid_ckpt.parent / "changed.ckpt"
    torch.save(changed, other)
    moved = export_checkpoint(other, "h32", default=True)  # new tensors: a new id, never reused
    assert moved["weights_id"] == 3
    with pytest.raises(BitstreamError, match="weights id 1"):
        cls(weights="default", device="cpu").decode(enc_h32)
    export_checkpoint(hybrid_ckpt, "h32", default=True)
    entries = W.load_manifest(weights_dir)
    assert [e.name for e in entries if e.default] == ["h32"]
    assert validate_manifest(weights_dir) == []


def test_retired_weights_free_their_file_but_never_their_id(hybrid_ckpt, weights_dir, photo):
    cls = codec_class("hybrid")
    old = export_checkpoint(hybrid_ckpt, "old", check=False)
    export_checkpoint(hybrid_ckpt, "current", default=True, check=False)
    image = np.ascontiguousarray(photo[:40, :56])
    coded = cls(weights="old", device="cpu").encode(image, rate=0.5).bitstream
    with pytest.raises(WeightsError, match="default"):
        retire_weights("current")
    with pytest.raises(WeightsError, match="no weights named 'gone'"):
        retire_weights("gone")
    assert cli.main(["retire", "old"]) == 0
    assert not (weights_dir / "old.pt").exists() and validate_manifest(weights_dir) == []
    assert W.read_manifest_doc(weights_dir)["retired"][0]["training"] == old["training"]
    assert [e.name for e in W.load_manifest(weights_dir)] == ["current"]
    with pytest.raises(BitstreamError, match=r"'old' weights \(id 1\), retired .*git log -- weights/old.pt"):
        decode_bitstream(coded, device="cpu")
    newer = export_checkpoint(hybrid_ckpt, "newer", check=False)
    assert newer["weights_id"] == 3 and old["weights_id"] == 1  # id 1 stays retired
    assert cli.main(["default", "newer"]) == 0  # then the former default can go
    assert [(e.name, e.default) for e in W.load_manifest(weights_dir)] == [("current", False), ("newer", True)]
    assert cli.main(["retire", "current"]) == 0
    assert cli.main(["default", "gone"]) == 2


def test_init_default_starts_from_the_codecs_default_weights(hybrid_ckpt, weights_dir):
    with pytest.raises(WeightsError, match="no 'hybrid' weights in the manifest"):
        load_source("default", codec="hybrid")
    export_checkpoint(hybrid_ckpt, "first", check=False)
    export_checkpoint(hybrid_ckpt, "chosen", default=True, check=False)
    export_checkpoint(hybrid_ckpt, "later", check=False)
    source = load_source("default", codec="hybrid")
    assert source.description == load_source("chosen", codec="hybrid").description
    assert source.description.startswith("manifest weights 'chosen'")
    with pytest.raises(WeightsError, match="no 'wavelet' weights"):
        load_source("default", codec="wavelet")


def test_tampered_weights_file_is_refused(hybrid_ckpt, weights_dir):
    export_checkpoint(hybrid_ckpt, "tamper", check=False)
    path = weights_dir / "tamper.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        codec_class("hybrid")(weights="tamper", device="cpu")
    problems = validate_manifest(weights_dir)
    assert len(problems) == 1 and "sha256" in problems[0]


# -- the command line -------------------------------------------------------------------------------
def test_cli_options_defaults_and_errors(folders, tmp_path, capsys, weights_dir):
    args = cli.parse_args(["hybrid", "--data", "d", "--out", str(tmp_path / "x"), "--lambda-schedule",
                           "--phase-steps", "100", "--base-quality", "20:50", "--config", "M=16"])
    cfg, doc = cli.run_config_from_args(args)
    assert doc is None and cfg.lambda_schedule == (0.045, 0.032, 0.016, 0.008, 0.004, 0.002)
    assert cfg.steps == 600 and cfg.base_quality == (20, 50) and cfg.model_config == {"M": "16"}
    with pytest.raises(ParameterError, match="exclude"):
        cli.run_config_from_args(cli.parse_args(["wavelet", "--data", "d", "--continuous", "--lambda-schedule", "0.01"]))
    with pytest.raises(ParameterError, match="needs --init"):
        cli.run_config_from_args(cli.parse_args(["refine", "--data", "d", "--out", str(tmp_path / "r")]))

    out = tmp_path / "run"
    argv = ["wavelet", "--data", str(folders / "train"), "--out", str(out), "--crop", "64", "--batch", "1",
            "--steps", "1", "--val", str(folders / "val"), "--val-images", "1", "--val-points", "2",
            "--warmup-steps", "0", "--final-eval", str(folders / "val")]
    argv += [f"--config={k}={v}" for k, v in _tiny("wavelet").items()]
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 1 and len(summary["validation"]["points"]) == 2
    n_points = len(next(p for p in codec_class("wavelet").params if p.rate_knob).sweep)
    assert len(json.loads((out / "final_eval.json").read_text())["results"]["bpp"]) == n_points
    assert cli.main(["export", str(out / "last.ckpt"), "--name", "w1", "--default"]) == 0
    entry = W.find_entry("w1").record
    assert entry["results"]["eval"]["images"] == 1 and len(entry["results"]["eval"]["points"]) == n_points
    assert entry["default"] and validate_manifest() == []
    capsys.readouterr()
    assert cli.main(["eval", "w1", "--data", str(folders / "val"), "--out", str(tmp_path / "c.json"),
                     "--ceiling", "--channels"]) == 0
    printed, channels = capsys.readouterr().out.split("latent channels")
    assert "wavelet (w1) on 1 images" in printed
    # one line per sweep point: n50 / n90 / n99 of the M=8 channels, rising with the share
    rows = channels.strip().splitlines()[1:]
    assert len(rows) == n_points
    for row in rows:
        counts = [int(n) for n in row.split("bpp in y")[1].split("of 8")[0].split("/")]
        assert 1 <= counts[0] <= counts[1] <= counts[2] <= 8
    ceiling = printed.split("unquantized latent")[1].strip().splitlines()[1:]
    # rate-free: one line, for the one setting that is not the rate
    assert len(ceiling) == 1 and '"postfilter": "auto"}' in ceiling[0] and ceiling[0].endswith(" dB")
    assert cli.main(argv) == 2  # the folder holds a run: --resume or another --out
    assert "--resume" in capsys.readouterr().err
    assert cli.main(argv + ["--resume", "--steps", "2"]) == 0
    assert load_checkpoint(out / "last.ckpt")["step"] == 2
    assert cli.main(["wavelet", "--data", str(folders / "train"), "--out", str(tmp_path / "bad"),
                     "--crop", "100"]) == 2
    assert "multiple of the model's stride" in capsys.readouterr().err

    capsys.readouterr()
    png = tmp_path / "curve.png"
    assert cli.main(["curve", f"{out / 'val.csv'}=tiny", "--out", str(png)]) == 0
    printed = capsys.readouterr().out
    assert "tiny step 2" in printed and png.stat().st_size > 1000
    # A second session's log continues the first one's steps under the same name.
    assert cli.main(["curve", f"{out / 'val.csv'}=tiny", f"{out / 'val.csv'}=tiny+100", "--out", str(png)]) == 0
    printed = capsys.readouterr().out
    assert "tiny step 102" in printed and "tiny step 2 " not in printed
    assert cli.main(["curve", str(tmp_path / "c.json"), "--out", str(png), "--no-reference"]) == 2
    assert "not a validation log" in capsys.readouterr().err


def test_curve_log_specs():
    from training.cli import _log_spec

    assert _log_spec("runs/w/val.csv") == ("runs/w/val.csv", "w", 0)
    assert _log_spec("a+b/val.csv=wavelet+3839") == ("a+b/val.csv", "wavelet", 3839)
    assert _log_spec("a+b/val.csv=c++") == ("a+b/val.csv", "c++", 0)
    assert _log_spec("a+b/val.csv=wavelet+wavelet-s5") == ("a+b/val.csv", "wavelet", "wavelet-s5")
    assert _log_spec("runs/x+y.csv") == ("runs/x+y.csv", "runs", 0)  # no legend name: all path


def test_trained_steps_are_read_from_the_manifest_records(weights_dir):
    from training.export import trained_steps

    def run(mode, steps, started_from):
        return {"mode": mode, "steps": steps, "started_from": started_from}

    weights_dir.mkdir()
    # "late" was trained from "mid" (retired without its record), "mid" from "early"; a hybrid
    # record mixes residual and refinement runs.
    late = {**run("wavelet", 50, "manifest weights 'mid' (id 2)"),
            "history": [run("wavelet", 30, "checkpoint runs/w/last.ckpt (step 7)"),
                        run("wavelet", 20, "manifest weights 'early' (id 1)"),
                        run("wavelet", 10, "random initialisation (seed 0)")], "total_steps": 110}
    hybrid = {**run("refine", 400, "manifest weights 'h1' (id 4)"),
              "history": [run("hybrid", 300, "random initialisation (seed 0)")]}
    doc = {"weights": [{"name": "late", "codec": "wavelet", "training": late},
                       {"name": "h2", "codec": "hybrid", "training": hybrid}],
           "retired": [{"name": "mid", "weights_id": 2},
                       {"name": "kept", "codec": "wavelet", "weights_id": 3,
                        "training": run("wavelet", 5, "random initialisation (seed 0)")}]}
    (weights_dir / "manifest.json").write_text(json.dumps(doc))
    assert trained_steps("late") == 110
    assert trained_steps("mid") == 60  # the runs before the one that started from it
    assert trained_steps("early") == 10
    assert trained_steps("kept") == 5
    assert trained_steps("h2") == 300 and trained_steps("h2", mode="refine") == 400
    assert trained_steps("h1") == 300
    with pytest.raises(WeightsError, match="no training record of weights 'gone'"):
        trained_steps("gone")


def test_learning_curve_gain_is_read_off_the_reference_in_log_bpp():
    from training.curve import gain_over

    reference = (np.array([0.25, 1.0, 0.5]), np.array([26.0, 32.0, 29.0]))
    assert gain_over(reference, 0.5, 30.0) == pytest.approx(1.0)
    assert gain_over(reference, 0.5 ** 0.5, 30.0) == pytest.approx(30.0 - 30.5)  # midway in log(bpp)
    assert np.isnan(gain_over(reference, 2.0, 40.0)) and np.isnan(gain_over(reference, 0.1, 20.0))


def test_learning_curve_measures_each_log_against_jpeg_on_its_own_pictures(tmp_path):
    from training.curve import ValPoint, plot_learning_curve, read_val_csv

    log = tmp_path / "val.csv"
    log.write_text('step,image,rate,params,bpp,psnr,encode_ms,crop\n'
                   '10,mean,0.5,"{""rate"": 0.5}",0.5,30.0,1.0,0\n')
    old = tmp_path / "old.csv"  # written before the crop column
    old.write_text('step,image,rate,params,bpp,psnr,encode_ms\n5,mean,0.5,"{""rate"": 0.5}",0.5,30.0,1.0\n')
    assert read_val_csv(log)[0].crop == 0 and read_val_csv(old)[0].crop is None
    # validation leaves the post-filter off; a log that says so joins the logs from before it
    off = tmp_path / "off.csv"
    off.write_text('step,image,rate,params,bpp,psnr,encode_ms,crop\n'
                   '20,mean,0.5,"{""postfilter"": ""off"", ""rate"": 0.5}",0.5,30.0,1.0,0\n'
                   '20,mean,0.5,"{""postfilter"": ""on"", ""rate"": 0.5}",0.5,30.0,1.0,0\n'
                   '30,mean,0.5,"{""optimize"": 0, ""postfilter"": ""off"", ""rate"": 0.5}",0.5,30.0,1.0,0\n'
                   '30,mean,0.5,"{""optimize"": 10, ""postfilter"": ""off"", ""rate"": 0.5}",0.5,30.0,1.0,0\n'
                   '40,mean,0.5,"{""base_scan"": ""baseline"", ""postfilter"": ""off"", ""rate"": 0.5}",0.5,30.0,1.0,0\n')
    # ... and so does one that names the latent refinement left at none, or the hybrid's base
    # coded in one baseline scan
    assert [p.params for p in read_val_csv(off)] == ['{"rate": 0.5}', '{"postfilter": "on", "rate": 0.5}',
                                                     '{"rate": 0.5}', '{"optimize": 10, "rate": 0.5}',
                                                     '{"rate": 0.5}']
    whole = (np.array([0.25, 1.0]), np.array([27.0, 31.0]))
    crops = (np.array([0.25, 1.0]), np.array([25.0, 29.0]))
    runs = {"a": read_val_csv(log), "b": [ValPoint(5, '{"rate": 0.5}', 0.5, 30.0, 256)]}
    rows = plot_learning_curve(runs, tmp_path / "c.png", {0: whole, 256: crops})
    assert {r["run"]: round(r["gain_db"], 3) for r in rows} == {"a": 1.0, "b": 3.0}
    with pytest.raises(ParameterError, match="256"):
        plot_learning_curve(runs, tmp_path / "c.png", {0: whole})


def _val_log(path, rows):
    """A trainer-format val.csv of (step, rate, bpp, psnr, crop) mean rows."""
    lines = ["step,image,rate,params,bpp,psnr,encode_ms,crop"]
    lines += [f'{s},mean,{r},"{{""rate"": {r}}}",{b},{q},1.0,{c}' for s, r, b, q, c in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_compare_pairs_shared_points_and_measures_the_new_log_against_the_base(tmp_path, capsys):
    from training import cli
    from training.curve import compare_validations, read_val_csv

    base = _val_log(tmp_path / "base.csv", [(100, 0.0, 0.30, 28.0, 0), (100, 1.0, 0.80, 31.0, 0),
                                            (200, 0.0, 0.25, 28.0, 0), (200, 1.0, 0.70, 31.0, 0)])
    # the new run spends 10 % fewer bits than the base's last validation at the same quality,
    # and validated one point the base did not
    new = _val_log(tmp_path / "new.csv", [(50, 0.0, 0.225, 28.0, 0), (50, 0.5, 0.4, 29.5, 0),
                                          (50, 1.0, 0.63, 31.0, 0)])
    c = compare_validations(read_val_csv(base), read_val_csv(new))
    assert (c.base_step, c.new_step) == (200, 50)
    assert [json.loads(k)["rate"] for k, _, _ in c.points] == [0.0, 1.0]
    assert c.bd_rate == pytest.approx(-10.0) and c.bd_psnr > 0
    earlier = compare_validations(read_val_csv(base), read_val_csv(new), base_step=100)
    assert earlier.bd_rate < c.bd_rate
    assert compare_validations(read_val_csv(new), read_val_csv(new)).bd_rate == pytest.approx(0.0)

    assert cli.main(["compare", f"{base}@100", str(new)]) == 0
    out = capsys.readouterr().out
    assert "step 50 against" in out and "step 100" in out and "-25.00 % bits" in out and "BD-rate" in out
    with pytest.raises(ParameterError, match="no validation at step 7"):
        compare_validations(read_val_csv(base), read_val_csv(new), base_step=7)
    other = _val_log(tmp_path / "other.csv", [(1, 0.0, 0.3, 28.0, 256), (1, 1.0, 0.8, 31.0, 256)])
    with pytest.raises(ParameterError, match="different crops"):
        compare_validations(read_val_csv(base), read_val_csv(other))
    one = _val_log(tmp_path / "one.csv", [(1, 0.5, 0.4, 29.5, 0)])
    assert cli.main(["compare", str(base), str(one)]) == 2
    assert "share 0 operating point" in capsys.readouterr().err
