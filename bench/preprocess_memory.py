"""Throughput and peak memory of the preprocessing chain: streaming (the pipeline's) vs load-all.

Usage: python bench/preprocess_memory.py [--sizes 200 800] [--input-size 320]

Both chains decode the shared chest X-rays (../shared/data/mirror, listed in manifest.csv),
resize them to the input size, build a reference histogram from a "train" 70 %, histogram-match
every image, stack original / CLAHE / BEASF and write 3-channel PNGs. Lung-mask prediction is
left out (it is the same U-Net cost in both).

- streaming: the preprocess pipeline's own nodes, with conf/base/parameters_preprocess.yml and
  ``use_lung_roi: false``, ``workers: 2``: ``crop_lung_roi`` (decode -> resize -> gray PNG, in
  worker processes), ``build_histogram_reference`` (one image at a time) and
  ``write_model_inputs`` (match -> stack -> PNG, in worker processes).
- naive: as the seed repository does: every image decoded into a list of float64 arrays first,
  then the model inputs built into one float64 (n, h, w, 3) array, then written, in one process.

Each chain runs in its own subprocess so that ``ru_maxrss`` is the peak of that chain alone.
Peak RSS counts the worker processes too: ``RUSAGE_SELF`` is the chain's main process and
``RUSAGE_CHILDREN`` the largest worker; the total adds one largest worker per worker process,
an upper bound of the memory the chain held at once.
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
import pandas as pd
import yaml

from covid_cxnet_pipeline.imaging import gray_histogram, load_grayscale, resize
from covid_cxnet_pipeline.pipelines.preprocess import nodes
from covid_cxnet_pipeline.pipelines.preprocess.chain import enhance_roi, write_png_atomic

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared" / "data"
CHANNELS = ("original", "clahe", "beasf")
ENHANCE = {"clahe_clip_limit": 2.0, "clahe_tile_grid_size": (8, 8), "beasf_gamma": 1.5}
TRAIN_SHARE = 0.7
WORKERS = 2


def image_paths(count: int) -> list[Path]:
    """The first ``count`` images of the manifest (cycled when it lists fewer)."""
    with (SHARED / "manifest.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["kind"] == "image"]
    paths = [SHARED / row["path"] for row in rows]
    return [paths[number % len(paths)] for number in range(count)]


def streaming_params(size: tuple[int, int], out: Path) -> dict:
    """The pipeline's preprocess parameters, full images, bench folders and channels."""
    text = (PROJECT / "conf" / "base" / "parameters_preprocess.yml").read_text()
    params = yaml.safe_load(text)["preprocess"]
    params.update(use_lung_roi=False, workers=WORKERS, channels=list(CHANNELS))
    params["enhance"] = {**params["enhance"], **ENHANCE}
    params["resize"] = {**params["resize"], "size": list(size)}
    params["folders"] = {
        name: str(out / name)
        for name in ("lung_masks", "lung_roi", "histogram_references", "model_input")
    }
    return params


def streaming_chain(paths: list[Path], size: tuple[int, int], out: Path) -> None:
    """The preprocess nodes after the U-Net: ROI (full image) -> reference -> model inputs."""
    params = streaming_params(size, out)
    # With use_lung_roi false the mask only rides along: one empty mask serves every image.
    empty_mask = out / "empty_mask.png"
    write_png_atomic(np.zeros((16, 16), np.uint8), empty_mask)
    n_train = int(len(paths) * TRAIN_SHARE)
    lung_masks = pd.DataFrame(
        {
            "image_id": [f"bench:{number}" for number in range(len(paths))],
            "source_id": "bench",
            "sha256": "",
            "path": [str(path) for path in paths],
            "label": "normal",
            "split": ["train" if number < n_train else "test" for number in range(len(paths))],
            "patient_group": [f"bench:{number}" for number in range(len(paths))],
            "unet_sha256": "none",
            # One key per row (a manifest cycled for larger sizes lists a file twice).
            "mask_key": [f"bench-{number}" for number in range(len(paths))],
            "lung_mask_full_path": str(empty_mask),
            "mask_area": 0.0,
            "mask_computed": False,
        }
    )
    roi_table = nodes.crop_lung_roi(lung_masks, params)
    reference = nodes.build_histogram_reference(roi_table, params)
    nodes.write_model_inputs(roi_table, reference, params)


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
    # ru_maxrss is in KiB on Linux; RUSAGE_CHILDREN is the largest finished worker.
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    workers = WORKERS if chain == "streaming" else 0
    return {
        "images": count,
        "seconds": seconds,
        "self_rss_mb": self_mb,
        "worker_rss_mb": worker_mb,
        "workers": workers,
        "peak_rss_mb": self_mb + workers * worker_mb,
    }


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
    print(f"peak RSS = main process + {WORKERS} x largest worker (streaming; an upper bound)")
    header = (
        f"{'images':>6}  {'chain':<9}  {'img/s':>7}  {'main MB':>7}  {'worker MB':>9}  "
        f"{'peak RSS MB':>11}  {'speed vs naive':>14}  {'RSS vs naive':>12}"
    )
    print(header)
    for count in args.sizes:
        naive = measure("naive", count, args.input_size)
        streaming = measure("streaming", count, args.input_size)
        for name, result in (("naive", naive), ("streaming", streaming)):
            rate = result["images"] / result["seconds"]
            speed = rate / (naive["images"] / naive["seconds"])
            memory = result["peak_rss_mb"] / naive["peak_rss_mb"]
            workers = f"{result['workers']} x {result['worker_rss_mb']:.0f}"
            print(
                f"{count:>6}  {name:<9}  {rate:>7.1f}  {result['self_rss_mb']:>7.0f}  "
                f"{workers if result['workers'] else '-':>9}  {result['peak_rss_mb']:>11.0f}  "
                f"{speed:>13.2f}x  {memory:>11.2f}x"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
