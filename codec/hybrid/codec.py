"""HybridCodec: the registry's ``hybrid`` codec (HyRES) — JPEG base + learned residual + refinement.

Sections of a ``.lic`` file, in coding order:

* ``jpeg``: the base layer, Pillow/libjpeg-turbo at ``base_quality`` and ``subsampling``;
* ``hyper``: the hyper latent ``z`` (entropy bottleneck, one rANS string);
* ``anchor``: the anchor half of the residual latent ``y`` (checkerboard pass 1);
* ``nonanchor``: the other half, conditioned on the anchors (pass 2);
* ``postfilter``: where the encoder kept it, the per-image post-filter applied last
  (:mod:`codec.postfilter`).

Every latent shape follows from the image size in the container header (padded to the model
stride), so nothing about shapes is read from the sections. The encoder synthesises the
latent that CompressAI's ``compress`` rebuilt with the decoder's own rANS decode and context
passes, with the decoder's synthesis code, so ``decode(encode(x))`` is bit-exact on one device
type without paying for a second entropy decode.

The header's ``refine`` flag tells the decoder whether to run the refinement filter. With
``refine=auto`` (the default) the encoder sets it per image: on where the filtered picture is
closer to the original, so the filter never costs quality, and a decoder skips it where it would.

Timings: ``encode_ms`` is JPEG + analysis + entropy coding; an encode's ``decode_ms`` is the
encoder-side reconstruction (synthesis, refinement); a decode's ``decode_ms`` is the whole decode.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from .. import postfilter
from ..base import CodecResult, ParamSpec
from ..container import Container
from ..errors import BitstreamError
from ..jpeg import SCANS, TABLES, abbreviate, complete, jpeg_decode, jpeg_encode
from ..learned import POSTFILTER_PARAM, LearnedCodec, image_to_tensor, pad_to_multiple, tensor_to_image
from ..latent_search import OPTIMIZE_PARAM
from ..metrics import squared_error
from .config import Config
from .model import SECTION_NAMES, HybridModel

__all__ = ["HybridCodec", "SWEEP", "SWEEPS"]

# (base_quality, rate) from low to high rate, per quantisation-table family of the base: the JPEG
# base's quality rises along it, the residual's rate as the hull has it. The pairs follow the upper convex hull of a grid measured
# on training images (never Kodak), one pair per base quality (the higher-rate one where the hull
# has two), and at q5 and q80 the hull's ends, so that the sweep spans the knob's whole range:
#   standard: lic-codec grid ../shared/data/train/wikipedia --limit 3 --codec hybrid --weights hybrid-s9
#     --param refine=false --param base_quality=5,10,15,20,30,45,60,80 --param rate=0,0.25,0.5,0.75,1
#     (results/tuning/hybrid-s9-grid.json, the same hull as hybrid-gpu-s4's and hybrid-cpu-s2's);
#   psnr: the hull of the mean of two grids (9 images) of hybrid-s13 (the default then; retired
#     since, its file in the git history) with its default settings (refinement and post-filter
#     as `auto` decided, format version 2):
#     lic-codec grid ../shared/data/train/urban100 --limit 6 --codec hybrid --weights hybrid-s13
#     --param base_tables=psnr --param base_quality=5,8,10,15,20,30,45,60,80
#     --param rate=-1,-0.75,-0.5,-0.25,0,0.25,0.5,0.75,1 (results/tuning/hybrid-s13-grid.json), and
#     the same on ../shared/data/train/wikipedia --limit 3 (hybrid-s13-wikipedia-grid.json);
#     scripts/sweep_hull.py prints that hull.
DEFAULT_BASE_TABLES = "psnr"
SWEEPS = {
    "standard": ((5, 0.0), (10, 0.0), (15, 0.25), (20, 0.25), (30, 0.5), (45, 0.75), (60, 0.75), (80, 1.0)),
    "psnr": ((5, -1.0), (5, -0.5), (8, -0.25), (10, 0.0), (15, 0.25), (20, 0.25), (30, 0.5), (45, 0.75),
             (60, 0.0), (80, 1.0)),
}
SWEEP = SWEEPS[DEFAULT_BASE_TABLES]  # the sweep of `lic-codec eval`


def _rans_string(name: str, data: bytes, symbols: int) -> bytes:
    """Check one rANS section and return it zero-padded for the C++ decoder.

    An honest string is whole 32-bit words ending in the 8-byte final state; anything else is
    refused. Outside bypass mode the decoder reads at most one word per symbol, and it reads
    without bounds checks, so ``4 * symbols`` zero bytes are appended: a wrong or crafted
    string (with a valid CRC) then cannot make it read past the buffer. An honest decode never
    reaches the padding, so the result is unchanged.
    """
    if len(data) < 8 or len(data) % 4:
        raise BitstreamError(f"section {name!r} is {len(data)} bytes, not a valid rANS string "
                             "(a multiple of 4, at least 8)")
    return bytes(data) + bytes(4 * symbols + 8)


def _chosen_refine(refine: str, refined: np.ndarray, base_plus: np.ndarray,
                   original: np.ndarray | None) -> str:
    """``refine`` as ``on`` / ``off``: ``auto`` is ``on`` where the refined 8-bit picture is closer
    to ``original`` than base + residual."""
    if refine != "auto":
        return refine
    return "on" if squared_error(refined, original) < squared_error(base_plus, original) else "off"


def _net_db(a: CodecResult, b: CodecResult, original: np.ndarray) -> float:
    """How much better ``a``'s final picture is than ``b``'s, in dB of PSNR net of its extra
    bytes (:func:`postfilter.rate_cost_db`, the post-filter's own rule)."""
    gain = 10 * math.log10(max(squared_error(b.image, original), 1) / max(squared_error(a.image, original), 1))
    return gain - postfilter.rate_cost_db(len(a.bitstream) - len(b.bitstream), len(b.bitstream))


def _guides(base: np.ndarray, unrefined: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """The post-filter's guides, in the order the format fixes: the JPEG base and, where the
    refinement filter ran, base + residual (``unrefined``). The post-filter may then move the
    picture back towards either (or past it) by its own measure for each image and channel,
    which a filter trained on average crops cannot."""
    return (base,) if unrefined is None else (base, unrefined)


# The scan that codes the base fastest; every scan decodes to the same picture, so what needs
# the base's picture alone (the ceiling, the channels' bits) codes it in this one.
PICTURE_SCAN = "baseline"


class HybridCodec(LearnedCodec):
    """HyRES: JPEG base at ``base_quality``, neural residual at continuous ``rate``, optional refinement."""

    name = "hybrid"
    codec_id = 2
    title = "HyRES (JPEG + neural residual)"
    config_class = Config
    model_class = HybridModel
    params = (
        ParamSpec("base_quality", "int", 30, "JPEG quality of the base layer", 1, 100),
        ParamSpec("rate", "float", 0.5,
                  f"residual rate knob, {HybridModel.rate_range[0]:g} = smallest residual, 1 = finest: "
                  "0 to 1 is the trained λ range, below 0 the residual is coded ever more coarsely "
                  "(continuous)",
                  *HybridModel.rate_range,
                  rate_knob=True),  # sweeps walk (base_quality, rate) pairs: see sweep_path
        ParamSpec("refine", "choice", "auto",
                  "MultiScaleRefine post-filter: on, off, or auto (the encoder keeps it where it "
                  "lowers this image's error, after the per-image post-filter where that is on, net "
                  "of its bytes; the file says which)", choices=("auto", "on", "off")),
        ParamSpec("subsampling", "choice", "4:2:0", "chroma subsampling of the JPEG base",
                  choices=("4:2:0", "4:4:4")),
        ParamSpec("base_tables", "choice", DEFAULT_BASE_TABLES,
                  "quantisation tables of the JPEG base: psnr (flatter, finer chroma) or standard "
                  "(Annex K); any JPEG decoder reads either", choices=TABLES,
                  unrecorded="standard"),  # the only tables before the choice existed
        ParamSpec("base_scan", "choice", "smallest",
                  "scan mode of the JPEG base: baseline, progressive, or smallest (codes both, "
                  "keeps the shorter; the base picture is the same)", choices=SCANS,
                  unrecorded="baseline"),
        POSTFILTER_PARAM,
        OPTIMIZE_PARAM,
    )

    def required_sections(self, params):
        return ("jpeg",) + SECTION_NAMES

    def sweep_path(self, settings: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"base_quality": q, "rate": r} for q, r in SWEEPS[settings["base_tables"]]]

    # -- coding -------------------------------------------------------------------------------
    def _inputs(self, image: np.ndarray, params: dict[str, Any]):
        """The JPEG base layer (abbreviated: its tables follow from the header), its decode,
        and image and base as padded model tensors."""
        h, w = image.shape[:2]
        jpeg = abbreviate(jpeg_encode(image, params["base_quality"], params["subsampling"],
                                      params["base_tables"], params["base_scan"]))
        base = self._base(jpeg, params, w, h)
        x = pad_to_multiple(image_to_tensor(image, self.device), self.model.stride)
        b = pad_to_multiple(image_to_tensor(base, self.device), self.model.stride)
        return jpeg, base, x, b

    @staticmethod
    def _base(section: bytes, params: dict[str, Any], width: int, height: int) -> np.ndarray:
        """The base layer's picture, decoded as the decoder decodes it (writable: torch.from_numpy
        warns otherwise)."""
        full = complete(section, params["base_quality"], params["base_tables"])
        return np.array(jpeg_decode(full, width, height))

    def _encode(self, image: np.ndarray, params: dict[str, Any]) -> CodecResult:
        h, w = image.shape[:2]
        t0 = time.perf_counter()
        jpeg, base, x, b = self._inputs(image, params)
        coded = self.model.compress(x, b, params["rate"], latent_steps=params["optimize"], valid=(h, w))
        sections = {"jpeg": jpeg, **{k: coded["strings"][k][0] for k in SECTION_NAMES}}
        self._sync()
        t1 = time.perf_counter()
        # compress() already rebuilt y_hat with the decoder's own operations (see
        # HybridModel.compress): synthesising it gives the decoder's image, bit for bit.
        out = self.model.reconstruct(coded["y_hat"], b, params["rate"], refine=params["refine"] != "off")
        result = self._result(out, base, sections, params, w, h, original=image)
        self._sync()
        t2 = time.perf_counter()
        result.encode_ms = (t1 - t0 + time.perf_counter() - t2) * 1e3
        result.decode_ms = (t2 - t1) * 1e3
        self._finish_encode(result, image)
        if params["refine"] == "auto" and params["postfilter"] != "off" and result.params["refine"] == "off":
            # Base + residual was closer than the refined picture, but the post-filter of the
            # refined one has base + residual as a guide and may take it further (at high rates
            # it mostly does): keep whichever final picture pays best for its bytes.
            refined = self._result(out, base, sections, {**params, "refine": "on"}, w, h)
            refined.encode_ms, refined.decode_ms = result.encode_ms, result.decode_ms
            self._finish_encode(refined, image)
            result.encode_ms = refined.encode_ms
            if _net_db(refined, result, image) > 0:
                result = refined
        residual = image.astype(np.float32) / 255.0 - base.astype(np.float32) / 255.0
        result.intermediates["residual"] = residual
        return result

    def _header_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**super()._header_params(params), "refine": params["refine"] == "on"}

    def _unquantized(self, image: np.ndarray,
                     params: dict[str, Any]) -> list[tuple[np.ndarray, tuple[np.ndarray, ...]]]:
        """Base + residual with the latent left unquantized, refined as ``refine`` says (``auto``:
        both, or where the post-filter is off, the closer of the two): what no rate can exceed;
        and their guides."""
        h, w = image.shape[:2]
        _, base, x, b = self._inputs(image, {**params, "base_scan": PICTURE_SCAN})
        out = self.model.unquantized(x, b, refine=params["refine"] != "off")
        base_plus = tensor_to_image(out["x_hat"][..., :h, :w])
        unrefined = [(base_plus, _guides(base))]
        if params["refine"] == "off":
            return unrefined
        refined = [(tensor_to_image(out["x_refined"][..., :h, :w]), _guides(base, unrefined=base_plus))]
        if params["refine"] == "on":
            return refined
        if params["postfilter"] != "off":  # auto, as the encoder: the closer after the post-filter
            return refined + unrefined
        return refined if _chosen_refine("auto", refined[0][0], base_plus, image) == "on" else unrefined

    def _postfilter_guides(self, result: CodecResult) -> tuple[np.ndarray, ...]:
        inter = result.intermediates
        return _guides(inter["jpeg_base"], inter["base_plus_residual"] if "refined" in inter else None)

    def _channel_bits(self, image: np.ndarray, params: dict[str, Any]):
        import torch

        _, _, x, b = self._inputs(image, {**params, "base_scan": PICTURE_SCAN})
        likelihoods = self.model(x, params["rate"], base=b, refine=False)["likelihoods"]["y"]
        return -torch.log2(likelihoods).sum(dim=(0, 2, 3))

    def _decode(self, c: Container, params: dict[str, Any]) -> CodecResult:
        import torch

        t0 = time.perf_counter()
        w, h = c.width, c.height
        base = self._base(c.sections["jpeg"], params, w, h)
        b = pad_to_multiple(image_to_tensor(base, self.device), self.model.stride)
        strings = {k: [_rans_string(k, c.sections[k], n)]
                   for k, n in self._symbol_counts(b.shape[-2], b.shape[-1]).items()}
        out = self.model.decompress(strings, b, params["rate"], refine=params["refine"] == "on")
        # A NaN or infinity anywhere makes the sum one (as would values near float32's range,
        # garbage too): one reduction a tensor where isfinite().all() takes four passes.
        if not all(bool(torch.isfinite(t.sum())) for t in out.values()):
            raise BitstreamError("the residual sections decode to non-finite or huge values: they are "
                                 "corrupt or belong to another file")
        result = self._result(out, base, dict(c.sections), params, w, h)
        self._sync()
        result.decode_ms = (time.perf_counter() - t0) * 1e3
        self._postfilter_decode(result, c.sections)
        return result

    def _symbol_counts(self, height: int, width: int) -> dict[str, int]:
        """Symbols in each residual section of a padded ``height`` x ``width`` image."""
        shapes = self.model.latent_shapes(height, width)
        c, yh, yw = shapes["y"]
        zh, zw = shapes["hyper"]
        return {"hyper": self.config.hyper_channels * zh * zw,
                "anchor": c * yh * yw // 2, "nonanchor": c * yh * yw // 2}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)

    def _result(self, out: dict, base: np.ndarray, sections: dict[str, bytes],
                params: dict[str, Any], w: int, h: int, original: np.ndarray | None = None) -> CodecResult:
        """The decoded picture and the intermediates the app shows, cropped to ``w`` x ``h``.

        ``refine=auto`` (encoder side, with the ``original``) becomes ``on`` where the refined
        8-bit picture is closer to the original than base + residual, else ``off``.
        """
        import torch

        r_hat = out["r_hat"][..., :h, :w]
        base_plus = tensor_to_image(out["x_hat"][..., :h, :w])
        inter = {
            "jpeg_base": base,
            "residual_decoded": np.ascontiguousarray(
                r_hat.clamp(-1, 1).squeeze(0).permute(1, 2, 0).float().cpu().numpy()),
            "base_plus_residual": base_plus,
        }
        final = base_plus
        if "x_refined" in out:
            refined = tensor_to_image(out["x_refined"][..., :h, :w])
            params = {**params, "refine": _chosen_refine(params["refine"], refined, base_plus, original)}
            if params["refine"] == "on":
                final = inter["refined"] = refined
            else:  # auto left it out of the file; the encoder still shows what it would give
                inter["refined_discarded"] = refined
        inter["reconstruction"] = final
        info = {
            "weights": self.weights_name,
            "device": self.device_name,
            "lambda": float(self.model.lambda_for_rate(torch.tensor([params["rate"]]))[0]),
            "latent_shape": tuple(self.model.latent_shapes(
                out["x_hat"].shape[-2], out["x_hat"].shape[-1])["y"]),
        }
        return CodecResult(self.name, dict(params), b"", dict(sections), final, w, h,
                           intermediates=inter, info=info)

