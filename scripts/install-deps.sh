#!/usr/bin/env bash
# Installs the Debian packages flexgen-cpp builds with, if any is missing. Run as root.
# CUDA is not installed here: the CUDA backend is built when nvcc is already present
# (/usr/local/cuda/bin/nvcc or on PATH), and skipped otherwise.
# Usage: scripts/install-deps.sh [--fuzz] [--plots]
#   --fuzz: also clang-14 and libFuzzer, for scripts/fuzz.sh
#   --plots: also Python 3 with matplotlib, for plots/ (the quick start's main job)
set -euo pipefail
pkgs=(g++ cmake ninja-build pkg-config libglpk-dev libboost-program-options-dev nlohmann-json3-dev
      libgtest-dev libgmock-dev libbenchmark-dev libsentencepiece-dev)
for arg in "$@"; do
  case "$arg" in
    --fuzz) pkgs+=(clang-14 libclang-rt-14-dev) ;;
    --plots) pkgs+=(python3 python3-matplotlib) ;;
    *) echo "install-deps: unknown option '$arg' (--fuzz, --plots)" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: error: missing packages (${missing[*]}); run as root or install them" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
