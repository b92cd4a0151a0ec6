#!/usr/bin/env bash
# The whole test suite: lint, type-check, then pytest (unit, contract, integration and
# end-to-end tests against a real Kafka-protocol broker, SMTP and HTTP servers).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/ruff check storywatch ingest enrich alerts tests bench
.venv/bin/mypy
.venv/bin/python -m pytest -q "$@"
