#!/usr/bin/env bash
# install_deps.sh - installs what vibee's build and tests need on a Debian 12 machine:
# compilers and libraries (apt), the npm packages the tests use as independent references
# (tests/js), Chromium for the chat page's browser test (headless, driven over its DevTools pipe)
# and the optional llama.cpp build (cached outside the clone). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS="build-essential pkg-config libpcre2-dev libmicrohttpd-dev libjansson-dev python3 python3-numpy python3-regex python3-onnx python3-jinja2 clang libclang-rt-14-dev chromium"
missing=""
for p in $APT_PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
if [ -n "$missing" ]; then
  echo "install_deps: apt-get install$missing"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

if [ -f tests/js/package.json ] && grep -q '"[@a-z]' <(sed -n '/"dependencies"/,/}/p' tests/js/package.json | tail -n +2); then
  if [ ! -d tests/js/node_modules ] || [ tests/js/package.json -nt tests/js/node_modules ]; then
    echo "install_deps: npm install (tests/js)"
    (cd tests/js && npm install --no-audit --no-fund --loglevel=error)
    touch tests/js/node_modules
  fi
fi

if [ "${VB_SKIP_ONNX:-0}" != 1 ]; then
  bash scripts/install_onnxruntime.sh
fi

if [ -f scripts/build_llamacpp.sh ] && [ "${VB_SKIP_LLAMACPP:-0}" != 1 ]; then
  bash scripts/build_llamacpp.sh
fi
echo "install_deps: done"
