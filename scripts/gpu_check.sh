#!/usr/bin/env bash
# The prepared GPU check (issue 19): what the CPU test suite cannot show, on one CUDA GPU, in < 8 minutes.
#
#   bash scripts/gpu_check.sh --prepare gpu_check_bundle   # HERE (with network): fill the bundle folder
#   bash scripts/gpu_check.sh [--bundle gpu_check_bundle] [--out gpu_check.md]   # ON THE GPU MACHINE
#   bash scripts/gpu_check.sh --cpu [--out cpu_check.md]   # the same code paths, tiny, on the CPU (tested)
#   ... -- --only resume ddp                               # a subset of the checks (words of their names)
#
# The bundle (gitignored; nothing in it is committed) carries what a bare GPU machine may lack:
#   wheels/   pure-Python wheels (pip download --no-deps): hydra-core, omegaconf, antlr4-python3-runtime,
#             torch-fidelity, pytorch-lightning, lightning-utilities, torchmetrics, submitit,
#             hydra-submitit-launcher (the project itself runs from this checkout: PYTHONPATH)
#   data/fashion-mnist/   the four Fashion-MNIST .gz files
#   cache/fmnist_classifier_v1.pt   the FMNIST feature classifier (so nothing is trained there)
# The run installs (offline, --no-index) only the modules that fail to import, then runs
# scripts/gpu_check.py: environment; CPU vs GPU sampling for the same seed; BigGAN bf16-mixed and
# 16-mixed for 40 iterations with EMA; exact resume with trainer.deterministic=true; 2-process DDP
# (gloo) on the one GPU with cross-replica BN; the demo recipe for 100 iterations with the FID
# callback and the after-training evaluation; it/s of CIFAR-10 SNResGAN-32 on random data, fp32 vs
# bf16. One table at the end, written to --out (and --out's .json).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
MODE=run
BUNDLE=$REPO/gpu_check_bundle
OUT=gpu_check.md
DEVICE=cuda
EXTRA=()
WHEELS=(hydra-core omegaconf "antlr4-python3-runtime==4.9.3" torch-fidelity pytorch-lightning lightning-utilities
        torchmetrics submitit hydra-submitit-launcher)

while [[ $# -gt 0 ]]; do
    case $1 in
        --prepare) MODE=prepare; BUNDLE=${2:?--prepare needs a folder}; shift 2 ;;
        --bundle) BUNDLE=${2:?}; shift 2 ;;
        --out) OUT=${2:?}; shift 2 ;;
        --cpu|--dry-run) DEVICE=cpu; shift ;;
        --) shift; EXTRA=("$@"); break ;;   # passed to gpu_check.py, e.g. -- --only resume ddp
        *) echo "gpu_check: unknown argument $1 (--prepare DIR | --bundle DIR | --out FILE | --cpu)" >&2; exit 2 ;;
    esac
done

prepare() {
    mkdir -p "$BUNDLE/wheels" "$BUNDLE/data/fashion-mnist" "$BUNDLE/cache"
    local pinned=()  # the versions this checkout is tested with, where installed here
    for w in "${WHEELS[@]}"; do
        if [[ $w == *==* ]]; then pinned+=("$w"); continue; fi
        v=$("$PY" -c "import importlib.metadata as m; print(m.version('$w'))" 2>/dev/null || true)
        pinned+=("$w${v:+==$v}")
    done
    "$PY" -m pip download --no-deps -q -d "$BUNDLE/wheels" "${pinned[@]}"
    local root=${SLIMGAN_FMNIST_ROOT:-/usr/share/datasets/fashion-mnist}
    cp "$root"/*-ubyte.gz "$BUNDLE/data/fashion-mnist/"
    local classifier=${SLIMGAN_FMNIST_CLASSIFIER:-$HOME/.cache/slimgan_pl/fmnist_classifier_v1.pt}
    if [[ -f $classifier ]]; then cp "$classifier" "$BUNDLE/cache/"; else echo "gpu_check: no classifier at $classifier (the demo check will be skipped)" >&2; fi
    du -sh "$BUNDLE"
    echo "gpu_check: bundle ready in $BUNDLE; on the GPU machine: bash scripts/gpu_check.sh --bundle $BUNDLE"
}

install_missing() {  # offline, and only what does not import (never touches torch)
    local missing=()
    for mod in hydra omegaconf torch_fidelity pytorch_lightning torchmetrics submitit hydra_plugins.hydra_submitit_launcher; do
        "$PY" -c "import $mod" 2>/dev/null || missing+=("$mod")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        [[ -d $BUNDLE/wheels ]] || { echo "gpu_check: missing ${missing[*]} and no $BUNDLE/wheels (run --prepare first)" >&2; exit 2; }
        echo "gpu_check: installing from $BUNDLE/wheels (missing: ${missing[*]})"
        "$PY" -m pip install -q --no-index --no-deps --no-build-isolation "$BUNDLE"/wheels/*
    fi
}

case $MODE in
    prepare) prepare ;;
    run)
        if [[ $DEVICE == cuda ]]; then install_missing; fi
        export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
        export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
        args=(--device "$DEVICE" --out "$OUT")
        [[ -d $BUNDLE/data/fashion-mnist ]] && args+=(--data-root "$BUNDLE/data/fashion-mnist")
        [[ -f $BUNDLE/cache/fmnist_classifier_v1.pt ]] && args+=(--classifier "$BUNDLE/cache/fmnist_classifier_v1.pt")
        if [[ $DEVICE == cuda ]]; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true; fi
        exec "$PY" "$REPO/scripts/gpu_check.py" "${args[@]}" "${EXTRA[@]}"
        ;;
esac
