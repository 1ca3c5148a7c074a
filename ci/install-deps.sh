#!/usr/bin/env bash
# Installs every Debian 12 package moonpool-cpp needs to build and test.
# Idempotent: prints nothing and touches no package list when all is present.
# Usage: ci/install-deps.sh [--bench]   (--bench adds the benchmark peers
# and matplotlib for ci/bench-charts.py)
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config g++ clang-14 libclang-rt-14-dev
  libuv1-dev libcapnp-dev capnproto libabsl-dev libxxhash-dev libssl-dev openssl
  libgtest-dev libgmock-dev libbenchmark-dev iproute2 procps python3
  python3-xxhash
)
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
             python3-matplotlib)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
