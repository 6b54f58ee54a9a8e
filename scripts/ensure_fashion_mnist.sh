#!/usr/bin/env bash
# Make sure Debian's Fashion-MNIST files are present (the embedded default dataset).
set -euo pipefail
root=/usr/share/datasets/fashion-mnist
if [ -f "$root/train-images-idx3-ubyte.gz" ] && [ -f "$root/t10k-labels-idx1-ubyte.gz" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Fashion-MNIST (Debian package dataset-fashion-mnist)..."
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
else
  echo "Fashion-MNIST is missing from $root." >&2
  echo "Install it with: sudo apt-get install dataset-fashion-mnist" >&2
  echo "or put the four idx files in a folder and pass data.root=<folder> to slimgan-train." >&2
  exit 1
fi
