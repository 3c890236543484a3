"""What the post-filter's directions give: each learned codec's files of a few training images
(never Kodak) coded with the encoder's directional filters allowed and with them left out
(``postfilter.DIRECTION_CLASS_COUNTS`` emptied), at a few points of each codec's range; per
codec the mean change of PSNR, of the file's size and the net gain (the PSNR change less what
the bytes are worth at 3 dB per doubling, the post-filter's own rule), and how often the encoder
chose directions.

    .venv/bin/python scripts/postfilter_directions.py ../shared/data/train \\
        --out results/tuning/postfilter-directions.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from codec import metrics, postfilter, registry
from codec.evaluate import list_images
from codec.image import open_image

POINTS = {
    "hybrid": [{"base_quality": 10, "rate": 0.0}, {"base_quality": 30, "rate": 0.5}, {"base_quality": 60, "rate": 1.0}],
    "wavelet": [{"rate": -0.5}, {"rate": 0.0}, {"rate": 0.5}, {"rate": 1.0}],
}


def centre_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    y, x = max(0, (h - height) // 2), max(0, (w - width) // 2)
    return np.ascontiguousarray(image[y:y + height, x:x + width])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="training images (never the evaluation set)")
    parser.add_argument("--images", type=int, default=6, help="how many, drawn from those at least 512 px a side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="JSON file for the per-file results")
    args = parser.parse_args()
    large = [p for p in list_images(args.folder) if min(open_image(p).shape[:2]) >= 512]
    if len(large) < args.images:
        raise SystemExit(f"{args.folder} has {len(large)} images of at least 512 px a side, not {args.images}")
    picked = [large[i] for i in np.random.default_rng(args.seed).choice(len(large), args.images, replace=False)]
    tried = postfilter.DIRECTION_CLASS_COUNTS
    rows = []
    for name, points in POINTS.items():
        codec = registry.create(name)
        for path in picked:
            image = centre_crop(open_image(path), 512, 768)
            for params in points:
                coded = {}
                for directions in (True, False):
                    postfilter.DIRECTION_CLASS_COUNTS = tried if directions else ()
                    result = codec.encode(image, **params)
                    pf = (postfilter.unpack(result.sections[postfilter.SECTION])
                          if postfilter.SECTION in result.sections else None)
                    coded[directions] = (len(result.bitstream), metrics.psnr(image, result.image),
                                         pf.directions if pf else 0)
                postfilter.DIRECTION_CLASS_COUNTS = tried
                (with_bytes, with_psnr, chosen), (without_bytes, without_psnr, _) = coded[True], coded[False]
                gain = with_psnr - without_psnr
                rows.append({"codec": name, "image": str(path), **params, "bytes": with_bytes,
                             "bytes_without": without_bytes, "psnr": with_psnr, "psnr_without": without_psnr,
                             "directions": chosen,
                             "net_db": gain - postfilter.rate_cost_db(with_bytes - without_bytes, without_bytes)})
    for name in POINTS:
        mine = [r for r in rows if r["codec"] == name]
        psnr = np.mean([r["psnr"] - r["psnr_without"] for r in mine])
        size = np.mean([r["bytes"] / r["bytes_without"] - 1 for r in mine])
        net = np.mean([r["net_db"] for r in mine])
        chose = sum(r["directions"] > 1 for r in mine)
        print(f"{name}: {len(mine)} files, PSNR {psnr:+.3f} dB, size {100 * size:+.2f} %, net {net:+.3f} dB, "
              f"directions chosen in {chose}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"folder": args.folder, "images": args.images, "seed": args.seed, "files": rows}, f, indent=1)


if __name__ == "__main__":
    main()
