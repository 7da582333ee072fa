#!/usr/bin/env bash
# Every pipeline, in order, against a loopback mirror of ../shared/data/mirror, with wall times,
# then a summary of the figures the README quotes (bench/mirror_summary.py).
#
# Usage (from the project root): bash bench/mirror_end_to_end.sh [PORT]
# Writes into this checkout's data/ and mlflow.db: run it in a fresh clone for clean figures.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${1:-8765}"
shared="${CXR_SHARED_DATA:-../shared/data}"
log_dir="data/08_reporting/end_to_end"
mkdir -p "$log_dir"
export KEDRO_DISABLE_TELEMETRY=1 MPLBACKEND=Agg TF_CPP_MIN_LOG_LEVEL=2
export CXR_MIRROR_URL="http://127.0.0.1:${port}"

python -m http.server "$port" --bind 127.0.0.1 -d "$shared/mirror" >"$log_dir/http.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
sleep 1

run() {
    local label="$1"
    shift
    local start end
    start=$(date +%s)
    if ! kedro run --env=mirror "$@" >"$log_dir/$label.log" 2>&1; then
        echo "FAILED: kedro run --env=mirror $* (log: $log_dir/$label.log)" >&2
        tail -20 "$log_dir/$label.log" >&2
        exit 1
    fi
    end=$(date +%s)
    echo "$label $((end - start))" >>"$log_dir/timings.txt"
    echo "$label: $((end - start)) s"
}

: >"$log_dir/timings.txt"
run ingest --pipeline=ingest
run ingest_again --pipeline=ingest
run curate --pipeline=curate
run train_segmentation --pipeline=train_segmentation
run preprocess --pipeline=preprocess
run preprocess_again --pipeline=preprocess
run train_binary --pipeline=train_binary
run train_multiclass --pipeline=train_multiclass
python bench/mirror_summary.py --shared "$shared" --logs "$log_dir"
