"""The upper convex hull of several ``lic-codec grid --out`` files of one codec over the same
parameter grid, their points averaged with each file's image count as its weight (the mean over
all their images, as ``lic-codec eval`` averages): how the hybrid's sweep was chosen.

    .venv/bin/python scripts/sweep_hull.py results/tuning/hybrid-s13-grid.json \\
        results/tuning/hybrid-s13-wikipedia-grid.json
"""

from __future__ import annotations

import argparse
import json

from codec.evaluate import upper_hull


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("grids", nargs="+", help="JSON files written by lic-codec grid --out")
    args = parser.parse_args()
    grids = [json.loads(open(path).read()) for path in args.grids]
    if len({g["codec"] for g in grids}) != 1:
        raise SystemExit("the grids are of different codecs")

    def key(point):
        return json.dumps(point["params"], sort_keys=True)

    by_key = [{key(p): p for p in g["points"]} for g in grids]
    if any(set(points) != set(by_key[0]) for points in by_key):
        raise SystemExit("the grids do not cover the same parameter values")
    counts = [len(g["images"]) for g in grids]
    total = sum(counts)
    keys = [key(p) for p in grids[0]["points"]]
    bpp = [sum(n * points[k]["bpp"] for n, points in zip(counts, by_key)) / total for k in keys]
    psnr = [sum(n * points[k]["psnr"] for n, points in zip(counts, by_key)) / total for k in keys]
    print(f"{grids[0]['codec']}: hull of {len(grids)} grids, {total} images")
    for i in upper_hull(bpp, psnr):
        print(f"  {keys[i]}  {bpp[i]:.4f} bpp  {psnr[i]:.2f} dB")


if __name__ == "__main__":
    main()
