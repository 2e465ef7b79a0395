#!/usr/bin/env bash
# Creates the virtualenv with kubernetes-validate that tests/deploy.rs runs, at
# ${SEAWALL_DEPLOY_VENV:-<repo>/target/deploy-venv}, from requirements.txt. Idempotent and safe
# to run from several processes at once (tests/venv.sh).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
exec "$repo/tests/venv.sh" "${SEAWALL_DEPLOY_VENV:-$repo/target/deploy-venv}" \
    "$here/requirements.txt" bin/kubernetes-validate tests/deploy/setup.sh
