#!/usr/bin/env bash
# The project's test command (README: "Tests"). Installs what the tests need
# on a fresh machine, then runs every test: unit, integration, doc.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --locked
