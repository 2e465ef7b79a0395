#!/usr/bin/env bash
# Creates the virtualenv that runs tests/ecs/emulator.py (moto's server, patched) at
# ${SEAWALL_ECS_VENV:-<repo>/target/ecs-venv} from requirements.txt. Idempotent and safe to run
# from several processes at once (tests/venv.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
exec "$repo/tests/venv.sh" "${SEAWALL_ECS_VENV:-$repo/target/ecs-venv}" \
    "$here/requirements.txt" bin/python tests/ecs/setup.sh
