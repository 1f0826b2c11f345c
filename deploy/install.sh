#!/usr/bin/env bash
# Install the kiosk on Raspberry Pi OS (Bookworm or later), as root, from a clone
# of the repository:
#
#   sudo deploy/install.sh [--prefix DIR] [--no-systemd] [--dry-run]
#
# Idempotent: run it again after a git pull to update the code; it changes only
# what differs. It never overwrites an existing /etc/kiosk/kiosk.toml or
# /etc/kiosk/secret. The API secret is read from stdin when stdin is not a
# terminal, else asked for without echo; it never appears in arguments or output.
#
#   --prefix DIR   where the code and its venv go (default /opt/kiosk); a clone
#                  already at DIR is used in place
#   --no-systemd   install the unit file but run no systemctl (containers, CI)
#   --dry-run      print what would be done, change nothing
#
# Environment, for tests and image builds:
#   KIOSK_ROOT=DIR     install below DIR (DIR/etc/kiosk, DIR/opt/kiosk, ...) and
#                      leave the system alone: no apt, no users or groups, no
#                      raspi-config, no systemctl, no chown to kiosk unless that
#                      group exists. Paths written into files stay the final ones.
#   KIOSK_SKIP_VENV=1  do not build the venv (fast tests)
#   KIOSK_MODEL_FILE   the board model file (default /proc/device-tree/model)
set -euo pipefail
umask 022

PREFIX=/opt/kiosk
SYSTEMD=1
DRY_RUN=0
ROOT=${KIOSK_ROOT:-}
SKIP_VENV=${KIOSK_SKIP_VENV:-0}
MODEL_FILE=${KIOSK_MODEL_FILE:-/proc/device-tree/model}
USER_NAME=kiosk
DEVICE_GROUPS=(spi gpio input i2c)
# procps: /bin/kill, which the unit's ExecReload= runs (missing from minimal Debian images).
APT_PACKAGES=(python3-venv git procps)

PROG=install
# shellcheck source=script-lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/script-lib.sh"  # usage, say, step, warn, die, run

while [ $# -gt 0 ]; do
    case $1 in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#--prefix=}; shift ;;
        --no-systemd) SYSTEMD=0; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
case $PREFIX in
    /*) PREFIX=${PREFIX%/} ;;
    *) die "--prefix must be an absolute path, not $PREFIX" ;;
esac
[ -n "$PREFIX" ] || die "--prefix must not be /"
if [ -n "$ROOT" ]; then
    case $ROOT in /*) ;; *) die "KIOSK_ROOT must be an absolute path" ;; esac
    ROOT=${ROOT%/}
fi

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
for f in pyproject.toml systemd/kiosk.service deploy/kiosk.toml.example; do
    [ -f "$SRC/$f" ] || die "run this script from a clone of the kiosk repository ($SRC has no $f)"
done

# Final paths (written into the unit, the symlink, the messages) and where they land now.
CONF_DIR=/etc/kiosk
CONF=$CONF_DIR/kiosk.toml
SECRET=$CONF_DIR/secret
STATE_DIR=/var/lib/kiosk
UNIT=/etc/systemd/system/kiosk.service
LINK=/usr/local/bin/kiosk
T_PREFIX=$ROOT$PREFIX
T_CONF_DIR=$ROOT$CONF_DIR
T_CONF=$ROOT$CONF
T_SECRET=$ROOT$SECRET
T_STATE_DIR=$ROOT$STATE_DIR
T_UNIT=$ROOT$UNIT
T_LINK=$ROOT$LINK
VENV=$T_PREFIX/.venv
unit_tmp=""
stage=""
code_changed=0  # set to 1 when the installed code or unit changes
cleanup() {
    rm -f "$T_CONF_DIR/.secret.$$" ${unit_tmp:+"$unit_tmp"}
    if [ -n "$stage" ]; then rm -rf "$stage"; fi
}
trap cleanup EXIT
# Left out of the copy and of the comparison: build products, caches, the venv, git.
EXCLUDES=(.git .venv __pycache__ build '*.egg-info' .pytest_cache .hypothesis)

if [ "$DRY_RUN" = 0 ] && [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0), or try --dry-run"
fi
if [ "$DRY_RUN" = 1 ]; then
    say "Dry run: nothing is changed."
fi
say "Installing the kiosk from $SRC to $T_PREFIX${ROOT:+ (KIOSK_ROOT=$ROOT)}"

has_group() { getent group "$1" >/dev/null 2>&1; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# chown only where the owner exists: always on a real install (created below);
# below KIOSK_ROOT only as root and if user and group happen to exist on this machine.
can_own() {  # can_own USER:GROUP
    [ -z "$ROOT" ] || { [ "$(id -u)" -eq 0 ] && getent passwd "${1%%:*}" >/dev/null 2>&1 && has_group "${1#*:}"; }
}
own() {  # own OWNER:GROUP PATH
    if can_own "$1"; then
        run chown "$1" "$2"
    fi
}

ensure_dir() {  # ensure_dir MODE OWNER:GROUP PATH
    local mode=$1 owner=$2 path=$3
    if [ ! -d "$path" ]; then
        run install -d -m "$mode" "$path"
        own "$owner" "$path"
    else
        [ "$(stat -c '%a' "$path")" = "${mode#0}" ] || run chmod "$mode" "$path"
        if can_own "$owner" && [ "$(stat -c '%U:%G' "$path")" != "$owner" ]; then
            own "$owner" "$path"
        fi
        say "  ok: $path"
    fi
}

# ---------------------------------------------------------------- packages
step "Packages"
if [ -n "$ROOT" ]; then
    say "  skipped (KIOSK_ROOT)"
else
    command -v dpkg-query >/dev/null 2>&1 || die "not a Debian system: this script is for Raspberry Pi OS / Debian"
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do installed "$pkg" || missing+=("$pkg"); done
    if [ ${#missing[@]} -gt 0 ]; then
        run env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    else
        say "  ok: ${APT_PACKAGES[*]}"
    fi
    # Compilers and headers for systemd-python, RPi.GPIO, spidev, evdev: only what is missing
    # (run through `run` only then, so that a run with nothing to do shows no change).
    build_missing=$(PYTHON=python3 sh "$SRC/deploy/build-deps.sh" --list)
    if [ -n "$build_missing" ]; then
        run env PYTHON=python3 sh "$SRC/deploy/build-deps.sh"
    else
        say "  ok: build dependencies"
    fi
fi
if command -v python3 >/dev/null 2>&1 || [ "$DRY_RUN" = 0 ]; then
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "the kiosk needs Python 3.11 or later (Raspberry Pi OS Bookworm or later)"
fi

# ---------------------------------------------------------------- user and groups
step "User $USER_NAME"
if [ -n "$ROOT" ]; then
    say "  skipped (KIOSK_ROOT)"
else
    # Raspberry Pi OS has spi, gpio and input; elsewhere create them, or the
    # unit's SupplementaryGroups= stops it from starting (216/GROUP).
    for g in "${DEVICE_GROUPS[@]}" "$USER_NAME"; do
        has_group "$g" || run groupadd --system "$g"
    done
    if getent passwd "$USER_NAME" >/dev/null 2>&1; then
        say "  ok: user $USER_NAME exists"
    else
        run useradd --system --gid "$USER_NAME" --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "clock-in kiosk" "$USER_NAME"
    fi
    for g in "${DEVICE_GROUPS[@]}"; do
        if id -nG "$USER_NAME" 2>/dev/null | tr ' ' '\n' | grep -qx "$g"; then
            say "  ok: $USER_NAME in group $g"
        else
            run usermod -aG "$g" "$USER_NAME"
        fi
    done
fi

# ---------------------------------------------------------------- code
# The repository's files: in a git checkout the tracked ones (as they are in the
# working tree), so local untracked files (notes, a test config) never get copied.
list_sources() {
    if command -v git >/dev/null 2>&1 && git -c safe.directory="$SRC" -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
        git -c safe.directory="$SRC" -C "$SRC" ls-files -z --cached | while IFS= read -r -d '' f; do
            if [ -e "$SRC/$f" ] || [ -L "$SRC/$f" ]; then printf '%s\0' "$f"; fi
        done
    else
        local prune=()
        for x in "${EXCLUDES[@]}"; do prune+=(-name "$x" -o); done
        (cd "$SRC" && find . \( "${prune[@]}" -false \) -prune -o \( -type f -o -type l \) -print0)
    fi
}

step "Code in $T_PREFIX"
if [ -d "$T_PREFIX" ] && [ "$(cd "$T_PREFIX" && pwd -P)" = "$SRC" ]; then
    say "  ok: using the clone in place"
else
    stage=$(mktemp -d)
    chmod 0755 "$stage"
    list_sources | tar -C "$SRC" --null -T - -cf - | tar -C "$stage" --no-same-owner --no-same-permissions -xf -
    diff_args=()
    for x in "${EXCLUDES[@]}"; do diff_args+=(-x "$x"); done
    if [ -d "$T_PREFIX" ] && diff -rq --no-dereference "${diff_args[@]}" "$stage" "$T_PREFIX" >/dev/null 2>&1; then
        say "  ok: up to date"
    else
        if [ -n "$(find "$T_PREFIX" -mindepth 1 -maxdepth 1 ! -name .venv -print -quit 2>/dev/null)" ] \
            && ! grep -qs '^name = "kiosk"$' "$T_PREFIX/pyproject.toml"; then
            die "$T_PREFIX exists and holds something else than the kiosk; choose another --prefix"
        fi
        if [ "$DRY_RUN" = 1 ]; then
            say "  would copy the repository's files to $T_PREFIX (replacing the previous copy, keeping .venv)"
        else
            say "  + copy the repository's files to $T_PREFIX"
            mkdir -p "$T_PREFIX"
            # Remove the old copy first: a module deleted upstream must not linger and get installed.
            find "$T_PREFIX" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
            cp -a "$stage/." "$T_PREFIX/"
        fi
    fi
fi

# ---------------------------------------------------------------- venv
step "Python environment $VENV"
pi5=0
# Pi 5, Pi 500 and Compute Module 5 (RP1 GPIO): RPi.GPIO fails there.
if [ -r "$MODEL_FILE" ] && tr -d '\0' <"$MODEL_FILE" | grep -Eq '^Raspberry Pi (5|Compute Module 5)'; then
    pi5=1
    say "  $(tr -d '\0' <"$MODEL_FILE"): RPi.GPIO does not work here, rpi-lgpio replaces it"
fi
if [ "$SKIP_VENV" = 1 ]; then
    say "  skipped (KIOSK_SKIP_VENV=1)"
else
    # What the installed venv was built from: the package's sources and the board.
    stamp=none
    if [ -d "$T_PREFIX/kiosk" ]; then
        stamp=$( { find "$T_PREFIX/kiosk" "$T_PREFIX/pyproject.toml" -type f ! -path '*/__pycache__/*' -print0 \
                   | sort -z | xargs -0 sha256sum; echo "pi5=$pi5"; } | sha256sum | cut -d' ' -f1)
    fi
    if [ -x "$VENV/bin/kiosk" ] && [ "$(cat "$VENV/.kiosk-stamp" 2>/dev/null)" = "$stamp" ]; then
        say "  ok: up to date"
    else
        [ -x "$VENV/bin/python" ] || run python3 -m venv "$VENV"
        # A regular (not editable) install: the daemon runs what was installed, not the working tree.
        run rm -rf "$T_PREFIX/build" "$T_PREFIX/kiosk.egg-info"
        run "$VENV/bin/pip" install --quiet --disable-pip-version-check "${T_PREFIX}[keyboard,display,metrics]"
        run rm -rf "$T_PREFIX/build" "$T_PREFIX/kiosk.egg-info"
        if [ "$pi5" = 1 ]; then
            # Same RPi.GPIO API over /dev/gpiochip*; the two packages share files: remove both first.
            run "$VENV/bin/pip" uninstall --quiet -y RPi.GPIO rpi-lgpio
            run "$VENV/bin/pip" install --quiet --disable-pip-version-check rpi-lgpio
        fi
        [ "$DRY_RUN" = 1 ] || printf '%s\n' "$stamp" >"$VENV/.kiosk-stamp"
        code_changed=1
    fi
fi
if [ -L "$T_LINK" ] && [ "$(readlink "$T_LINK")" = "$PREFIX/.venv/bin/kiosk" ]; then
    say "  ok: $T_LINK"
elif [ -e "$T_LINK" ] && [ ! -L "$T_LINK" ]; then
    warn "$T_LINK exists and is not our symlink: left alone (the command is $PREFIX/.venv/bin/kiosk)"
else
    [ -d "$(dirname "$T_LINK")" ] || run install -d -m 0755 "$(dirname "$T_LINK")"
    run ln -sfn "$PREFIX/.venv/bin/kiosk" "$T_LINK"
fi

# ---------------------------------------------------------------- completion and man pages
# Generated from the click commands (deploy/gen-docs.py) and committed; installed where
# bash-completion, zsh and man look by default for locally installed software.
step "Shell completion and man pages"
install_file() {  # install_file MODE SOURCE TARGET: only when it differs
    if [ -f "$3" ] && cmp -s "$2" "$3"; then
        return 0
    fi
    [ -d "$(dirname "$3")" ] || run install -d -m 0755 "$(dirname "$3")"
    run install -m "$1" "$2" "$3"
}
docs_state() {  # a checksum of what is installed now
    { cat "$ROOT/usr/local/share/bash-completion/completions/kiosk" "$ROOT/usr/local/share/zsh/site-functions/_kiosk" \
          "$ROOT"/usr/local/share/man/man1/kiosk*.1 2>/dev/null || true; } | sha256sum
}
docs_before=$(docs_state)
install_file 0644 "$SRC/deploy/completion/kiosk.bash" "$ROOT/usr/local/share/bash-completion/completions/kiosk"
install_file 0644 "$SRC/deploy/completion/_kiosk" "$ROOT/usr/local/share/zsh/site-functions/_kiosk"
for page in "$SRC"/man/kiosk*.1; do
    install_file 0644 "$page" "$ROOT/usr/local/share/man/man1/$(basename "$page")"
done
for page in "$ROOT"/usr/local/share/man/man1/kiosk*.1; do  # a command that went away takes its page along
    if [ -f "$page" ] && [ ! -f "$SRC/man/$(basename "$page")" ]; then
        run rm -f "$page"
    fi
done
if [ "$docs_before" = "$(docs_state)" ]; then
    say "  ok: bash and zsh completion, man pages (man kiosk)"
elif [ -z "$ROOT" ] && [ "$DRY_RUN" = 0 ] && command -v mandb >/dev/null 2>&1; then
    run mandb -q
fi

# ---------------------------------------------------------------- configuration
step "Configuration in $T_CONF_DIR"
ensure_dir 0750 "root:$USER_NAME" "$T_CONF_DIR"
if [ -e "$T_CONF" ]; then
    say "  ok: $T_CONF exists, left as it is"
else
    run install -m 0640 "$SRC/deploy/kiosk.toml.example" "$T_CONF"
    own "root:$USER_NAME" "$T_CONF"
fi

secret_created=0
if [ -e "$T_SECRET" ]; then
    say "  ok: $T_SECRET exists, left as it is"
    [ "$(stat -c '%a' "$T_SECRET")" = 600 ] || [ "$(stat -c '%a' "$T_SECRET")" = 400 ] \
        || warn "$T_SECRET has mode $(stat -c '%a' "$T_SECRET"); run: chmod 600 $SECRET"
elif [ "$DRY_RUN" = 1 ]; then
    if [ -t 0 ]; then
        say "  would ask for the API secret (no echo) and write it to $T_SECRET (root:root 0600)"
    else
        say "  would read the API secret from stdin and write it to $T_SECRET (root:root 0600)"
    fi
else
    secret=""
    if [ -t 0 ]; then
        IFS= read -r -s -p "TimeTrack API secret (input hidden; empty to skip): " secret || true
        printf '\n'
    else
        IFS= read -r secret || true
    fi
    secret=${secret%$'\r'}
    if [ -z "$secret" ]; then
        warn "no API secret given: $SECRET not created; the service cannot start without it"
    else
        # Builtins only (printf, redirection): the secret is never a process argument.
        tmp="$T_CONF_DIR/.secret.$$"
        (umask 077 && printf '%s\n' "$secret" >"$tmp")
        unset secret
        own root:root "$tmp"
        mv -f "$tmp" "$T_SECRET"
        say "  + wrote $T_SECRET (mode 0600)"
        secret_created=1
    fi
fi

step "State directory $T_STATE_DIR"
# StateDirectory= creates it at the first start; admin commands (badge add) may come first.
ensure_dir 0750 "$USER_NAME:$USER_NAME" "$T_STATE_DIR"

# ---------------------------------------------------------------- SPI
step "SPI"
spi_reboot=0
if [ -n "$ROOT" ]; then
    say "  skipped (KIOSK_ROOT)"
elif command -v raspi-config >/dev/null 2>&1; then
    if [ "$(raspi-config nonint get_spi 2>/dev/null || echo 1)" = 0 ]; then
        say "  ok: enabled"
    else
        run raspi-config nonint do_spi 0
        spi_reboot=1
    fi
else
    say "  raspi-config not found: enable SPI yourself (dtparam=spi=on in the firmware config.txt, then reboot)"
fi

# ---------------------------------------------------------------- I2C
# The door display (SSD1306/SH1106) and the optional RTC module sit on I2C1 (pins 3 and 5).
step "I2C"
i2c_reboot=0
if [ -n "$ROOT" ]; then
    say "  skipped (KIOSK_ROOT)"
elif command -v raspi-config >/dev/null 2>&1; then
    if [ "$(raspi-config nonint get_i2c 2>/dev/null || echo 1)" = 0 ]; then
        say "  ok: enabled"
    else
        run raspi-config nonint do_i2c 0
        i2c_reboot=1
    fi
else
    say "  raspi-config not found: enable I2C yourself for a display (dtparam=i2c_arm=on, then reboot)"
fi

# ---------------------------------------------------------------- systemd
step "systemd unit $T_UNIT"
unit_tmp=$(mktemp)
sed "s#^ExecStart=/opt/kiosk/#ExecStart=$PREFIX/#" "$SRC/systemd/kiosk.service" >"$unit_tmp"
unit_changed=0
if [ -f "$T_UNIT" ] && cmp -s "$unit_tmp" "$T_UNIT"; then
    say "  ok: up to date"
else
    [ -d "$(dirname "$T_UNIT")" ] || run install -d -m 0755 "$(dirname "$T_UNIT")"
    if [ "$DRY_RUN" = 1 ]; then
        say "  would install systemd/kiosk.service as $T_UNIT (mode 0644, ExecStart=$PREFIX/.venv/bin/kiosk ...)"
    else
        say "  + install systemd/kiosk.service as $T_UNIT (mode 0644)"
        install -m 0644 "$unit_tmp" "$T_UNIT"
    fi
    unit_changed=1
    code_changed=1
fi
if [ -n "$ROOT" ] || [ "$SYSTEMD" = 0 ]; then
    if [ -n "$ROOT" ]; then say "  systemctl skipped (KIOSK_ROOT)"; else say "  systemctl skipped (--no-systemd)"; fi
elif [ ! -d /run/systemd/system ]; then
    say "  systemd is not running here: systemctl skipped"
else
    [ "$unit_changed" = 0 ] || run systemctl daemon-reload
    if [ "$code_changed" = 1 ] && systemctl is-active --quiet kiosk; then
        say "  the running kiosk still runs the previous version: sudo systemctl restart kiosk"
    fi
fi

# ---------------------------------------------------------------- next steps
if [ "$DRY_RUN" = 1 ]; then
    say ""
    say "Dry run done: nothing was changed."
fi
as_service="sudo systemd-run --pipe --wait --quiet --collect -p User=$USER_NAME -p WorkingDirectory=$STATE_DIR -p LoadCredential=timetrack-secret:$SECRET"
cat <<EOF

Next steps:
EOF
n=1
if [ "$spi_reboot" = 1 ] || [ "$i2c_reboot" = 1 ]; then
    say "  $n. SPI or I2C was just enabled: sudo reboot"; n=$((n + 1))
fi
if [ "$DRY_RUN" = 0 ] && [ "$secret_created" = 0 ] && [ ! -e "$T_SECRET" ]; then
    say "  $n. the API secret (paste it, then Ctrl-D): sudo sh -c 'umask 077; cat > $SECRET'"; n=$((n + 1))
fi
cat <<EOF
  $n. fill in api.base_url and api.key:  sudoedit $CONF
  $((n + 1)). map badges (as the kiosk user, so the store stays the daemon's):
       sudo -u $USER_NAME kiosk badge add 04A1B2C3 anna
  $((n + 2)). check the kiosk as the service will run it (user, groups, secret):
       $as_service $PREFIX/.venv/bin/kiosk doctor
  $((n + 3)). start it now and at every boot:  sudo systemctl enable --now kiosk
       then: systemctl status kiosk; journalctl -u kiosk -f; sudo -u $USER_NAME kiosk status
EOF
