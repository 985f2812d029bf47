#!/usr/bin/env bash
# Prepares .device/ for the GPU machine (no Node, no node_modules there): Node itself,
# the built addon, and the GPU test bundled into one file.
set -euo pipefail
cd "$(dirname "$0")/../../.."
mkdir -p .device
[ -f .device/node.xz ] || bash ../shared/device/pack-node.sh
npm run build -w @tierkit/native -w @tierkit/tier-core -w @tierkit/lmcache -w @tierkit/tier-gds >/dev/null
cp packages/native/build/Release/tierkit_native.node .device/tierkit_native.node
npx esbuild packages/tier-gds/gpu/gpu-test.mjs --bundle --platform=node --format=esm --target=node20 \
  --banner:js="import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" \
  --outfile=.device/gds-gpu-test.mjs
cp packages/tier-gds/gpu/run-on-device.sh .device/
echo "ready: run on the device with carry [.device]:"
echo '  xz -dc .device/node.xz > /tmp/node && chmod +x /tmp/node && export PATH=/tmp:$PATH; bash .device/run-on-device.sh'
