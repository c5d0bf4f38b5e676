#!/usr/bin/env bash
# install_onnxruntime.sh - installs ONNX Runtime's C headers and its Linux x64 CPU library for
# vibee's `onnx` backend from the npm registry, without running any package install script
# (`npm pack` + tar only; DESIGN.md section 5). Nothing is written into the repository.
#
# Source: npm com.github.asus4.onnxruntime@0.4.9, which carries the official ORT 1.29 headers
# (Plugins/iOS~/.../Headers/, platform independent) and Plugins/Linux/x64/libonnxruntime.so (1.29).
#
# Output (the "cache", found by src/backends/onnx/onnx.mk):
#   ${VB_CACHE:-$HOME/.cache/vibee}/onnxruntime-1.29/
#     include/onnxruntime_c_api.h (+ the other official C/C++ headers)
#     lib/libonnxruntime.so, lib/libonnxruntime_providers_shared.so
#     stamp      present only when the install is complete
#
# Idempotent: does nothing when the stamp exists (--force reinstalls).
# Usage: bash scripts/install_onnxruntime.sh [--force]
#   env: VB_CACHE; ORT_NPM_TGZ=path/to/com.github.asus4.onnxruntime-0.4.9.tgz to install offline
#        from a tarball made by `npm pack` (its sha256 is checked either way).
set -euo pipefail

PKG=com.github.asus4.onnxruntime
PKG_VERSION=0.4.9
PKG_SHA256=e59788788818fdde1b2e522e766a21ba0f7d8391de55737abf81e32cc801785d
ORT_VERSION=1.29
CACHE_ROOT=${VB_CACHE:-$HOME/.cache/vibee}
DEST="$CACHE_ROOT/onnxruntime-$ORT_VERSION"
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

log() { printf 'install_onnxruntime: %s\n' "$*"; }
die() { printf 'install_onnxruntime: error: %s\n' "$*" >&2; exit 1; }

if [ "$FORCE" = 0 ] && [ -f "$DEST/stamp" ] && [ -f "$DEST/include/onnxruntime_c_api.h" ] &&
    [ -f "$DEST/lib/libonnxruntime.so" ]; then
    log "already installed in $DEST"
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -n "${ORT_NPM_TGZ:-}" ]; then
    [ -f "$ORT_NPM_TGZ" ] || die "ORT_NPM_TGZ=$ORT_NPM_TGZ does not exist"
    cp "$ORT_NPM_TGZ" "$work/pkg.tgz"
else
    command -v npm >/dev/null || die "npm not found (needed to fetch $PKG@$PKG_VERSION; or set ORT_NPM_TGZ)"
    log "fetching $PKG@$PKG_VERSION (about 150 MB) with npm pack"
    (cd "$work" && npm pack --silent "$PKG@$PKG_VERSION" >/dev/null) ||
        die "npm pack $PKG@$PKG_VERSION failed (network? registry?)"
    mv "$work"/*.tgz "$work/pkg.tgz"
fi

got=$(sha256sum "$work/pkg.tgz" | cut -d' ' -f1)
[ "$got" = "$PKG_SHA256" ] || die "sha256 of $PKG@$PKG_VERSION is $got, expected $PKG_SHA256"

hdr_dir='package/Plugins/iOS~/onnxruntime.xcframework/ios-arm64/onnxruntime.framework/Headers'
lib_dir='package/Plugins/Linux/x64'
tar -xzf "$work/pkg.tgz" -C "$work" "$hdr_dir" "$lib_dir/libonnxruntime.so" \
    "$lib_dir/libonnxruntime_providers_shared.so" || die "the package lacks the expected files"

rm -rf "$DEST"
mkdir -p "$DEST/include" "$DEST/lib"
cp "$work/$hdr_dir"/*.h "$DEST/include/"
cp "$work/$lib_dir"/libonnxruntime.so "$work/$lib_dir"/libonnxruntime_providers_shared.so "$DEST/lib/"
grep -q 'ORT_API_VERSION' "$DEST/include/onnxruntime_c_api.h" || die "onnxruntime_c_api.h looks wrong"
api=$(sed -n 's/^#define ORT_API_VERSION \([0-9]*\).*/\1/p' "$DEST/include/onnxruntime_c_api.h")
printf '%s@%s ORT_API_VERSION=%s\n' "$PKG" "$PKG_VERSION" "$api" > "$DEST/stamp"
log "installed ONNX Runtime $ORT_VERSION (API $api) in $DEST"
