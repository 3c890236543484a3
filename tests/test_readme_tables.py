"""scripts/readme_tables.py: the README's measured tables are copied from results/kodak."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "scripts" / "readme_tables.py")
readme_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_tables)

BD = """BD-rate on 24 images.

| codec | reference | BD-rate | BD-PSNR |
|---|---|---:|---:|
| wavelet | jpeg | -31.0 % | +1.60 dB |
| hybrid | jpeg | -20.0 % | +1.10 dB |
| jpeg | VTM | +183.5 % | -5.12 dB |
"""

BENCH = """4 images, median of 2 runs each.

| codec | weights | device | params |
|---|---|---|---:|
| wavelet | wavelet-new | cpu | 3 |
"""

README = """# title

| codec | reference | BD-rate | BD-PSNR |
|---|---|---:|---:|
| hybrid | jpeg | -19.8 % | +1.07 dB |
| wavelet | jpeg | -30.4 % | +1.56 dB |

text kept

### Speed

8 images, median of 3 runs each.

| codec | weights | device | params |
|---|---|---|---:|
| wavelet | wavelet-old | cpu | 3 |
| hybrid | hybrid-old | cpu | 2 |

Prose after the table.
"""


def _run(tmp_path, readme=README, bd=BD, bench=BENCH, *extra):
    (tmp_path / "kodak").mkdir(exist_ok=True)
    (tmp_path / "kodak" / "bd_rate.md").write_text(bd)
    (tmp_path / "kodak" / "bench.md").write_text(bench)
    (tmp_path / "README.md").write_text(readme)
    rc = readme_tables.main(["--readme", str(tmp_path / "README.md"), "--results", str(tmp_path / "kodak"), *extra])
    return rc, (tmp_path / "README.md").read_text()


def test_rows_are_replaced_by_pair_in_the_readmes_order_and_prose_is_kept(tmp_path):
    rc, out = _run(tmp_path)
    assert rc == 0
    lines = out.splitlines()
    assert lines[4:6] == ["| hybrid | jpeg | -20.0 % | +1.10 dB |", "| wavelet | jpeg | -31.0 % | +1.60 dB |"]
    assert "VTM" not in out  # pairs the README does not list stay out
    assert "4 images, median of 2 runs each." in out and "8 images" not in out
    assert "wavelet-new" in out and "old" not in out
    assert out.endswith("| wavelet | wavelet-new | cpu | 3 |\n\nProse after the table.\n")
    assert "text kept" in out


def test_check_reports_a_stale_readme_without_writing(tmp_path):
    rc, out = _run(tmp_path, README, BD, BENCH, "--check")
    assert rc == 1 and out == README
    rc, synced = _run(tmp_path)
    rc, _ = _run(tmp_path, synced, BD, BENCH, "--check")
    assert rc == 0


def test_a_pair_missing_from_the_results_is_an_error(tmp_path, capsys):
    rc, out = _run(tmp_path, README, BD.replace("| hybrid | jpeg | -20.0 % | +1.10 dB |\n", ""))
    assert rc == 2 and out == README
    assert "hybrid against jpeg" in capsys.readouterr().err


def test_an_ms_ssim_table_is_kept_from_its_own_results_file(tmp_path, capsys):
    table = "\n| codec | reference | BD-rate | BD-MS-SSIM |\n|---|---|---:|---:|\n| wavelet | jpeg | -1.0 % | +0.10 dB |\n"
    readme = README.replace("text kept", "text kept\n" + table)
    rc, out = _run(tmp_path, readme)
    assert rc == 2 and "bd_rate_ms-ssim.md" in capsys.readouterr().err  # the README has it, results do not
    (tmp_path / "kodak" / "bd_rate_ms-ssim.md").write_text(table.replace("-1.0 % | +0.10", "-40.0 % | +2.00"))
    rc, out = _run(tmp_path, readme)
    assert rc == 0 and "| wavelet | jpeg | -40.0 % | +2.00 dB |" in out
    assert "| wavelet | jpeg | -31.0 % | +1.60 dB |" in out  # the PSNR table's row, from bd_rate.md


def test_the_shipped_readme_matches_the_committed_results():
    results = ROOT / "results" / "kodak"
    if not (results / "bd_rate.md").exists():
        pytest.skip("no committed results/kodak")
    assert readme_tables.main(["--readme", str(ROOT / "README.md"), "--results", str(results), "--check"]) == 0


def test_the_readmes_results_command_codes_what_the_makefile_does():
    """The README quotes `make results`' eval command: its codec list is the Makefile's CODECS."""
    make = (ROOT / "Makefile").read_text()
    codecs = next(line.split("?=", 1)[1].strip() for line in make.splitlines() if line.startswith("CODECS ?="))
    assert f"--codecs {codecs}\n" in (ROOT / "README.md").read_text()
