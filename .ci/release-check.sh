#!/usr/bin/env bash
# Release check: packs every public package as `npm publish` would, then checks each tarball as a user meets it — publint on the package, arethetypeswrong
# on the tarball (ESM and CJS types under node16 and bundler resolution), and the
# LICENSE inside. Exits non-zero on the first package that fails.
set -euo pipefail
cd "$(dirname "$0")/.."

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
declare -A tarball

# @tierkit/native ships prebuilt addons for linux-x64 and linux-arm64 (prepack makes them;
# the pack below skips scripts, so they are made here). arm64 is cross-built with
# Debian's cross compiler, installed when missing as CI installs awscli.
if ! command -v aarch64-linux-gnu-g++ >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++-aarch64-linux-gnu >/dev/null) ||
    echo "release-check: g++-aarch64-linux-gnu could not be installed"
fi
if ! node packages/native/scripts/prebuild.mjs; then
  echo "release-check: @tierkit/native: the prebuilt addons could not be built"
  status=1
fi
for dir in packages/*/; do
  dir=${dir%/}
  [ "$(node -p "require('./$dir/package.json').private === true")" = true ] && continue
  name=$(node -p "require('./$dir/package.json').name")
  bad=0
  # prepack builds a package that is packed by hand; here dist/ is fresh from the build
  # before the tests, so the pack skips it (and the check that it exists stands in).
  if [ "$(node -p "Boolean(require('./$dir/package.json').scripts?.prepack)")" != true ]; then
    echo "release-check: $name: no prepack script (a tarball would ship whatever dist/ holds)"
    bad=1
  fi
  if ! tgz=$(cd "$dir" && npm pack --silent --ignore-scripts --pack-destination "$out" | tail -1); then
    echo "release-check: $name: npm pack failed"
    status=1
    continue
  fi
  tarball[$name]="$out/$tgz"
  listing=$(tar -tzf "$out/$tgz")
  if ! grep -qx 'package/LICENSE' <<<"$listing"; then
    echo "release-check: $name: the tarball has no LICENSE"
    bad=1
  fi
  if [ "$name" = @tierkit/native ]; then
    for target in linux-x64 linux-arm64; do
      if ! grep -qx "package/prebuilds/$target/tierkit_native.glibc.node" <<<"$listing"; then
        echo "release-check: $name: the tarball has no prebuilt addon for $target"
        bad=1
      fi
    done
  fi
  if ! npx --no-install publint run "$out/$tgz" --strict --level warning >"$out/publint.log" 2>&1; then
    echo "release-check: $name: publint"
    cat "$out/publint.log"
    bad=1
  fi
  # node10 resolution predates "exports": subpaths (./testing) cannot resolve there, by design.
  if ! npx --no-install attw "$out/$tgz" --profile node16 --format table-flipped >"$out/attw.log" 2>&1; then
    echo "release-check: $name: arethetypeswrong"
    cat "$out/attw.log"
    bad=1
  fi
  if [ "$bad" = 0 ]; then
    echo "release-check: $name: packed with LICENSE; publint and types ok"
  else
    status=1
  fi
done

# The tarballs as a machine image without build tools meets them: PATH holds node and sh
# only (no cc, c++, g++, make), so @tierkit/native must take its addon from the prebuild,
# and tier-fs must then use it (inline page-cache reads).
if [ "$(node -p "process.platform + '-' + process.arch")" = linux-x64 ] ||
  [ "$(node -p "process.platform + '-' + process.arch")" = linux-arm64 ]; then
  app="$out/no-compiler-app"
  mkdir -p "$app/bin"
  ln -s "$(command -v node)" "$app/bin/node"
  ln -s /bin/sh "$app/bin/sh"
  echo '{"name":"app","version":"1.0.0","private":true}' >"$app/package.json"
  npm_cli="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")/lib/node_modules/npm/bin/npm-cli.js"
  pkgs=()
  for n in @tierkit/tier-core @tierkit/policy-lru @tierkit/pool @tierkit/native @tierkit/tier-fs; do
    [ -n "${tarball[$n]:-}" ] && pkgs+=("${tarball[$n]}")
  done
  if [ "${#pkgs[@]}" != 5 ]; then
    echo "release-check: a tarball the no-compiler install needs was not packed"
    status=1
  elif ! (cd "$app" && PATH="$app/bin" node "$npm_cli" install "${pkgs[@]}" --foreground-scripts \
    --prefer-offline --no-audit --no-fund >"$out/app-install.log" 2>&1); then
    echo "release-check: installing the tarballs without a compiler failed"
    cat "$out/app-install.log"
    status=1
  elif ! (cd "$app" && PATH="$app/bin" node --input-type=module -e "
    import { capabilities } from '@tierkit/native';
    import { createFsTier } from '@tierkit/tier-fs';
    import { mkdtempSync } from 'node:fs';
    const tier = createFsTier({ root: mkdtempSync('cache-') });
    await tier.write('m/w.bin', new TextEncoder().encode('weights'));
    const got = Buffer.from(await tier.read('m/w.bin')).toString();
    const { source } = capabilities().addon;
    await tier.close();
    if (source !== 'prebuild' || got !== 'weights' || !(tier.inlineReadMax > 0)) {
      console.error(JSON.stringify({ source, got, inlineReadMax: tier.inlineReadMax }));
      process.exit(1);
    }
  " >"$out/app-run.log" 2>&1); then
    echo "release-check: without a compiler, the addon did not come from the prebuild or tier-fs failed"
    cat "$out/app-run.log"
    status=1
  else
    echo "release-check: installed without a compiler: @tierkit/native from its prebuild, tier-fs reads inline"
  fi
fi

# The cross-built linux-arm64 binary must load on arm64, not only look right: Debian's
# arm64 Node (another Node major than ours, so also one binary for several ABIs) under
# qemu-user, its libraries unpacked into a private root. Needs root and apt; says so if not.
# It changes the machine's dpkg architectures for a while, so it runs only when asked
# (TIERKIT_RELEASE_ARM64_RUN=1, before a release), never as a side effect of CI.
arm64_root="$out/arm64-root"
if [ "${TIERKIT_RELEASE_ARM64_RUN:-}" != 1 ]; then
  echo "release-check: SKIPPED the arm64 load check under qemu (set TIERKIT_RELEASE_ARM64_RUN=1 to run it)"
elif [ "$(uname -m)" != x86_64 ] || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "release-check: SKIPPED the arm64 load check (needs an x86_64 host, root and apt)"
elif ! {
  trap 'dpkg --remove-architecture arm64 2>/dev/null || true; rm -rf "$out"' EXIT
  dpkg --add-architecture arm64 && apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user >/dev/null &&
    mkdir -p "$arm64_root/debs" && (
    cd "$arm64_root/debs" &&
      apt-get download $(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances --no-pre-depends nodejs:arm64 |
        grep -E '^(node-[a-z0-9-]+|[a-z0-9.+-]+:arm64)$' | grep -vE '^(dpkg|tar|install-info|openssl):') \
        >/dev/null 2>&1
  )
} >"$out/arm64-setup.log" 2>&1; then
  dpkg --remove-architecture arm64 2>/dev/null || true
  echo "release-check: arm64 load check skipped (qemu-user or Debian's arm64 nodejs unavailable):"
  tail -3 "$out/arm64-setup.log"
else
  dpkg --remove-architecture arm64 2>/dev/null || true
  for deb in "$arm64_root"/debs/*.deb; do dpkg-deb -x "$deb" "$arm64_root"; done
  cp -an /usr/aarch64-linux-gnu/lib/. "$arm64_root/usr/lib/aarch64-linux-gnu/" 2>/dev/null || true
  if QEMU_LD_PREFIX="$arm64_root" qemu-aarch64 "$arm64_root/usr/bin/node" -e "
    const a = require('$PWD/packages/native/prebuilds/linux-arm64/tierkit_native.glibc.node');
    const fs = require('fs');
    const file = '$out/arm64-probe';
    fs.writeFileSync(file, 'tierkit');
    const fd = fs.openSync(file, 'r');
    const pool = new a.Pool(2);
    const got = new Uint8Array(3);
    pool.run([[fd, got, 4, false]]).then((n) => {
      pool.close();
      if (process.arch !== 'arm64' || n[0] !== 3 || Buffer.from(got).toString() !== 'kit') process.exit(1);
      // CRC32C with the ARMv8 CRC instructions (qemu's default CPU has them): the check value.
      if (a.crc32cImpl !== 'armv8-crc' || a.crc32c(Buffer.from('123456789')) !== 0xe3069283) process.exit(2);
      console.log('node ' + process.version + ' (N-API ' + process.versions.napi + ')');
    });
  " >"$out/arm64-run.log" 2>&1; then
    echo "release-check: the linux-arm64 prebuild loads and reads on arm64: $(tail -1 "$out/arm64-run.log")"
  else
    echo "release-check: the linux-arm64 prebuild does not work on arm64"
    cat "$out/arm64-run.log"
    status=1
  fi
fi
exit "$status"
