#!/usr/bin/env bash
# `make demo`: the whole round trip on a simulated competition, against a local stand-in of Kaggle.
#   data/sim-demo-kaggle/  the "Kaggle side": a simulated competition with its truth
#   data/sim-demo/         what the competitor downloads from the stand-in, and the pipeline's DATA
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${DEMO_PORT:-8765}
SOURCE=data/sim-demo-kaggle
DATA=data/sim-demo
STATE=build/standin
PY=.venv/bin/python

mkdir -p "$STATE/config"
# Demo credentials for the stand-in only (not a Kaggle key); the file stays private to the user.
printf '{"username": "demo-user", "key": "demo-key-not-secret"}\n' > "$STATE/config/kaggle.json"
chmod 600 "$STATE/config/kaggle.json"
export KAGGLE_CONFIG_DIR="$PWD/$STATE/config"
export KIT_KAGGLE_ENDPOINT="http://127.0.0.1:$PORT"

$PY -m kit serve-kaggle --port "$PORT" --competition-dir "$SOURCE" --state-dir "$STATE" \
    --username demo-user --key demo-key-not-secret > "$STATE/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    (echo > /dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break
    sleep 0.2
done

step() { printf '\n=== %s\n' "$*"; }
timed() { local t0=$SECONDS; "$@"; printf '    (%d s)\n' $((SECONDS - t0)); }

step "download from the stand-in Kaggle"
timed make --no-print-directory download COMPETITION=plasticc-2018 DATA=$DATA
# The stand-in never serves the truth; a competitor gets it later (Zenodo). Copy it for local scoring.
cp "$SOURCE/test_truth.csv" "$DATA/test_truth.csv"

# The demo's preset: fewer augmented copies than a real run's default (AUGMENT_COPIES=40), to stay within minutes.
DEMO_AUGMENT="AUGMENT_COPIES=${DEMO_COPIES:-4} GALACTIC_COPIES=${DEMO_GALACTIC_COPIES:-1}"
step "features";          timed make --no-print-directory features DATA=$DATA
step "GP features";       timed make --no-print-directory gp-features DATA=$DATA
step "augmentation";      timed make --no-print-directory augment DATA=$DATA $DEMO_AUGMENT
step "LightGBM";          timed make --no-print-directory train-lgbm DATA=$DATA $DEMO_AUGMENT
step "sequences";         timed make --no-print-directory sequences DATA=$DATA
step "LSTM";              timed make --no-print-directory train-lstm DATA=$DATA LSTM_ARGS="${DEMO_LSTM_ARGS:---epochs 6}"
step "predict + blend";   timed make --no-print-directory predict blend DATA=$DATA
step "submission";        timed make --no-print-directory submission validate DATA=$DATA MODEL=blend
step "local score";       timed make --no-print-directory score DATA=$DATA MODEL=blend
step "submit";            timed make --no-print-directory submit DATA=$DATA MODEL=blend
step "scores";            make --no-print-directory submissions leaderboard DATA=$DATA
