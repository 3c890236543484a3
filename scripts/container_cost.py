"""What the ``.lic`` container costs JPEG, the reference: its header bytes on each image of a
folder, and the BD-rate of JPEG in ``.lic`` files against the same JFIF streams alone, over the
JPEG codec's sweep (the figure docs/FORMAT.md quotes).

    .venv/bin/python scripts/container_cost.py ../shared/data/kodak
"""

from __future__ import annotations

import argparse

import numpy as np

from codec import create, metrics
from codec.evaluate import list_images
from codec.image import open_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    args = parser.parse_args()
    codec = create("jpeg")
    images = [open_image(p) for p in list_images(args.folder)]
    if not images:
        raise SystemExit(f"no images in {args.folder}")
    in_file, alone, psnr, header = [], [], [], []
    for params in codec.sweep_points({}):
        bits_file = bits_alone = quality = 0.0
        for image in images:
            res = codec.encode(image, **params)
            pixels = image.shape[0] * image.shape[1]
            bits_file += 8 * len(res.bitstream) / pixels
            bits_alone += 8 * len(res.sections["jpeg"]) / pixels
            quality += metrics.psnr(image, res.image)
            header.append(len(res.bitstream) - len(res.sections["jpeg"]))
        n = len(images)
        in_file.append(bits_file / n)
        alone.append(bits_alone / n)
        psnr.append(quality / n)
    print(f"{len(images)} images, {len(in_file)} qualities: container {min(header)}-{max(header)} bytes "
          f"(median {int(np.median(header))}) around each JFIF stream")
    print(f"BD-rate of JPEG in .lic files vs the JFIF streams alone: "
          f"{metrics.bd_rate((alone, psnr), (in_file, psnr)):+.2f} %")


if __name__ == "__main__":
    main()
