#!/bin/sh
# Install the Debian / Raspberry Pi OS packages needed to build the kiosk's Python
# dependencies (systemd-python, RPi.GPIO and spidev compile C code) in a venv,
# and the display's font.
# As root it installs them; with sudo it asks sudo; otherwise it names them and fails.
# --list: print the missing packages (nothing when none is missing) and change nothing.
set -eu
PYTHON=${PYTHON:-python3}
missing=""
need() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || missing="$missing $1"; }

command -v dpkg-query >/dev/null 2>&1 || { echo "build-deps: not a Debian system; install a C compiler, pkg-config, libsystemd headers and Python headers yourself" >&2; exit 0; }
need gcc
need pkg-config
need libsystemd-dev
need linux-libc-dev  # evdev (keyboard reader) builds against <linux/input.h>
need fonts-dejavu-core  # the display's font (DejaVu Sans); the tests' reference images are drawn with it
# The Python in use needs its headers and the venv module (Debian splits both out).
if ! "$PYTHON" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
    need python3-dev
fi
if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    need python3-venv
fi
if [ "${1:-}" = "--list" ]; then
    [ -z "$missing" ] || echo "${missing# }"
    exit 0
fi
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "build-deps: missing packages:$missing" >&2
    echo "build-deps: as root run: apt-get install$missing" >&2
    exit 1
fi
echo "build-deps: installing$missing" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
