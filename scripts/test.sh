#!/usr/bin/env bash
# Install, lint, and run the whole test suite (slow end-to-end tests included; add -m "not slow" to skip them).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
ruff check wsol scripts tests
python -m pytest -q "$@"
