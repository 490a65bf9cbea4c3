#!/usr/bin/env bash
# Makes sure the AWS emulator the tests use (moto: DynamoDB and S3 on one port) is installed,
# and prints the path of the virtual environment's python (run scripts/moto_serve.py with it).
#
# It lives in a virtual environment outside the checkout (CALLREC_TOOLS, default
# ~/.cache/callrec/tools), created on first use from PyPI with a pinned version. Safe to run
# from several test processes at once (flock); an interrupted install is redone.
set -euo pipefail
MOTO_VERSION="5.2.5"
TOOLS="${CALLREC_TOOLS:-$HOME/.cache/callrec/tools}"
VENV="$TOOLS/moto-$MOTO_VERSION"
mkdir -p "$TOOLS"
exec 9>"$TOOLS/.moto.lock"
flock 9
if [ ! -f "$VENV/.installed" ]; then
    echo "installing moto[server]==$MOTO_VERSION into $VENV" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
        "moto[server,dynamodb,s3]==$MOTO_VERSION" >&2
    touch "$VENV/.installed"
fi
echo "$VENV/bin/python"
