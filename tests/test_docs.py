"""Shell completion (bash, zsh) and man pages: generated from the click commands, committed, current, working."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPLETION = ROOT / "deploy" / "completion"


def env_with_kiosk() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIOSK", "_KIOSK"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_committed_completion_and_man_pages_match_the_commands():
    pytest.importorskip("click_man", reason="click-man is in the docs extra (make deps installs it)")
    result = subprocess.run([sys.executable, str(ROOT / "deploy" / "gen-docs.py"), "--check"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_command_has_a_man_page():
    from kiosk.cli import main

    def names(cmd, prefix):
        yield prefix
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from names(sub, f"{prefix}-{name}")

    assert {f"{n}.1" for n in names(main, "kiosk")} == {p.name for p in (ROOT / "man").glob("*.1")}
    assert "kiosk badge import" in (ROOT / "man" / "kiosk-badge-import.1").read_text()


def bash_complete(line: str) -> list[str]:
    words = line.split(" ")
    script = (f"source {COMPLETION / 'kiosk.bash'}\n"
              f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
              "_kiosk_completion kiosk; printf '%s\\n' \"${COMPREPLY[@]}\"")
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env_with_kiosk(), timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_bash_completion_completes_commands_and_options():
    assert {"badge", "enroll", "open", "flagged", "log", "backup", "restore"} <= set(bash_complete("kiosk "))
    assert set(bash_complete("kiosk badge i")) == {"import"}
    assert "--prune" in bash_complete("kiosk badge import --")


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed (.ci/run installs it)")
def test_zsh_completion_loads_from_fpath_and_gets_its_words(tmp_path):
    site = tmp_path / "site-functions"
    site.mkdir()
    shutil.copy(COMPLETION / "_kiosk", site / "_kiosk")
    assert subprocess.run(["zsh", "-n", str(site / "_kiosk")], timeout=30).returncode == 0
    script = (f"fpath=({site} $fpath); autoload -U compinit; compinit -u -d {tmp_path / 'zcompdump'}; "
              "print -r -- ${_comps[kiosk]}")
    result = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, text=True, env=env_with_kiosk(),
                            timeout=60)
    assert result.stdout.strip() == "_kiosk", result.stderr
    words = subprocess.run(["kiosk"], capture_output=True, text=True, timeout=60,
                           env=env_with_kiosk() | {"COMP_WORDS": "kiosk queue e", "COMP_CWORD": "2",
                                                   "_KIOSK_COMPLETE": "zsh_complete"}).stdout.split("\n")
    assert words[:2] == ["plain", "edit"]


def test_install_puts_completion_and_man_pages_where_shells_and_man_look(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIOSK_")}
    env.update(KIOSK_ROOT=str(tmp_path), KIOSK_SKIP_VENV="1", KIOSK_MODEL_FILE="/nonexistent/model")
    first = subprocess.run(["bash", str(ROOT / "deploy" / "install.sh")], input="", capture_output=True, text=True,
                           env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    local = tmp_path / "usr" / "local" / "share"
    assert (local / "bash-completion" / "completions" / "kiosk").read_text() == (COMPLETION / "kiosk.bash").read_text()
    assert (local / "zsh" / "site-functions" / "_kiosk").read_text() == (COMPLETION / "_kiosk").read_text()
    pages = {p.name for p in (local / "man" / "man1").glob("kiosk*.1")}
    assert pages == {p.name for p in (ROOT / "man").glob("*.1")}
    (local / "man" / "man1" / "kiosk-gone.1").write_text("old")  # a command that no longer exists
    again = subprocess.run(["bash", str(ROOT / "deploy" / "install.sh")], input="", capture_output=True, text=True,
                           env=env, timeout=120)
    assert again.returncode == 0 and not (local / "man" / "man1" / "kiosk-gone.1").exists()
    third = subprocess.run(["bash", str(ROOT / "deploy" / "install.sh")], input="", capture_output=True, text=True,
                           env=env, timeout=120)
    assert "ok: bash and zsh completion, man pages" in third.stdout
