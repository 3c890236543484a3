#!/bin/bash
# One short training burst on a lent GPU machine: continues both codecs from their default
# weights (or WAVELET_INIT / HYBRID_INIT: a manifest name or a checkpoint) at once (one process
# each, they share the GPU), then exports fp16 weights.
#
#   lic-train pack ../shared/data/train .gpudata/train-packed     (here: data small enough to send)
#   scripts/gpu_burst.sh MINUTES OUTDIR [DEVICE]                  (there)
#
# The lent machines have PyTorch (Python 3.12) but not compressai, PyWavelets or pytorch-msssim:
# download their cp312 wheels into .whl/ here (compressai's is tagged manylinux_2_34; 4.7 MB in all)
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl compressai==1.2.8 PyWavelets pytorch-msssim
# and install them there first (/work/.library/device/README.md), e.g.
#   pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
#   TRAIN="python3 -m training.cli" scripts/gpu_burst.sh 7.0 $OUT cuda
# with .gpudata and .whl carried. Exported names are wavelet-$TAG and hybrid-$TAG (TAG is required).
#
# Each codec runs at a constant learning rate for most of MINUTES, then a tenth of it for the
# rest; a decay by time rather than by step count, since the GPU's step rate is not known ahead.
# The hybrid's share ends with its refinement filter trained on the new residual model. Weights
# (not exported as defaults), manifest and logs land in OUTDIR. CODECS="wavelet" runs one;
# WAVELET_RATE_RANGE="LO HI" sets the knob range the wavelet codec trains (default -0.5 1).
# A second call on the same warm machine starts from this checkout's manifest again (it is
# tracked, so it is copied anew) and gives its weights the same new ids: keep one call's
# entries, or continue the second call from the first's checkpoint and keep only its weights.
set -euo pipefail
MIN=${1:?minutes}
OUT=${2:?output folder}
DEV=${3:-cuda}
DATA=${DATA:-.gpudata/train-packed}
TRAIN=${TRAIN:-lic-train}
TAG=${TAG:?TAG names the exported weights (wavelet-TAG, hybrid-TAG), e.g. gpu-s10}
RUNS=runs/$TAG
WEIGHTS=${LIC_WEIGHTS_DIR:-weights}
mkdir -p "$OUT" "$RUNS"
CODECS=${CODECS:-wavelet hybrid}
mins() { python3 -c "print(round($MIN * $1, 2))"; }
# --ema: each run keeps a moving average of its weights, which its checkpoint hands on (--init)
# and its export writes: on the CPU it matched a tenfold decay's gain while the rate stayed high.
common=(--data "$DATA" --device "$DEV" --threads 4 --steps 10000000 --log-every 100
        --checkpoint-every-minutes 1000 --batch 16 --crop 256 --ema 0.999)

# The wavelet codec's knob reaches below 0 (its sweep starts at -0.5), so its runs train all of it.
read -r -a wavelet_rates <<< "${WAVELET_RATE_RANGE:--0.5 1}"
wavelet() {
    $TRAIN wavelet "${common[@]}" --rate-range "${wavelet_rates[@]}" --init "${WAVELET_INIT:-default}" \
        --out $RUNS/wavelet --lr 2e-4 --warmup-steps 100 --max-minutes "$(mins 0.74)"
    $TRAIN wavelet "${common[@]}" --rate-range "${wavelet_rates[@]}" --init $RUNS/wavelet/last.ckpt \
        --out $RUNS/wavelet-decay --lr 2e-5 --warmup-steps 0 --max-minutes "$(mins 0.2)"
}

hybrid() {
    $TRAIN hybrid "${common[@]}" --init "${HYBRID_INIT:-default}" --out $RUNS/hybrid \
        --lr 2e-4 --warmup-steps 100 --max-minutes "$(mins 0.48)"
    $TRAIN hybrid "${common[@]}" --init $RUNS/hybrid/last.ckpt --out $RUNS/hybrid-decay \
        --lr 2e-5 --warmup-steps 0 --max-minutes "$(mins 0.14)"
    $TRAIN refine "${common[@]}" --pretrain $RUNS/hybrid-decay/last.ckpt --config refine_channels=16 \
        --out $RUNS/refine --lr 5e-4 --warmup-steps 100 --max-minutes "$(mins 0.3)"
}

pids=()
for codec in $CODECS; do
    $codec > "$OUT/$codec.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
if [ -f $RUNS/wavelet-decay/last.ckpt ]; then
    $TRAIN export $RUNS/wavelet-decay/last.ckpt --name "wavelet-$TAG" --fp16 --no-check
    cp "$WEIGHTS/wavelet-$TAG.pt" "$OUT/"
fi
if [ -f $RUNS/refine/last.ckpt ]; then
    $TRAIN export $RUNS/refine/last.ckpt --name "hybrid-$TAG" --fp16 --no-check
    cp "$WEIGHTS/hybrid-$TAG.pt" "$OUT/"
fi
cp "$WEIGHTS/manifest.json" "$OUT/"
tar czf "$OUT/logs.tgz" $RUNS/*/*.csv $RUNS/*/*.json 2>/dev/null || true
exit $status
