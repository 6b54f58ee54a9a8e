#!/usr/bin/env bash
# The prepared GPU check (issues 19, 32): what the CPU test suite cannot show, on one CUDA GPU, in < 10 minutes.
#
#   bash scripts/gpu_check.sh --prepare gpu_check_bundle   # HERE (PyPI reachable): fill the bundle folder
#   bash scripts/gpu_check.sh [--bundle gpu_check_bundle] [--out $OUT/gpu_check.md]   # ON THE GPU MACHINE
#   bash scripts/gpu_check.sh --cpu [--out cpu_check.md]   # the same code paths, smoke-sized, on the CPU (tested)
#   ... -- --only syncs speed                              # a subset of the checks (words of their names)
#
# The bundle (gitignored; nothing in it is committed) carries what a bare GPU machine may lack:
#   wheels/   pure-Python wheels (pip download --no-deps): hydra-core, omegaconf, antlr4-python3-runtime (a
#             source distribution only: built with setuptools, also bundled), torch-fidelity, pytorch-lightning,
#             lightning-utilities, torchmetrics, submitit, hydra-submitit-launcher, setuptools, wheel
#   data/fashion-mnist/   the four Fashion-MNIST .gz files
# The FMNIST classifier is the one shipped in slimgan_pl/metrics/weights/ (nothing is trained there).
# torchvision is a compiled package tied to the torch build: it is checked, never bundled.
# The run installs (offline, --no-index) only the modules that fail to import, into a venv that sees the
# system's torch (--system-site-packages: a system Python refuses pip installs under PEP 668); where venv is
# unavailable, pip --user --break-system-packages (only pure-Python wheels, into the user site: the system's
# packages are not touched). Then scripts/gpu_check.py runs the checks (docs/speed.md, "GPU check") and writes
# --out (Markdown: checks + speed table) and --out's .json (named fields). On the lent GPU machines only
# $OUT comes back: --out defaults to $OUT/gpu_check.md there and must lie under $OUT.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
MODE=run
BUNDLE=$REPO/gpu_check_bundle
REPORT=${OUT:+$OUT/}gpu_check.md
DEVICE=cuda
EXTRA=()
WHEELS=(setuptools wheel hydra-core omegaconf "antlr4-python3-runtime==4.9.3" torch-fidelity pytorch-lightning
        lightning-utilities torchmetrics submitit hydra-submitit-launcher)

while [[ $# -gt 0 ]]; do
    case $1 in
        --prepare) MODE=prepare; BUNDLE=${2:?--prepare needs a folder}; shift 2 ;;
        --bundle) BUNDLE=${2:?}; shift 2 ;;
        --out) REPORT=${2:?}; shift 2 ;;
        --cpu|--dry-run) DEVICE=cpu; shift ;;
        --) shift; EXTRA=("$@"); break ;;   # passed to gpu_check.py, e.g. -- --only resume ddp
        *) echo "gpu_check: unknown argument $1 (--prepare DIR | --bundle DIR | --out FILE | --cpu)" >&2; exit 2 ;;
    esac
done

prepare() {
    mkdir -p "$BUNDLE/wheels" "$BUNDLE/data/fashion-mnist"
    local pinned=()  # the versions this checkout is tested with, where installed here
    for w in "${WHEELS[@]}"; do
        if [[ $w == *==* ]]; then pinned+=("$w"); continue; fi
        v=$("$PY" -c "import importlib.metadata as m; print(m.version('$w'))" 2>/dev/null || true)
        pinned+=("$w${v:+==$v}")
    done
    "$PY" -m pip download --no-deps -q -d "$BUNDLE/wheels" "${pinned[@]}"
    local root=${SLIMGAN_FMNIST_ROOT:-/usr/share/datasets/fashion-mnist}
    cp "$root"/*-ubyte.gz "$BUNDLE/data/fashion-mnist/"
    du -sh "$BUNDLE"
    echo "gpu_check: bundle ready in $BUNDLE; on the GPU machine: bash scripts/gpu_check.sh --bundle $BUNDLE"
}

install_missing() {  # offline, and only what does not import (never touches torch)
    "$PY" -c "import torch" 2>/dev/null || { echo "gpu_check: torch does not import with $PY (install the CUDA build of torch first)" >&2; exit 2; }
    "$PY" -c "import torchvision" 2>/dev/null || { echo "gpu_check: torchvision is missing: install the build matching torch $("$PY" -c 'import torch; print(torch.__version__)') (the data modules need it)" >&2; exit 2; }
    local missing=()
    for mod in hydra omegaconf torch_fidelity pytorch_lightning torchmetrics submitit hydra_plugins.hydra_submitit_launcher; do
        "$PY" -c "import $mod" 2>/dev/null || missing+=("$mod")
    done
    [[ ${#missing[@]} -eq 0 ]] && return
    [[ -d $BUNDLE/wheels ]] || { echo "gpu_check: missing ${missing[*]} and no $BUNDLE/wheels (run --prepare first)" >&2; exit 2; }
    echo "gpu_check: installing from $BUNDLE/wheels (missing: ${missing[*]})"
    local venv=$BUNDLE/venv
    if [[ -x $venv/bin/python3 ]] || "$PY" -m venv --system-site-packages "$venv" 2>/dev/null; then
        PY=$venv/bin/python3   # sees the system's torch; installs go into the venv (PEP 668 allows that)
        local pip=("$PY" -m pip install -q --no-index --find-links "$BUNDLE/wheels")
    else  # no venv module: user site, pure-Python wheels only, the system's packages untouched
        echo "gpu_check: no venv module; installing into the user site with --break-system-packages (PEP 668)" >&2
        local pip=("$PY" -m pip install -q --user --break-system-packages --no-index --find-links "$BUNDLE/wheels")
    fi
    # antlr4-python3-runtime ships as a source distribution: building it needs setuptools and wheel first
    "${pip[@]}" setuptools wheel
    "${pip[@]}" --no-deps --no-build-isolation "$BUNDLE"/wheels/*
}

case $MODE in
    prepare) prepare ;;
    run)
        if [[ -n ${OUT:-} ]]; then
            case $(realpath -m "$REPORT") in
                "$(realpath -m "$OUT")"/*) ;;
                *) echo "gpu_check: --out $REPORT is outside \$OUT=$OUT (only \$OUT comes back)" >&2; exit 2 ;;
            esac
        fi
        if [[ $DEVICE == cuda ]]; then install_missing; fi
        export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
        export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
        args=(--device "$DEVICE" --out "$REPORT")
        [[ -d $BUNDLE/data/fashion-mnist ]] && args+=(--data-root "$BUNDLE/data/fashion-mnist")
        if [[ $DEVICE == cuda ]]; then nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true; fi
        exec "$PY" "$REPO/scripts/gpu_check.py" "${args[@]}" "${EXTRA[@]}"
        ;;
esac
