#!/bin/sh
# make_fixtures.sh - runs every scripts/fixtures/*.sh in turn with $VB_FIXTURES (output directory)
# and $VIBEE (the CLI binary) exported; fails as soon as one of them fails.
set -eu
: "${VB_FIXTURES:?set VB_FIXTURES to the fixture output directory}"
export VB_FIXTURES
export VIBEE="${VIBEE:-}"
mkdir -p "$VB_FIXTURES"
dir=$(cd "$(dirname "$0")" && pwd)/fixtures
for f in "$dir"/*.sh; do
    [ -f "$f" ] || continue
    echo "make_fixtures: $(basename "$f")"
    if ! sh "$f"; then
        echo "make_fixtures: $f failed" >&2
        exit 1
    fi
done
