#!/usr/bin/env bash
# Installs the Debian 12 packages the build and the tests need, when any is missing.
# A fast no-op when everything is present; uses sudo when not run as root.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libuv1-dev librocksdb-dev libyaml-cpp-dev libboost-dev libboost-filesystem-dev
  catch2 nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev libsystemd-dev
  libcurl4-openssl-dev libhowardhinnant-date-dev python3 python3-pytest
  systemd dpkg-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: not root and no sudo; install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
