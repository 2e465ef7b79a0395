#!/usr/bin/env bash
# Creates the virtualenv with kubernetes-validate that tests/deploy.rs runs, at
# ${SEAWALL_DEPLOY_VENV:-<repo>/target/deploy-venv}, from requirements.txt. Idempotent and safe to
# run from several processes at once, as tests/ecs/setup.sh (same stamp file, same lock).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${SEAWALL_DEPLOY_VENV:-$repo/target/deploy-venv}"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"

want="$(sha256sum "$req")"
want="${want%% *}"

up_to_date() {
    [[ -x "$venv/bin/kubernetes-validate" && -f "$stamp" && "$(<"$stamp")" == "$want" ]]
}

up_to_date && exit 0

die() {
    echo "tests/deploy/setup.sh: $*" >&2
    exit 1
}

command -v python3 >/dev/null 2>&1 \
    || die "python3 not found; install Python 3 (on Debian: apt-get install python3 python3-venv)"
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 \
    || die "python3 cannot create virtualenvs (no venv/ensurepip module); on Debian: apt-get install python3-venv"
command -v flock >/dev/null 2>&1 \
    || die "flock not found (on Debian: apt-get install util-linux)"

parent="$(dirname "$venv")"
mkdir -p "$parent"
exec 9>"$parent/.$(basename "$venv").lock"
flock 9

up_to_date && exit 0

echo "tests/deploy/setup.sh: installing kubernetes-validate into $venv" >&2
rm -f "$stamp"
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    python3 -m venv --clear "$venv" \
        || die "python3 -m venv failed; on Debian: apt-get install python3-venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input -r "$req" >&2 \
    || die "pip install -r $req failed"

printf '%s\n' "$want" >"$stamp.tmp"
mv "$stamp.tmp" "$stamp"
