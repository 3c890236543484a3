"""Copy the measured tables of ``make results`` into the README.

The README's BD-rate table lists a chosen subset of the (codec, reference) pairs in
results/kodak/bd_rate.md: each of its rows is replaced by that pair's row there, and a pair the
results no longer have is an error rather than a stale number. Its MS-SSIM table, where it has
one, is kept the same way from results/kodak/bd_rate_ms-ssim.md. The Speed section's caption and
table are replaced by results/kodak/bench.md whole. The prose around the tables is not touched.

    python scripts/readme_tables.py [--readme README.md] [--results results/kodak] [--check]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codec.evaluate import bd_table_header

BD_HEADER = bd_table_header("psnr")
MS_SSIM_HEADER = bd_table_header("ms-ssim")

BENCH_HEADER_START = "| codec | weights | device |"


def _table_rows(lines: list[str], header_at: int) -> range:
    """Indices of the data rows of the markdown table whose header is ``lines[header_at]``."""
    end = header_at + 2  # header and |---| rule
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return range(header_at + 2, end)


def _pair(row: str) -> tuple[str, str]:
    cells = [c.strip() for c in row.strip().strip("|").split("|")]
    return cells[0], cells[1]


def _find(lines: list[str], predicate, what: str, source: str) -> int:
    found = [i for i, line in enumerate(lines) if predicate(line)]
    if len(found) != 1:
        raise ValueError(f"{source}: expected one {what}, found {len(found)}")
    return found[0]


def sync_bd(readme: list[str], bd_md: list[str], header: str = BD_HEADER, source: str = "bd_rate.md") -> list[str]:
    measured = {_pair(bd_md[i]): bd_md[i]
                for i in _table_rows(bd_md, _find(bd_md, lambda s: s.strip() == header, "BD table", source))}
    out = list(readme)
    for i in _table_rows(out, _find(out, lambda s: s.strip() == header, "BD table", "README")):
        pair = _pair(out[i])
        if pair not in measured:
            raise ValueError(f"README lists {pair[0]} against {pair[1]}, which {source} does not have")
        out[i] = measured[pair]
    return out


def sync_bench(readme: list[str], bench_md: list[str]) -> list[str]:
    """Replace the README's bench caption (the line just above its table's blank line) and table."""
    header = _find(readme, lambda s: s.startswith(BENCH_HEADER_START), "speed table", "README")
    caption = header - 2
    if caption < 0 or readme[header - 1].strip() or not readme[caption].strip():
        raise ValueError("README: the speed table is not preceded by its caption and a blank line")
    rows = _table_rows(readme, header)
    new = [line for line in bench_md if line.strip()]
    new_header = _find(new, lambda s: s.startswith(BENCH_HEADER_START), "speed table", "bench.md")
    block = new[:new_header] + [""] + new[new_header:]
    return readme[:caption] + block + readme[rows.stop:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readme", type=Path, default=Path("README.md"))
    ap.add_argument("--results", type=Path, default=Path("results/kodak"))
    ap.add_argument("--check", action="store_true", help="only report whether the README is up to date")
    args = ap.parse_args(argv)
    text = args.readme.read_text()
    lines = text.splitlines()
    try:
        lines = sync_bd(lines, (args.results / "bd_rate.md").read_text().splitlines())
        if any(line.strip() == MS_SSIM_HEADER for line in lines):
            lines = sync_bd(lines, (args.results / "bd_rate_ms-ssim.md").read_text().splitlines(),
                            MS_SSIM_HEADER, "bd_rate_ms-ssim.md")
        lines = sync_bench(lines, (args.results / "bench.md").read_text().splitlines())
    except (OSError, ValueError) as e:
        print(f"readme_tables: {e}", file=sys.stderr)
        return 2
    new = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    if args.check:
        if new != text:
            print(f"{args.readme} differs from {args.results}; run scripts/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
