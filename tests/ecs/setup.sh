#!/usr/bin/env bash
# Creates the virtualenv that runs tests/ecs/emulator.py (moto's server, patched)
# at ${SEAWALL_ECS_VENV:-<repo>/target/ecs-venv} and installs requirements.txt
# into it. Idempotent: a stamp file in the venv holds the sha256 of
# requirements.txt, and a run that finds it up to date does nothing. Safe to run
# from several processes at once (flock on a lock file beside the venv).
# Silent on success unless it installs (then a line on stderr).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${SEAWALL_ECS_VENV:-$repo/target/ecs-venv}"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"

want="$(sha256sum "$req")"
want="${want%% *}"

up_to_date() {
    [[ -x "$venv/bin/python" && -f "$stamp" && "$(<"$stamp")" == "$want" ]]
}

up_to_date && exit 0

die() {
    echo "tests/ecs/setup.sh: $*" >&2
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

# Another process may have finished the job while we waited for the lock.
up_to_date && exit 0

echo "tests/ecs/setup.sh: installing moto into $venv (takes a minute)" >&2
rm -f "$stamp"
if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    # Missing, or left half-made by an interrupted run: start clean.
    python3 -m venv --clear "$venv" \
        || die "python3 -m venv failed; on Debian: apt-get install python3-venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input -r "$req" >&2 \
    || die "pip install -r $req failed"

printf '%s\n' "$want" >"$stamp.tmp"
mv "$stamp.tmp" "$stamp"
