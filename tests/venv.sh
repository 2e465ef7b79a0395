#!/usr/bin/env bash
# Creates a virtualenv for tests' Python tools from a requirements file, for tests/ecs/setup.sh
# (moto) and tests/deploy/setup.sh (kubernetes-validate):
#
#     tests/venv.sh VENV REQUIREMENTS READY NAME
#
# READY is a file in the venv (relative to it) whose presence, with a stamp holding the sha256 of
# REQUIREMENTS, says the venv is up to date; then nothing is done. Safe to run from several
# processes at once (flock on a lock file beside the venv). Silent on success unless it installs
# (then a line on stderr). NAME says who asked, in messages.
set -euo pipefail

venv=$1 req=$2 ready=$3 name=$4
stamp="$venv/.requirements.sha256"

want="$(sha256sum "$req")"
want="${want%% *}"

up_to_date() {
    [[ -x "$venv/$ready" && -f "$stamp" && "$(<"$stamp")" == "$want" ]]
}

up_to_date && exit 0

die() {
    echo "$name: $*" >&2
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

echo "$name: installing $(basename "$req") into $venv (takes a minute)" >&2
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
