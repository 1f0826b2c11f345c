"""The house's walls: what the daemon imports on a Pi never includes the simulators."""

from __future__ import annotations

import subprocess
import sys

PI_MODULES = [
    "kiosk.app", "kiosk.daemon", "kiosk.cli", "kiosk.readers.mfrc522", "kiosk.readers.keyboard",
    "kiosk.readers.stdin", "kiosk.feedback.gpio", "kiosk.feedback.console", "kiosk.delivery.sender",
    "kiosk.delivery.client", "kiosk.store", "kiosk.doctor", "kiosk.service", "kiosk.signals",
]


def test_the_daemon_and_everything_it_imports_never_import_kiosk_sim():
    code = (
        "import importlib, sys\n"
        f"for name in {PI_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "sims = sorted(m for m in sys.modules if m == 'kiosk.sim' or m.startswith('kiosk.sim.'))\n"
        "print(','.join(sims))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_kiosk_run_builds_its_parts_without_the_simulators(tmp_path):
    """The composition root with a real configuration (the RC522 factory is Pi-only: it fails
    here, cleanly, before anything from kiosk.sim was imported)."""
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text(f'[kiosk]\nstate_dir = "{tmp_path}"\n[api]\nbase_url = "https://tt.example/api"\nkey = "k"\n'
                   'secret = "s"\n[feedback]\ntype = "none"\n')
    cfg.chmod(0o600)
    code = (
        "import sys\n"
        "from kiosk import app, config\n"
        "from kiosk.exc import HardwareError\n"
        f"settings = config.load({str(cfg)!r})\n"
        "try:\n"
        "    app.build(settings)\n"
        "except HardwareError:\n"
        "    pass\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith('kiosk.sim'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
