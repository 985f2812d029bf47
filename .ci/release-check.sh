#!/usr/bin/env bash
# Release check: packs every public package as `npm publish` would, then checks each tarball as a user meets it — publint on the package, arethetypeswrong
# on the tarball (ESM and CJS types under node16 and bundler resolution), and the
# LICENSE inside. Exits non-zero on the first package that fails.
set -euo pipefail
cd "$(dirname "$0")/.."

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
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
  listing=$(tar -tzf "$out/$tgz")
  if ! grep -qx 'package/LICENSE' <<<"$listing"; then
    echo "release-check: $name: the tarball has no LICENSE"
    bad=1
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
exit "$status"
