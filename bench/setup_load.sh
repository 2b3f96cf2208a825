#!/usr/bin/env bash
# Install what bench/bench_load.py needs beyond scripts/setup: Debian's kcat (and psql,
# which the Postgres service already brings). Idempotent.
set -euo pipefail
missing=()
command -v kcat >/dev/null || missing+=(kcat)
command -v psql >/dev/null || missing+=(postgresql-client)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[bench] installing ${missing[*]} from Debian's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
