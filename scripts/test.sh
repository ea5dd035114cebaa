#!/usr/bin/env bash
# Set up the environment (idempotent) and run the whole test suite, slow end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. scripts/env.sh
exec python -m pytest -q -p no:cacheprovider "$@"
