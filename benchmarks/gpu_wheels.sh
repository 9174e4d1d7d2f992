#!/usr/bin/env bash
# Preparation for benchmarks/gpu_check.py on the lent GPU machine (one H200, Python 3.12, torch + CUDA, numpy, scipy,
# scikit-image, h5py, tensorboard, matplotlib, pillow, tqdm installed; nothing can be downloaded there).
#
# Downloads here, into the git-ignored .whl/ of the repository root, the py3.12 wheels of exactly the packages the
# bundles need and that machine lacks: monai and pytorch-ignite at this project's pins, nibabel (NIfTI phantoms and
# data), fire (the `python -m monai.bundle` command line) and fire's termcolor. Their other requirements (torch,
# numpy, packaging, typing-extensions) are already there. itk is left out: no code path of the bundles reads an image
# with it (MONAI's LoadImage falls back to nibabel for NIfTI), and its seven large wheels (itk-core, -io, -filtering,
# ...) would eat much of the 64 MiB that travels with the working tree. jsonschema (pyproject) is only read by
# `monai.bundle verify_metadata`, which the GPU check does not run.
#
# Usage (from anywhere): bash benchmarks/gpu_wheels.sh; then pass `.whl` in the device tool's `carry`.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES=(monai==1.6.1 pytorch-ignite==0.5.5 nibabel==5.4.2 fire==0.7.1 termcolor==3.3.0)
rm -rf .whl
mkdir -p .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${PACKAGES[@]}"
# one wheel per package: two versions of one would stop the install there
count=$(ls .whl/*.whl | wc -l)
if [ "$count" -ne "${#PACKAGES[@]}" ]; then
    echo "expected ${#PACKAGES[@]} wheels, found $count:" >&2
    ls .whl >&2
    exit 1
fi
ls -l .whl
du -sh .whl
