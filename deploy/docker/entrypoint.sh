#!/bin/sh
# Container entry point: prepare the writable cache volume, then become
# `knapsack-service serve` (exec, so the server is PID 1's only child and gets SIGTERM).
#
# The image carries numba kernels compiled at build time in /opt/krl/numba-cache, which
# is read-only; numba ignores a cache directory it cannot write, so copy it into
# NUMBA_CACHE_DIR (an emptyDir / tmpfs / volume) unless that already holds a cache.
set -eu

seed=/opt/krl/numba-cache
cache="${NUMBA_CACHE_DIR:-/var/cache/krl/numba}"
mkdir -p "$cache" "${TMPDIR:-/var/cache/krl/tmp}"
if [ -d "$seed" ] && [ -z "$(ls -A "$cache" 2>/dev/null)" ]; then
    cp -R "$seed/." "$cache/" || echo "krl-entrypoint: could not seed the numba cache; kernels compile at start" >&2
fi

exec knapsack-service serve "$@"
