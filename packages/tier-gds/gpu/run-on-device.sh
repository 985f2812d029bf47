#!/usr/bin/env bash
# Runs on the GPU machine from the repository root, after .device/ was carried there.
set -uo pipefail
export TIERKIT_NATIVE_ADDON="$PWD/.device/tierkit_native.node"
CUFILE_DIR=$(python3 -c "import nvidia.cufile, os; print(os.path.dirname(nvidia.cufile.__file__))" 2>/dev/null || true)
for lib in "$CUFILE_DIR/lib/libcufile.so.0" "$CUFILE_DIR"/*/lib/libcufile.so.0; do
  [ -f "$lib" ] && export TIERKIT_CUFILE_LIB="$lib" && break
done
export OUT="${OUT:-$PWD/gpu-results}"
# Prefer a real disk over the container's overlay for the data.
export TIERKIT_GPU_WORKDIR="${TIERKIT_GPU_WORKDIR:-/tmp/tierkit-gpu}"
node .device/gds-gpu-test.mjs
status=$?
# Compat mode forced (cuFile's own POSIX path), same checks, smaller data.
CUFILE_FORCE_COMPAT_MODE=true OUT="$OUT/compat" TIERKIT_GPU_BYTES=268435456 node .device/gds-gpu-test.mjs || status=1
exit $status
