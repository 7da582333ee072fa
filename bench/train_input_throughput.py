"""Benchmark: tf.data input images/s next to the classifier's training images/s, same data.

Tells whether training is input-bound. Three numbers from one run, on the same batches:
  1. input pipeline alone (read, decode, resize if needed, augment, batch), no model;
  2. model training alone, on batches already held in memory (no input cost);
  3. end-to-end ``model.fit`` over the streaming dataset (input overlapped by prefetch).

Usage (from the project root):
  python bench/train_input_throughput.py --index data/05_model_input/model_input_index.parquet
  python bench/train_input_throughput.py --env base --backbone covid_cxnet   # paper profile
  python bench/train_input_throughput.py            # synthetic PNGs, mirror profile

Size, batch, backbone, base-CNN layout and augmentation default to the training profile of a
Kedro environment (``--env``, default ``mirror``: conf/base/parameters_train.yml with
conf/<env>/parameters_train.yml merged over it); flags override them. ``--index`` takes a
parquet file or a Kedro versioned dataset folder (``<name>.parquet/<version>/<name>.parquet``),
of which the latest version is read. Without ``--index`` it writes 256 SYNTHETIC PNGs (smooth
random fields, labelled as synthetic in the output) to a temporary folder: throughput only, no
medical content.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

# Keep TensorFlow's C++ start-up chatter out of the report.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from covid_cxnet_pipeline.training.dataset import make_dataset  # noqa: E402
from covid_cxnet_pipeline.training.seeding import set_global_seed  # noqa: E402
from covid_cxnet_pipeline.training.trainer import compile_classifier  # noqa: E402

CLASSES = {"binary": ["not_covid", "covid"], "multiclass": ["normal", "cap", "covid"]}
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def training_profile(env: str) -> dict:
    """The shared ``train`` parameters of an environment, merged over conf/base by Kedro.

    Kedro's own config loader with the project's settings (soft merge: the environment
    overrides single keys of conf/base), so the bench sees what ``kedro run --env`` sees.
    """
    from kedro.config import OmegaConfigLoader

    from covid_cxnet_pipeline import settings

    # default_run_env is replaced by the explicit env.
    loader_args = {k: v for k, v in settings.CONFIG_LOADER_ARGS.items() if k != "default_run_env"}
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env=env, **loader_args)
    return loader["parameters"].get("train") or {}


def resolve_index_path(path: Path) -> Path:
    """A parquet file, or the latest version inside a Kedro versioned dataset folder."""
    if path.is_file():
        return path
    versions = sorted(v / path.name for v in path.iterdir() if (v / path.name).is_file())
    if not versions:
        raise SystemExit(f"{path}: neither a parquet file nor a Kedro versioned dataset folder")
    return versions[-1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, help="model_input_index parquet (else synthetic)")
    parser.add_argument("--split", default="train", help="split of the index to read [train]")
    parser.add_argument("--env", default="mirror", help="Kedro environment of the defaults")
    parser.add_argument("--size", type=int, help="model input size [train.input_size]")
    parser.add_argument("--batch", type=int, help="batch size [train.batch_size]")
    parser.add_argument(
        "--backbone",
        choices=("base_cnn", "densenet121", "covid_cxnet"),
        help="classifier from covid_cxnet_pipeline.models [train.backbone]",
    )
    parser.add_argument("--task", default="binary", choices=tuple(CLASSES))
    parser.add_argument("--train-steps", type=int, default=8, help="timed training batches [8]")
    parser.add_argument("--n-synthetic", type=int, default=256, help="synthetic PNGs [256]")
    parser.add_argument("--no-augment", action="store_true", help="measure without augmentation")
    parser.add_argument(
        "--no-determinism", action="store_true", help="skip op determinism (faster, not exact)"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def write_synthetic_index(folder: Path, n_images: int, size: int, seed: int) -> pd.DataFrame:
    """Write smooth random 3-channel PNGs (compressible like radiographs, unlike pure noise)."""
    import cv2

    rng = np.random.default_rng(seed)
    labels = ("normal", "cap", "covid")
    rows = []
    for number in range(n_images):
        coarse = rng.random((size // 16 + 1, size // 16 + 1)).astype(np.float32)
        field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        gray = np.clip(field * 200 + rng.normal(0, 4, (size, size)), 0, 255).astype(np.uint8)
        path = folder / f"synthetic-{number:04d}.png"
        cv2.imwrite(str(path), np.dstack([gray, gray, gray]))
        rows.append(
            {
                "image_id": f"synthetic:{number}",
                "path": str(path),
                "label": labels[number % 3],
                "split": "train",
            }
        )
    return pd.DataFrame(rows)


def load_builder():
    """Import the classifier factory lazily, with a clear error when it is missing."""
    try:
        from covid_cxnet_pipeline.models.covid_cxnet import build_classifier
    except ImportError as error:
        raise SystemExit(
            "covid_cxnet_pipeline.models.covid_cxnet.build_classifier is not importable "
            f"({error}); the model builders are needed for the training half of this benchmark."
        ) from error
    return build_classifier


def time_input(dataset, n_images: int, min_seconds: float = 3.0) -> tuple[float, int]:
    """Steady-state images/s of the repeated dataset (as ``fit`` consumes it).

    One warm-up batch is drawn first so thread-pool start-up and the shuffle buffer fill are
    not counted; then batches are drawn for at least one full pass and ``min_seconds``.
    """
    iterator = iter(dataset.repeat())
    next(iterator)
    seen = 0
    start = time.perf_counter()
    while seen < n_images or time.perf_counter() - start < min_seconds:
        images, _labels = next(iterator)
        seen += int(images.shape[0])
    return seen / (time.perf_counter() - start), seen


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import tensorflow as tf

    profile = training_profile(args.env)
    size = profile.get("input_size", 224)
    args.size = args.size or int(size if isinstance(size, int) else size[0])
    args.batch = args.batch or int(profile.get("batch_size", 16))
    args.backbone = args.backbone or profile.get("backbone", "base_cnn")

    set_global_seed(args.seed, op_determinism=not args.no_determinism)
    scratch = tempfile.TemporaryDirectory(prefix="cxnet-bench-")
    if args.index is None:
        index = write_synthetic_index(Path(scratch.name), args.n_synthetic, args.size, args.seed)
        source = (
            f"SYNTHETIC data: {len(index)} generated {args.size}x{args.size} PNGs "
            "(smooth random fields, not chest X-rays; throughput only)"
        )
        split = "train"
    else:
        index_file = resolve_index_path(args.index)
        index = pd.read_parquet(index_file)
        split = args.split
        source = f"{index_file} split={split} ({int((index['split'] == split).sum())} images)"
    classes = CLASSES[args.task]
    augment = None if args.no_augment else profile.get("augment")
    dataset = make_dataset(
        index,
        split,
        args.task,
        classes,
        args.size,
        batch_size=args.batch,
        shuffle=True,
        seed=args.seed,
        augment_cfg=augment,
    )

    input_rate, input_seen = time_input(dataset, int((index["split"] == split).sum()))

    build_classifier = load_builder()
    build = build_classifier(
        {
            "backbone": args.backbone,
            "input_size": args.size,
            "channels": 3,
            "n_classes": len(classes),
            "init": "random",
            "base_cnn": profile.get("base_cnn") or {},
            "seed": args.seed,
        }
    )
    model = compile_classifier(build.model, learning_rate=1e-4, label_smoothing=0.1)
    # Batches held in memory: measures the model alone (forward, backward, Adam update).
    held = [batch for batch in dataset.take(max(1, min(args.train_steps, 4)))]
    start = time.perf_counter()
    model.train_on_batch(*held[0])
    first_step_s = time.perf_counter() - start
    trained = 0
    start = time.perf_counter()
    for step in range(args.train_steps):
        images, labels = held[step % len(held)]
        model.train_on_batch(images, labels)
        trained += int(images.shape[0])
    model_rate = trained / (time.perf_counter() - start)

    # End to end: the streaming dataset feeding fit, prefetch overlapping input and compute.
    steps = max(1, args.train_steps)
    stream = dataset.repeat()
    # A one-step fit first: fit builds its own iterator and step function on the first call.
    model.fit(stream, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)
    start = time.perf_counter()
    model.fit(stream, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    fit_rate = steps * args.batch / (time.perf_counter() - start)
    peak_rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6

    label = f"{args.size}x{args.size}x3, batch {args.batch}"
    augmenting = "with augmentation" if augment else "no augmentation"
    print(f"Training input throughput benchmark ({tf.__version__}, {os.cpu_count()} CPUs)")
    print(f"  profile: conf/{args.env} train parameters (flags override)")
    print(f"  data:  {source}")
    print(f"  model: {args.backbone} ({build.init_used} init), task {args.task}, {label}")
    print(f"  op determinism: {not args.no_determinism}")
    print(f"  tf.data input ({augmenting}), {input_seen} images: {input_rate:10.1f} images/s")
    print(
        f"  model training, batches in memory, {trained} images: {model_rate:10.1f} images/s "
        f"(first step incl. tracing {first_step_s:.1f} s)"
    )
    print(f"  end-to-end fit on the stream, {steps * args.batch} images: {fit_rate:10.1f} images/s")
    ratio = input_rate / model_rate
    if ratio < 1.0:
        verdict = "training is INPUT-BOUND"
    elif ratio < 2.0:
        verdict = "input keeps up, but both compete for the same CPU cores (see end-to-end)"
    else:
        verdict = "input is NOT the bottleneck"
    print(f"  input / model ratio: {ratio:.1f}x -> {verdict}")
    print(f"  peak RSS: {peak_rss_gb:.2f} GB")
    scratch.cleanup()


if __name__ == "__main__":
    main(sys.argv[1:])
