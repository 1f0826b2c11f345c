#!/usr/bin/env bash
# Remove the kiosk installed by deploy/install.sh, as root:
#
#   sudo deploy/uninstall.sh [--prefix DIR] [--purge [--backup FILE]] [--no-systemd] [--dry-run]
#
# Stops and disables the service, removes the unit (and its drop-ins), the
# /usr/local/bin/kiosk link, the venv and the copied code, and the metrics
# textfile. It keeps /etc/kiosk (the configuration and the secret), the store in
# /var/lib/kiosk and the user kiosk, so that install.sh can bring the kiosk back
# as it was. Idempotent: a second run finds nothing to do.
#
#   --prefix DIR    where install.sh put the code (default /opt/kiosk); a git
#                   clone used in place loses only its .venv
#   --purge         also delete /etc/kiosk (config and secret), /var/lib/kiosk
#                   (the store) and the user kiosk, but only after
#                   `kiosk backup` has copied the store; if the backup fails,
#                   nothing is removed
#   --backup FILE   where the backup goes (default
#                   /var/backups/kiosk/kiosk-YYYYmmddTHHMMSSZ.sqlite, root 0600);
#                   an existing FILE is never overwritten
#   --no-systemd    run no systemctl (containers, image builds)
#   --dry-run       print what would be done, change nothing
#
# Environment, for tests (as in install.sh):
#   KIOSK_ROOT=DIR  remove below DIR and leave the system alone: no systemctl,
#                   no userdel
#   KIOSK_BIN=PATH  the kiosk command that makes the backup (default
#                   PREFIX/.venv/bin/kiosk)
set -euo pipefail
umask 077

PREFIX=/opt/kiosk
SYSTEMD=1
DRY_RUN=0
PURGE=0
BACKUP=""
ROOT=${KIOSK_ROOT:-}
USER_NAME=kiosk

PROG=uninstall
# shellcheck source=script-lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/script-lib.sh"  # usage, say, step, warn, die, run

while [ $# -gt 0 ]; do
    case $1 in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#--prefix=}; shift ;;
        --purge) PURGE=1; shift ;;
        --backup) [ $# -ge 2 ] || die "--backup needs a file name"; BACKUP=$2; shift 2 ;;
        --backup=*) BACKUP=${1#--backup=}; shift ;;
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
if [ -n "$BACKUP" ] && [ "$PURGE" = 0 ]; then
    die "--backup goes with --purge (without it nothing is deleted, so nothing needs a backup)"
fi
if [ -n "$ROOT" ]; then
    case $ROOT in /*) ;; *) die "KIOSK_ROOT must be an absolute path" ;; esac
    ROOT=${ROOT%/}
fi

CONF_DIR=/etc/kiosk
CONF=$CONF_DIR/kiosk.toml
STATE_DIR=/var/lib/kiosk
UNIT=/etc/systemd/system/kiosk.service
LINK=/usr/local/bin/kiosk
T_PREFIX=$ROOT$PREFIX
T_CONF_DIR=$ROOT$CONF_DIR
T_CONF=$ROOT$CONF
T_STATE_DIR=$ROOT$STATE_DIR
T_UNIT=$ROOT$UNIT
T_DROPINS=$ROOT$UNIT.d
T_LINK=$ROOT$LINK
KIOSK_BIN=${KIOSK_BIN:-$T_PREFIX/.venv/bin/kiosk}
if [ "$PURGE" = 1 ] && [ -z "$BACKUP" ]; then
    BACKUP=$ROOT/var/backups/kiosk/kiosk-$(date -u +%Y%m%dT%H%M%SZ).sqlite
fi
case $BACKUP in
    ""|/*) ;;
    *) BACKUP=$PWD/$BACKUP ;;
esac

if [ "$DRY_RUN" = 0 ] && [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0), or try --dry-run"
fi
[ "$DRY_RUN" = 0 ] || say "Dry run: nothing is changed."
say "Removing the kiosk from $T_PREFIX${ROOT:+ (KIOSK_ROOT=$ROOT)}"
[ "$PURGE" = 0 ] || say "  --purge: the configuration, the secret and the store go too, after a backup"

use_systemctl() { [ -z "$ROOT" ] && [ "$SYSTEMD" = 1 ] && [ -d /run/systemd/system ]; }
# A value from the configuration (empty when unset or unreadable): python3 is there, install.sh needs it.
conf_value() {  # conf_value SECTION KEY
    [ -r "$T_CONF" ] || return 0
    python3 - "$T_CONF" "$1" "$2" <<'PY' 2>/dev/null || true
import sys, tomllib
with open(sys.argv[1], "rb") as fh:
    value = tomllib.load(fh).get(sys.argv[2], {}).get(sys.argv[3], "")
print(value if isinstance(value, str) else "")
PY
}
is_kiosk_tree() { grep -qs '^name = "kiosk"$' "$1/pyproject.toml"; }

# ---------------------------------------------------------------- checks first: refuse before changing anything
if [ -e "$T_PREFIX" ] && ! is_kiosk_tree "$T_PREFIX" && [ -n "$(find "$T_PREFIX" -mindepth 1 -maxdepth 1 ! -name .venv -print -quit)" ]; then
    die "$T_PREFIX holds something else than the kiosk; check --prefix"
fi
if [ "$PURGE" = 1 ] && [ -e "$BACKUP" ]; then
    die "$BACKUP exists: choose another --backup (a backup is never overwritten)"
fi

# ---------------------------------------------------------------- service
step "Service"
was_active=0
if use_systemctl; then
    if systemctl is-active --quiet kiosk; then
        was_active=1
        run systemctl stop kiosk
    else
        say "  ok: not running"
    fi
elif [ -n "$ROOT" ]; then
    say "  systemctl skipped (KIOSK_ROOT)"
elif [ "$SYSTEMD" = 0 ]; then
    say "  systemctl skipped (--no-systemd); stop the daemon yourself if it runs"
else
    say "  systemd is not running here: systemctl skipped"
fi

# ---------------------------------------------------------------- backup (--purge only)
if [ "$PURGE" = 1 ]; then
    step "Backup of the store"
    state_dir=$(conf_value kiosk state_dir)
    state_dir=${state_dir:-$STATE_DIR}
    store=$state_dir/kiosk.sqlite  # as the configuration says: that is the store kiosk backup copies
    if [ ! -e "$store" ]; then
        say "  no store at $store: nothing to back up"
        BACKUP=""
    elif [ "$DRY_RUN" = 1 ]; then
        say "  would run: $(printf '%q ' "$KIOSK_BIN" --config "$T_CONF" backup "$BACKUP")"
    else
        backup_ok=1
        [ -x "$KIOSK_BIN" ] || { warn "$KIOSK_BIN is missing: cannot back up the store"; backup_ok=0; }
        if [ "$backup_ok" = 1 ]; then
            install -d -m 0700 "$(dirname "$BACKUP")"
            say "  + $(printf '%q ' "$KIOSK_BIN" --config "$T_CONF" backup "$BACKUP")"
            "$KIOSK_BIN" --config "$T_CONF" backup "$BACKUP" || backup_ok=0
        fi
        if [ "$backup_ok" = 1 ] && [ -s "$BACKUP" ]; then
            chmod 0600 "$BACKUP"
            say "  backup: $BACKUP"
        else
            rm -f "$BACKUP"
            again=""
            if [ "$was_active" = 1 ]; then
                run systemctl start kiosk
                again=" (the service runs again)"
            fi
            die "the backup of $store failed: nothing was purged or removed$again"
        fi
    fi
fi

# ---------------------------------------------------------------- unit
step "systemd unit $T_UNIT"
if use_systemctl && systemctl is-enabled --quiet kiosk 2>/dev/null; then
    run systemctl disable kiosk
fi
unit_removed=0
if [ -e "$T_UNIT" ]; then
    run rm -f "$T_UNIT"
    unit_removed=1
else
    say "  ok: no unit file"
fi
if [ -d "$T_DROPINS" ]; then
    run rm -rf "$T_DROPINS"
    unit_removed=1
fi
if use_systemctl && [ "$unit_removed" = 1 ]; then
    run systemctl daemon-reload
    if systemctl is-failed --quiet kiosk 2>/dev/null; then run systemctl reset-failed kiosk; fi
fi

# ---------------------------------------------------------------- metrics textfile
textfile=$(conf_value metrics textfile)
if [ -n "$textfile" ]; then
    step "Metrics textfile $ROOT$textfile"
    case $textfile in
        /*.prom)
            if [ -f "$ROOT$textfile" ]; then
                # A stale file would keep node_exporter serving the last queue size (and firing alerts).
                run rm -f "$ROOT$textfile"
            else
                say "  ok: not there"
            fi ;;
        *) warn "metrics.textfile $textfile is not an absolute .prom path: left alone" ;;
    esac
fi

# ---------------------------------------------------------------- link, venv, code
step "Command and code in $T_PREFIX"
if [ -L "$T_LINK" ] && [ "$(readlink "$T_LINK")" = "$PREFIX/.venv/bin/kiosk" ]; then
    run rm -f "$T_LINK"
elif [ -e "$T_LINK" ] || [ -L "$T_LINK" ]; then
    warn "$T_LINK is not the link install.sh made (to $PREFIX/.venv/bin/kiosk): left alone"
else
    say "  ok: no $T_LINK"
fi
if [ -d "$T_PREFIX/.git" ]; then
    # A clone used in place (install.sh --prefix pointing at it): the sources are the admin's.
    if [ -d "$T_PREFIX/.venv" ]; then run rm -rf "$T_PREFIX/.venv"; else say "  ok: no venv"; fi
    say "  the clone in $T_PREFIX is left as it is"
elif [ -e "$T_PREFIX" ]; then
    run rm -rf "$T_PREFIX"
else
    say "  ok: no $T_PREFIX"
fi

# ---------------------------------------------------------------- configuration, secret, store
step "Configuration, secret and store"
if [ "$PURGE" = 0 ]; then
    for kept in "$T_CONF_DIR" "$T_STATE_DIR"; do
        [ ! -e "$kept" ] || say "  kept: $kept"
    done
    if [ -z "$ROOT" ] && getent passwd "$USER_NAME" >/dev/null 2>&1; then say "  kept: user $USER_NAME"; fi
    say "  (sudo $0 --purge deletes them after a backup of the store)"
else
    for gone in "$T_CONF_DIR" "$T_STATE_DIR"; do
        if [ -e "$gone" ]; then run rm -rf "$gone"; else say "  ok: no $gone"; fi
    done
    if [ -n "$ROOT" ]; then
        say "  user $USER_NAME: skipped (KIOSK_ROOT)"
    elif getent passwd "$USER_NAME" >/dev/null 2>&1; then
        run userdel "$USER_NAME"
        if getent group "$USER_NAME" >/dev/null 2>&1; then run groupdel "$USER_NAME"; fi
    else
        say "  ok: no user $USER_NAME"
    fi
fi

if [ "$DRY_RUN" = 1 ]; then
    say ""
    say "Dry run done: nothing was changed."
elif [ "$PURGE" = 1 ] && [ -n "$BACKUP" ]; then
    say ""
    say "Done. The store's backup: $BACKUP"
else
    say ""
    say "Done."
fi
