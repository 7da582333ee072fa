"""Throughput and peak memory of the preprocessing chain: streaming (the pipeline's) vs load-all.

Usage: python bench/preprocess_memory.py [--sizes 200 800] [--input-size 320]

Both chains decode the shared chest X-rays (../shared/data/mirror, listed in manifest.csv),
resize them to the input size, build a reference histogram from a "train" 70 %, histogram-match
every image, stack original / CLAHE / BEASF and write 3-channel PNGs. Lung-mask prediction is
left out (it is the same U-Net cost in both).

- streaming: the preprocess pipeline's order: one image at a time, decode -> resize -> gray PNG
  (+ its histogram when in train), then gray PNG -> match -> stack -> PNG. Only one image and
  256 numbers are in memory at any time.
- naive: as the seed repository does: every image decoded into a list of float64 arrays first,
  then the model inputs built into one float64 (n, h, w, 3) array, then written.

Each chain runs in its own subprocess so that ``ru_maxrss`` is the peak of that chain alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from covid_cxnet_pipeline.imaging import gray_histogram, load_grayscale, resize
from covid_cxnet_pipeline.pipelines.preprocess.chain import enhance_roi, read_png, write_png_atomic

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHANNELS = ("original", "clahe", "beasf")
ENHANCE = {"clahe_clip_limit": 2.0, "clahe_tile_grid_size": (8, 8), "beasf_gamma": 1.5}
TRAIN_SHARE = 0.7


def image_paths(count: int) -> list[Path]:
    """The first ``count`` images of the manifest (cycled when it lists fewer)."""
    with (SHARED / "manifest.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["kind"] == "image"]
    paths = [SHARED / row["path"] for row in rows]
    return [paths[number % len(paths)] for number in range(count)]


def streaming_chain(paths: list[Path], size: tuple[int, int], out: Path) -> None:
    """Decode -> resize -> gray PNG (histogram from train), then match -> stack -> PNG."""
    n_train = int(len(paths) * TRAIN_SHARE)
    accumulated = np.zeros(256)
    for number, path in enumerate(paths):
        gray = resize(load_grayscale(path), size)
        write_png_atomic(gray, out / f"gray_{number}.png")
        if number < n_train:
            accumulated += gray_histogram(gray) / gray.size
    reference = accumulated / n_train
    for number in range(len(paths)):
        gray = read_png(out / f"gray_{number}.png")
        write_png_atomic(enhance_roi(gray, reference, CHANNELS, ENHANCE), out / f"{number}.png")


def naive_chain(paths: list[Path], size: tuple[int, int], out: Path) -> None:
    """Everything in RAM as float64 first, as the seed code does, then written at the end."""
    images = [load_grayscale(path).astype(np.float64) for path in paths]
    resized = [resize(image.astype(np.uint8), size) for image in images]
    n_train = int(len(paths) * TRAIN_SHARE)
    reference = np.mean([gray_histogram(gray) / gray.size for gray in resized[:n_train]], axis=0)
    stacked = np.zeros((len(paths), *size, 3), dtype=np.float64)
    for number, gray in enumerate(resized):
        stacked[number] = enhance_roi(gray, reference, CHANNELS, ENHANCE)
    for number in range(len(paths)):
        write_png_atomic(stacked[number].astype(np.uint8), out / f"{number}.png")


def run_chain(chain: str, count: int, size: int) -> dict[str, float]:
    """Run one chain in this process and measure it (the subprocess side)."""
    paths = image_paths(count)
    with tempfile.TemporaryDirectory(prefix="cxnet-bench-") as folder:
        start = time.perf_counter()
        (streaming_chain if chain == "streaming" else naive_chain)(
            paths, (size, size), Path(folder)
        )
        seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    return {"images": count, "seconds": seconds, "peak_rss_mb": peak_mb}


def measure(chain: str, count: int, size: int) -> dict[str, float]:
    """Run one chain in a fresh subprocess and read its JSON result."""
    command = [sys.executable, __file__, "--child", chain, "--sizes", str(count)]
    command += ["--input-size", str(size)]
    completed = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Print images/s and peak RSS of both chains at each dataset size, with ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 800])
    parser.add_argument("--input-size", type=int, default=320)
    parser.add_argument("--child", choices=("streaming", "naive"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_chain(args.child, args.sizes[0], args.input_size)))
        return 0
    if not (SHARED / "manifest.csv").is_file():
        print(f"needs the shared chest X-rays in {SHARED}", file=sys.stderr)
        return 1
    print(f"input size {args.input_size}x{args.input_size}, channels {'/'.join(CHANNELS)}")
    header = (
        f"{'images':>6}  {'chain':<9}  {'img/s':>7}  {'peak RSS MB':>11}  "
        f"{'speed vs naive':>14}  {'RSS vs naive':>12}"
    )
    print(header)
    for count in args.sizes:
        naive = measure("naive", count, args.input_size)
        streaming = measure("streaming", count, args.input_size)
        for name, result in (("naive", naive), ("streaming", streaming)):
            rate = result["images"] / result["seconds"]
            speed = rate / (naive["images"] / naive["seconds"])
            memory = result["peak_rss_mb"] / naive["peak_rss_mb"]
            print(
                f"{count:>6}  {name:<9}  {rate:>7.1f}  {result['peak_rss_mb']:>11.0f}  "
                f"{speed:>13.2f}x  {memory:>11.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
