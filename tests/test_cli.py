"""lic-codec: exit codes, one-line errors, and the files each command writes."""

from __future__ import annotations

import importlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec.cli import main


@pytest.fixture
def png(tmp_path, photo):
    path = tmp_path / "in.png"
    Image.fromarray(photo).save(path)
    return path


def test_encode_info_decode(tmp_path, png, capsys):
    lic, recon, out = tmp_path / "a.lic", tmp_path / "r.png", tmp_path / "d.png"
    assert main(["encode", str(png), str(lic), "--codec", "jpeg", "--quality", "35", "--recon", str(recon)]) == 0
    assert main(["info", str(lic), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert doc["codec"] == "jpeg" and doc["params"]["quality"] == 35
    assert doc["bytes"] == lic.stat().st_size
    assert doc["bpp"] == pytest.approx(8 * lic.stat().st_size / (96 * 128))
    assert main(["decode", str(lic), str(out)]) == 0
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(recon)))


def test_info_names_the_post_filters_classes(tmp_path, png, capsys):
    import dataclasses

    from codec import container, postfilter

    lic = tmp_path / "a.lic"
    assert main(["encode", str(png), str(lic), "--codec", "jpeg"]) == 0
    c = container.unpack(lic.read_bytes())
    linear = postfilter.PostFilter(np.zeros((3, 3, postfilter.NUM_FEATURES), dtype=np.int64))
    clipped = postfilter.PostFilter(np.zeros((2, 3, postfilter.num_features(postfilter.RADIUS, 1, 32)), dtype=np.int64),
                                    guides=1, clip=32)
    directional = postfilter.PostFilter(np.zeros((postfilter.DIRECTIONS, 3, postfilter.NUM_FEATURES),
                                                 dtype=np.int64), directions=postfilter.DIRECTIONS)
    for payload, shown in ((postfilter.pack(linear), (3, 0, 0, 1, "", "0 guides, linear")),
                           (postfilter.pack(clipped), (2, 1, 32, 1, "", "1 guide, luma differences clipped to 32")),
                           (postfilter.pack(directional), (1, 0, 0, 5, " x 5 directions", "0 guides, linear")),
                           (b"\x09", None)):
        lic.write_bytes(container.pack(dataclasses.replace(c, sections={**c.sections, "postfilter": payload})))
        capsys.readouterr()
        assert main(["info", str(lic), "--json"]) == 0
        section = json.loads(capsys.readouterr().out)["sections"]["postfilter"]
        if shown is None:
            assert section["classes"].startswith("unreadable") and "radius" not in section
        else:
            assert (section["classes"], section["guides"], section["clip"], section["directions"]) == shown[:4]
            assert section["radius"] == postfilter.RADIUS
        assert main(["info", str(lic)]) == 0
        line = [t for t in capsys.readouterr().out.splitlines() if "section postfilter" in t][0]
        classes = f"{shown[0]} activity class" + ("es" if shown[0] > 1 else "") if shown else ""
        assert (f"({classes}{shown[4]}, diamond of radius {postfilter.RADIUS}, {shown[5]})" if shown
                else "unreadable") in line


@pytest.mark.parametrize("argv_tail,needle", [
    (["--quality", "0"], "outside its range"),
    (["--quality", "abc"], "not a valid int"),
    (["--colour", "red"], "no parameter"),
    (["--codec", "nope"], "unknown codec 'nope'"),
])
def test_encode_errors_are_one_line(tmp_path, png, capsys, argv_tail, needle):
    assert main(["encode", str(png), str(tmp_path / "x.lic"), *argv_tail]) == 1
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and err.startswith("lic-codec: error:")


def test_decode_garbage_and_missing(tmp_path, capsys):
    bad = tmp_path / "bad.lic"
    bad.write_bytes(b"not a lic file at all")
    assert main(["decode", str(bad), str(tmp_path / "o.png")]) == 1
    assert "wrong magic" in capsys.readouterr().err
    assert main(["decode", str(tmp_path / "missing.lic"), str(tmp_path / "o.png")]) == 1
    assert "missing.lic" in capsys.readouterr().err


@pytest.mark.usefixtures("one_thread")
def test_decode_refuses_a_picture_that_fails_its_check_unless_told(tmp_path, png, capsys):
    import dataclasses

    from codec import container

    lic = tmp_path / "a.lic"
    assert main(["encode", str(png), str(lic), "--codec", "wavelet", "--weights", "random"]) == 0
    c = container.unpack(lic.read_bytes())
    wrong = bytes(b ^ 0xFF for b in c.sections["check"])  # as if decoded elsewhere to other pixels
    lic.write_bytes(container.pack(dataclasses.replace(c, sections={**c.sections, "check": wrong})))
    capsys.readouterr()
    out = tmp_path / "d.png"
    assert main(["decode", str(lic), str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "another machine" in err and "\n" not in err and not out.exists()
    assert main(["decode", str(lic), str(out), "--no-verify"]) == 0
    assert out.exists() and "warning" in capsys.readouterr().err


def test_encode_bad_image(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    assert main(["encode", str(bad), str(tmp_path / "o.lic")]) == 1
    assert "bad.png" in capsys.readouterr().err


def test_eval_writes_curves_table_and_plot(tmp_path, photo, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.ascontiguousarray(photo[:, i * 32:i * 32 + 96])).save(folder / f"{i}.png")
    anchors = tmp_path / "anchors"
    anchors.mkdir()
    (anchors / "fake.json").write_text(json.dumps(
        {"name": "fake", "results": {"bpp": [0.5, 1, 2, 4], "psnr-rgb": [25, 30, 35, 40]}}))
    out = tmp_path / "res"
    out.mkdir()
    (out / "wavelet_optimize-10.json").write_text("{}")  # an earlier run's curve
    assert main(["eval", str(folder), "--codecs", "jpeg", "--out", str(out), "--anchors", str(anchors),
                 "--no-ms-ssim"]) == 0
    assert "also holds wavelet_optimize-10.json, which this run did not make" in capsys.readouterr().err
    doc = json.loads((out / "jpeg.json").read_text())
    assert doc["name"] == "jpeg" and len(doc["results"]["bpp"]) == 12
    assert doc["results"]["bpp"] == sorted(doc["results"]["bpp"])
    assert (out / "rd.png").stat().st_size > 1000
    assert "| jpeg | fake |" in (out / "bd_rate.md").read_text()
    assert not (out / "bd_rate_ms-ssim.md").exists()  # --no-ms-ssim


def test_eval_writes_an_ms_ssim_table_beside_the_psnr_one(tmp_path, capsys):
    from skimage import data

    folder, anchors, out = tmp_path / "imgs", tmp_path / "anchors", tmp_path / "res"
    folder.mkdir()
    anchors.mkdir()
    # MS-SSIM's five scales need 161 px on a side.
    Image.fromarray(np.ascontiguousarray(data.astronaut()[:176, 160:336])).save(folder / "a.png")
    results = {"bpp": [0.5, 1, 2, 4], "psnr-rgb": [25, 30, 35, 40]}
    (anchors / "with.json").write_text(json.dumps(
        {"name": "with", "results": {**results, "ms-ssim-rgb": [0.9, 0.95, 0.98, 0.99]}}))
    (anchors / "without.json").write_text(json.dumps({"name": "without", "results": results}))
    assert main(["eval", str(folder), "--codecs", "jpeg,jpeg:subsampling=4:4:4", "--out", str(out),
                 "--anchors", str(anchors)]) == 0
    assert "bd_rate_ms-ssim.md, bd_rate_ms-ssim.json" in capsys.readouterr().out
    table = (out / "bd_rate_ms-ssim.md").read_text()
    assert "(MS-SSIM-RGB in dB" in table and "| codec | reference | BD-rate | BD-MS-SSIM |" in table
    assert "| jpeg_subsampling-444 | jpeg |" in table and "| jpeg | with |" in table
    assert "without" not in table and "| jpeg | without |" in (out / "bd_rate.md").read_text()
    rows = json.loads((out / "bd_rate_ms-ssim.json").read_text())
    assert {r["metric"] for r in rows} == {"ms-ssim"} and all("bd_ms_ssim_db" in r for r in rows)


def test_commands_silence_the_third_party_deprecation_and_only_it():
    # Every command printed torch's FutureWarning about torch_geometric's torch.jit.script (via
    # compressai). pytest hides it for the suite (pyproject.toml), so start from no filters.
    import codec

    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        importlib.reload(codec)
        warnings.warn("`torch.jit.script` is deprecated. Please switch to `torch.compile` or "
                      "`torch.export`.", FutureWarning)
        warnings.warn("something else is deprecated", FutureWarning)
    assert [str(w.message) for w in caught] == ["something else is deprecated"]


def test_codecs_listing(capsys):
    assert main(["codecs", "--json"]) == 0
    names = [c["name"] for c in json.loads(capsys.readouterr().out)]
    assert "jpeg" in names


def test_eval_holds_spec_parameters_fixed(tmp_path, photo):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "a.png")
    out = tmp_path / "res"
    assert main(["eval", str(folder), "--codecs", "jpeg,jpeg:subsampling=4:4:4", "--out", str(out),
                 "--no-ms-ssim"]) == 0
    doc = json.loads((out / "jpeg_subsampling-444.json").read_text())
    assert all(p["subsampling"] == "4:4:4" for p in doc["params"])
    base = json.loads((out / "jpeg.json").read_text())
    assert doc["results"]["bpp"][-1] > base["results"]["bpp"][-1]
    # holding the rate knob measures that one point once
    assert main(["eval", str(folder), "--codecs", "jpeg:quality=40", "--out", str(out), "--no-ms-ssim"]) == 0
    assert json.loads((out / "jpeg_quality-40.json").read_text())["params"] == [
        {"quality": 40, "subsampling": "4:2:0", "tables": "standard", "scan": "baseline"}]


def test_eval_spec_sweeps_the_hull_of_its_held_settings():
    """``hybrid:base_tables=standard`` walks the standard tables' (quality, rate) hull, not
    the default tables' one with the tables swapped."""
    from codec.cli import _spec_points
    from codec.hybrid import Config, HybridCodec
    from codec.hybrid.codec import SWEEPS

    codec = HybridCodec(weights="random", config=Config.tiny(), device="cpu")
    for tables, hull in SWEEPS.items():
        points = _spec_points(codec, {"base_tables": tables})
        assert [(p["base_quality"], p["rate"], p["base_tables"]) for p in points] == [
            (q, r, tables) for q, r in hull]
    ranged = _spec_points(codec, {"base_tables": "standard", "rate": "0.5..1"})
    assert [(p["base_quality"], p["rate"]) for p in ranged] == [(q, r) for q, r in SWEEPS["standard"] if r >= 0.5]


def test_eval_knob_range_is_a_part_of_the_full_sweep(tmp_path, photo, monkeypatch):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "a.png")
    out = tmp_path / "res"
    from codec import cli, evaluate

    measured = []
    real_sweep = evaluate.sweep
    monkeypatch.setattr(evaluate, "sweep", lambda codec, images, points, **kw: (
        measured.append(list(points)), real_sweep(codec, images, points, **kw))[1])
    assert main(["eval", str(folder), "--codecs", "jpeg,jpeg:quality=20..50", "--out", str(out),
                 "--no-ms-ssim"]) == 0
    full = json.loads((out / "jpeg.json").read_text())
    part = json.loads((out / "jpeg_quality-20..50.json").read_text())
    assert [p["quality"] for p in part["params"]] == [20, 30, 40, 50]
    at = [full["params"].index(p) for p in part["params"]]
    assert part["results"]["bpp"] == [full["results"]["bpp"][i] for i in at]
    assert part["results"]["psnr-rgb"] == [full["results"]["psnr-rgb"][i] for i in at]
    assert len(measured) == 1  # the part was not coded again
    rows = json.loads((out / "bd_rate.json").read_text())
    assert any(r["codec"] == "jpeg_quality-20..50" and r["reference"] == "jpeg" for r in rows)
    # without its full sweep in the run, a range is measured on its own
    assert main(["eval", str(folder), "--codecs", "jpeg:subsampling=4:4:4:quality=85..100", "--out", str(out),
                 "--no-ms-ssim"]) == 0
    alone = json.loads((out / "jpeg_subsampling-444_quality-85..100.json").read_text())
    assert [(p["quality"], p["subsampling"]) for p in alone["params"]] == [(90, "4:4:4"), (95, "4:4:4")]
    for bad, message in (("jpeg:quality=50..20", "LO <= HI"), ("jpeg:quality=a..b", "not a range"),
                         ("jpeg:quality=96..99", "no sweep point")):
        with pytest.raises(SystemExit, match=message):
            cli.main(["eval", str(folder), "--codecs", bad, "--out", str(out), "--no-ms-ssim"])


def test_eval_jobs_give_the_same_curves_as_one_process(tmp_path, photo, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    # Two images, so that the jobs split each spec's images between the workers.
    Image.fromarray(np.ascontiguousarray(photo[:64, :96])).save(folder / "a.png")
    Image.fromarray(np.ascontiguousarray(photo[-64:, -96:])).save(folder / "b.png")
    curves, descriptions, per_image = {}, {}, {}
    for jobs in ("1", "2"):
        out = tmp_path / f"res{jobs}"
        assert main(["eval", str(folder), "--codecs", "jpeg,jpeg:subsampling=4:4:4", "--out", str(out),
                     "--no-ms-ssim", "--jobs", jobs, "--threads", "1"]) == 0
        docs = {p.name: json.loads(p.read_text()) for p in out.glob("jpeg*.json")}
        curves[jobs] = {n: d["results"] for n, d in docs.items()}
        descriptions[jobs] = {n: d["description"] for n, d in docs.items()}
        per_image[jobs] = {n: (d["images"], d["per_image"]) for n, d in docs.items()}
    assert sorted(curves["2"]) == ["jpeg.json", "jpeg_subsampling-444.json"]
    for name, res in curves["1"].items():
        assert res["bpp"] == curves["2"][name]["bpp"] and res["psnr-rgb"] == curves["2"][name]["psnr-rgb"]
        assert descriptions["1"][name] == descriptions["2"][name] and "2 images" in descriptions["2"][name]
        images, values = per_image["2"][name]
        assert per_image["1"][name][0] == images
        assert all(per_image["1"][name][1][k] == values[k] for k in ("bpp", "psnr-rgb"))
        assert images == ["a.png", "b.png"]
        # The means are those of the per-image values kept beside them, point by point.
        assert res["bpp"] == pytest.approx(np.mean(values["bpp"], axis=1).tolist())
        assert res["psnr-rgb"] == pytest.approx(np.mean(values["psnr-rgb"], axis=1).tolist())
    assert "[2/2] swept" in capsys.readouterr().err


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_eval_checks_every_spec_before_measuring(tmp_path, png, capsys, jobs):
    out = tmp_path / "r"
    assert main(["eval", str(png.parent), "--codecs", "jpeg,jpeg:quality=500", "--jobs", jobs,
                 "--no-ms-ssim", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "quality=500 is outside its range" in err and "swept" not in err and "1/" not in err
    assert not list(out.glob("*.json"))


def test_eval_refuses_zero_jobs(tmp_path, png):
    with pytest.raises(SystemExit, match="--jobs 0"):
        main(["eval", str(png.parent), "--jobs", "0", "--out", str(tmp_path / "r")])


@pytest.mark.usefixtures("one_thread")
def test_eval_compares_a_codec_with_its_fixed_parameter_variant(tmp_path, photo):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.ascontiguousarray(photo[:64, :96])).save(folder / "a.png")
    out = tmp_path / "res"
    assert main(["eval", str(folder), "--codecs", "hybrid,hybrid:refine=false", "--weights", "random",
                 "--out", str(out), "--no-ms-ssim", "--ceiling"]) == 0
    rows = json.loads((out / "bd_rate.json").read_text())
    row = next(r for r in rows if r["codec"] == "hybrid" and r["reference"] == "hybrid_refine-false")
    # An untrained refiner is the identity (zero-initialised last layer): the curves coincide.
    assert abs(row["bd_psnr_db"]) < 1e-6
    # one ceiling per base quality of the sweep (the rate only scales the quantization)
    ceilings = json.loads((out / "ceiling.json").read_text())
    from codec.hybrid.codec import SWEEP

    assert [c["params"]["base_quality"] for c in ceilings] == list(dict.fromkeys(q for q, _ in SWEEP))
    assert all(c["codec"] == "hybrid" and c["images"] == 1 and 0 < c["psnr"] < 100 for c in ceilings)


@pytest.mark.usefixtures("one_thread")
def test_bench_times_codecs_against_the_reference_and_writes_tables(tmp_path, photo, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.ascontiguousarray(photo[:64, :64])).save(folder / "a.png")
    out = tmp_path / "bench.json"
    assert main(["bench", str(folder), "--codecs", "jpeg", "--repeat", "1", "--out", str(out)]) == 0
    ref, ref_channels_last, jpeg = json.loads(out.read_text())
    assert ref["codec"] == "bmshj2018-hyperprior (ref)" and ref["ratio_to_reference"] == 1.0
    assert ref_channels_last["codec"] == "bmshj2018-hyperprior (ref, channels-last)"
    assert ref_channels_last["ratio_to_channels_last_reference"] == 1.0
    assert jpeg["ratio_to_channels_last_reference"] == pytest.approx(
        jpeg["ratio_to_reference"] * ref_channels_last["ratio_to_channels_last_reference"]
        / ref_channels_last["ratio_to_reference"])
    assert ref["params"] == ref_channels_last["params"] > 1_000_000 and ref["enc_kmac_px"] > 1
    assert jpeg["codec"] == "jpeg" and 0 < jpeg["encode_ms"] and 0 < jpeg["decode_ms"]
    # measured by a second process (the memory pass); NaN if it did not report
    assert 0 < ref["peak_mb"] < 1000 and 0 <= jpeg["peak_mb"] < 1000
    assert "| jpeg | none | cpu |" in out.with_suffix(".md").read_text()
    assert "| jpeg | none | cpu |" in capsys.readouterr().out


@pytest.mark.usefixtures("one_thread")
def test_bench_holds_a_specs_parameters_as_eval_does(tmp_path, photo, capsys):
    from codec import bench

    image = np.ascontiguousarray(photo[:64, :64])
    default, coarse, grey = bench._coders(["jpeg", "jpeg:quality=10", "jpeg:subsampling=4:4:4:quality=90"],
                                          "default", "cpu")[2:]
    assert (default.name, coarse.name) == ("jpeg", "jpeg:quality=10")
    assert len(coarse.encode(image)) < len(default.encode(image)) < len(grey.encode(image))
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(image).save(folder / "a.png")
    assert main(["bench", str(folder), "--codecs", "jpeg:quality=10", "--repeat", "1"]) == 0
    assert "| jpeg:quality=10 | none | cpu |" in capsys.readouterr().out
    for bad in ("jpeg:quality", "jpeg:quality=500", "jpeg:nonsense=1"):
        assert main(["bench", str(folder), "--codecs", bad, "--repeat", "1"]) == 1
        assert "lic-codec: error:" in capsys.readouterr().err


def test_upper_hull_keeps_only_the_best_trade_offs():
    from codec.evaluate import upper_hull

    bpp = [0.5, 1.0, 1.0, 2.0, 1.5, 3.0, 0.2, float("nan")]
    psnr = [30.0, 32.0, 31.0, 33.0, 31.5, 33.0, 26.0, 40.0]
    # 1.5 bpp lies below the chord 1 → 2; 3 bpp buys nothing over 2; a NaN point is no point.
    assert upper_hull(bpp, psnr) == [6, 0, 1, 3]
    assert upper_hull([], []) == []


def test_stage_table_pairs_each_sweep_with_the_one_that_turns_one_more_stage_off():
    from codec.evaluate import Curve, bd_table_of_stages

    def curve(name, gain):
        return Curve(name, [0.25, 0.5, 1.0, 2.0], [28.0 + gain, 31.0 + gain, 34.0 + gain, 37.0 + gain])

    specs = [("jpeg", {}), ("jpeg", {"subsampling": "4:4:4"}), ("hybrid", {}), ("hybrid", {"refine": "off"}),
             ("hybrid", {"postfilter": "off"}), ("hybrid", {"refine": "off", "postfilter": "off"}),
             ("wavelet", {}), ("wavelet", {"postfilter": "off"})]
    names = ["jpeg", "jpeg_444", "hybrid", "h_r", "h_p", "h_rp", "wavelet", "w_p"]
    gains = [0.0, 0.1, 0.5, 0.3, 0.4, 0.2, 0.6, 0.5]
    rows = bd_table_of_stages(specs, [curve(n, g) for n, g in zip(names, gains)])
    pairs = {(r["codec"], r["reference"]): r["bd_psnr_db"] for r in rows}
    assert set(pairs) == {("hybrid", "h_r"), ("hybrid", "h_p"), ("hybrid", "h_rp"), ("h_r", "h_rp"),
                          ("h_p", "h_rp"), ("wavelet", "w_p")}
    assert pairs[("h_p", "h_rp")] == pytest.approx(0.2) and pairs[("hybrid", "h_rp")] == pytest.approx(0.3)


def test_grid_codes_every_combination_and_marks_the_hull(tmp_path, png, capsys):
    out = tmp_path / "grid.json"
    assert main(["grid", str(png.parent), "--codec", "jpeg", "--param", "quality=10,50,90",
                 "--param", "subsampling=4:2:0,4:4:4", "--out", str(out)]) == 0
    points = json.loads(out.read_text())["points"]
    assert sorted((p["params"]["quality"], p["params"]["subsampling"]) for p in points) == [
        (q, s) for q in (10, 50, 90) for s in ("4:2:0", "4:4:4")]
    hull = [p for p in points if p["on_hull"]]
    assert 2 <= len(hull) <= 6 and [p["bpp"] for p in hull] == sorted(p["bpp"] for p in hull)
    assert all(a["psnr"] < b["psnr"] for a, b in zip(hull, hull[1:]))
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("* ") for line in lines) == len(hull)
    with pytest.raises(SystemExit, match="bad --param"):
        main(["grid", str(png.parent), "--codec", "jpeg", "--param", "quality"])


def test_bd_measures_curve_files_against_a_reference(tmp_path, capsys):
    def curve(name, bpp, psnr):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"name": name, "results": {"bpp": bpp, "psnr-rgb": psnr}}))
        return str(path)

    ref = curve("ref", [0.25, 0.5, 1.0, 2.0], [28.0, 31.0, 34.0, 37.0])
    # the same qualities at 80 % of the bits: BD-rate -20 %, whatever the shape
    test = curve("test", [0.2, 0.4, 0.8, 1.6], [28.0, 31.0, 34.0, 37.0])
    assert main(["bd", ref, test]) == 0
    out = capsys.readouterr().out
    assert f"| {test} | {ref} | -20.0 % |" in out
    assert main(["bd", ref, str(tmp_path / "missing.json")]) == 1
    assert "not a readable curve file" in capsys.readouterr().err


def test_bd_on_ms_ssim_reads_it_in_decibels(tmp_path, capsys):
    ref, test, no_ssim, db_only = (tmp_path / f"{n}.json" for n in ("ref", "test", "no_ssim", "db_only"))
    ssim = [0.90, 0.95, 0.975, 0.99]
    rates = [0.25, 0.5, 1.0, 2.0]
    ref.write_text(json.dumps({"name": "ref", "results": {"bpp": rates, "psnr-rgb": [28, 31, 34, 37],
                                                          "ms-ssim-rgb": ssim}}))
    # the same MS-SSIM at 80 % of the bits, and a PSNR curve that says otherwise
    test.write_text(json.dumps({"name": "test", "results": {"bpp": [0.8 * r for r in rates],
                                                            "psnr-rgb": [26, 29, 32, 35], "ms-ssim-rgb": ssim}}))
    no_ssim.write_text(json.dumps({"name": "n", "results": {"bpp": rates, "psnr-rgb": [28, 31, 34, 37]}}))
    # a published curve with only the decibel scale reads as the same curve
    db_only.write_text(json.dumps({"name": "d", "results": {"bpp": [0.8 * r for r in rates], "psnr-rgb": [1, 2, 3, 4],
                                                            "ms-ssim-db-rgb": [-10 * np.log10(1 - v) for v in ssim]}}))
    assert main(["bd", str(ref), str(test), str(db_only), "--metric", "ms-ssim"]) == 0
    out = capsys.readouterr().out
    assert "| codec | reference | BD-rate | BD-MS-SSIM |" in out
    assert f"| {test} | {ref} | -20.0 % | +" in out and f"| {db_only} | {ref} | -20.0 % | +" in out
    assert main(["bd", str(ref), str(no_ssim), "--metric", "ms-ssim"]) == 1
    assert "has no MS-SSIM values" in capsys.readouterr().err


def test_bd_leaves_images_out_and_compares_image_by_image(tmp_path, capsys):
    def curve(name, per_image_bpp, psnr):
        path = tmp_path / f"{name}.json"
        bpp = np.asarray(per_image_bpp)  # [point][image]
        quality = np.tile(np.asarray(psnr)[:, None], (1, bpp.shape[1]))
        path.write_text(json.dumps({"name": name, "images": ["a.png", "b.png"],
                                    "results": {"bpp": bpp.mean(1).tolist(), "psnr-rgb": psnr},
                                    "per_image": {"bpp": bpp.tolist(), "psnr-rgb": quality.tolist()}}))
        return str(path)

    psnr = [28.0, 31.0, 34.0, 37.0]
    rates = np.array([0.25, 0.5, 1.0, 2.0])
    ref = curve("ref", np.stack([rates, 2 * rates], 1), psnr)
    # a.png at 80 % of the reference's bits, b.png at half of them
    test = curve("test", np.stack([0.8 * rates, rates], 1), psnr)
    assert main(["bd", ref, test, "--exclude", "b", "--per-image"]) == 0
    out = capsys.readouterr().out
    assert "without b" in out and f"| {test} | {ref} | -20.0 % |" in out
    assert f"| a.png | {test} | {ref} | -20.0 % |" in out and "b.png |" not in out
    assert main(["bd", ref, test, "--per-image"]) == 0
    out = capsys.readouterr().out
    assert f"| b.png | {test} | {ref} | -50.0 % |" in out
    assert "best b.png -50.0 %, worst a.png -20.0 %" in out
    assert main(["bd", ref, test, "--exclude", "c.png"]) == 1
    assert "no image named c.png" in capsys.readouterr().err
    assert main(["bd", ref, test, "--exclude", "a,b"]) == 1
    assert "no images left" in capsys.readouterr().err
    anchor = tmp_path / "anchor.json"
    anchor.write_text(json.dumps({"name": "anchor", "results": {"bpp": rates.tolist(), "psnr-rgb": psnr}}))
    assert main(["bd", str(anchor), test, "--exclude", "a"]) == 1
    assert "keeps no per-image values" in capsys.readouterr().err
    broken = json.loads(Path(test).read_text())
    broken["per_image"]["bpp"] = broken["per_image"]["bpp"][:2]
    Path(test).write_text(json.dumps(broken))
    assert main(["bd", ref, test]) == 1
    assert "per_image values do not match its 4 points" in capsys.readouterr().err
    Path(test).write_text(json.dumps([broken]))
    assert main(["bd", ref, test]) == 1
    assert "not a CompressAI results file" in capsys.readouterr().err
