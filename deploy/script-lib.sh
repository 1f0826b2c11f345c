# shellcheck shell=bash
# Sourced by install.sh and uninstall.sh: their messages and `run`, the one way they change anything.
# The script sets PROG (its name in warnings and errors) and DRY_RUN before calling these.

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
say() { printf '%s\n' "$*"; }
step() { printf '\n== %s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

# Every change goes through run: printed in a dry run, else done (and shown).
run() {
    local shown
    shown=$(printf '%q ' "$@")
    if [ "$DRY_RUN" = 1 ]; then
        say "  would run: ${shown% }"
    else
        say "  + ${shown% }"
        "$@"
    fi
}
