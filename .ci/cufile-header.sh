#!/usr/bin/env bash
# Fetches NVIDIA's cufile.h from Debian's non-free archive through a private apt
# configuration (the system's sources stay untouched) and prints the include
# directory, so the native addon's ABI test checks our declarations against the
# real header. Prints nothing if it cannot: that test then skips and says why.
set -u
dir="${1:-$PWD/.cache/cufile}"
[ -f "$dir/x/usr/include/cufile.h" ] && { echo "$dir/x/usr/include"; exit 0; }
mkdir -p "$dir/lists/partial" "$dir/archives/partial" || exit 0
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie non-free" \
  > "$dir/sources.list"
opts=(-o "Dir::Etc::sourcelist=$dir/sources.list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$dir/lists"
  -o "Dir::Cache::Archives=$dir/archives" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=)
(
  cd "$dir" &&
    timeout 120 apt-get "${opts[@]}" -qq update &&
    timeout 120 apt-get "${opts[@]}" -qq download libcufile-dev &&
    dpkg-deb -x libcufile-dev_*.deb x
) >/dev/null 2>&1 || exit 0
[ -f "$dir/x/usr/include/cufile.h" ] && echo "$dir/x/usr/include"
exit 0
