#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Run one pytest file against a shoal binary: pytest.sh FILE SHOAL_BIN
set -euo pipefail
file="$1"
export SHOAL_BIN="$2"
py="${SHOAL_PYTHON:-${SHOAL_CACHE:-$HOME/.cache/shoal}/venv/bin/python}"
if [[ ! -x "$py" ]]; then
    echo "pytest.sh: no test venv at $py; run ./tests/run (it installs one)" >&2
    exit 1
fi
# Under ASan, freed memory sits in a quarantine (256 MB by default) that makes
# RSS meaningless for the memory-bound tests; a smaller one still catches
# use-after-free of recent frees. Release binaries ignore this variable.
export ASAN_OPTIONS="${ASAN_OPTIONS:-quarantine_size_mb=16}"
exec "$py" -m pytest -q -p no:cacheprovider "$file"
