"""The display in a real `kiosk run` process: LEDs-or-console and a display side by side, a display that
fails on every write (KIOSK_DISPLAY_SIM=broken, the benchmark's hook), `kiosk status`, `kiosk demo`."""

from __future__ import annotations

import os
import subprocess

import pytest

pytest.importorskip("luma.oled", reason="the display extra (luma) is not installed: pip install -e '.[display]'")

from PIL import Image  # noqa: E402

from kiosk import config as config_mod  # noqa: E402
from kiosk.feedback.display_check import check_display  # noqa: E402
from kiosk.sim.display import Hardware  # noqa: E402

from .kioskproc import KIOSK, Daemon, clean_env, closed_port, kiosk, kiosk_json, wait_for, write_config  # noqa: E402

ANNA, BEN = "04A1B2C3", "04D5E6F7A8B9C0"
WITH_DISPLAY = """
[display]
driver = "ssd1306"
"""


@pytest.fixture
def kiosk_with_display(tmp_path):
    config = write_config(tmp_path / "kiosk.toml", tmp_path / "state",
                          f"http://127.0.0.1:{closed_port()}/api/v2/ext", extra=WITH_DISPLAY)
    text = config.read_text().replace('[feedback]\ntype = "console"', '[feedback]\ndevices = ["console", "display"]')
    config.write_text(text)
    kiosk(config, "badge", "add", ANNA, "anna")
    kiosk(config, "badge", "add", BEN, "ben")
    return config


def test_every_tap_is_recorded_and_signalled_while_the_display_fails_on_every_write(kiosk_with_display):
    d = Daemon(kiosk_with_display, log_level="INFO", env={"KIOSK_DISPLAY_SIM": "broken"})
    taps = [ANNA, BEN] * 15
    for uid in taps:
        d.tap(uid)
    lines = [d.line() for _ in taps]
    assert [line.split()[:2] for line in lines] == [["IN", "anna"], ["IN", "ben"]] + [["OUT", "anna"], ["OUT", "ben"],
                                                    ["IN", "anna"], ["IN", "ben"]] * 7
    d.wait_log("feedback failing: display: ssd1306 on /dev/i2c-1 address 0x3C not answering")
    status = kiosk_json(kiosk_with_display, "status")
    assert status["feedback"]["ok"] is False and "not answering" in status["feedback"]["message"]
    assert "feedback:       FAILING: display: ssd1306" in kiosk(kiosk_with_display, "status").stdout
    assert d.close_input() == 0
    log = d.stderr_so_far()
    assert "simulated" in log.lower()  # never mistaken for real hardware
    assert log.count("display: opening failed:") == 1  # once per streak, not per attempt
    assert len(kiosk_json(kiosk_with_display, "queue", "list")) == 14  # every clock-out queued


def test_a_display_whose_writes_hang_holds_up_no_tap(kiosk_with_display):
    d = Daemon(kiosk_with_display, env={"KIOSK_DISPLAY_SIM": "hang"})
    for uid in (ANNA, BEN, ANNA):
        d.tap(uid)
    assert [d.line().split()[:2] for _ in range(3)] == [["IN", "anna"], ["IN", "ben"], ["OUT", "anna"]]
    assert d.close_input() == 0  # and it still stops (the stuck drawing thread is left behind)


def test_a_working_display_reports_nothing(kiosk_with_display):
    d = Daemon(kiosk_with_display, log_level="INFO", env={"KIOSK_DISPLAY_SIM": "ok"})
    d.tap(ANNA)
    assert d.line().startswith("IN  anna ")
    assert d.close_input() == 0
    assert kiosk_json(kiosk_with_display, "status")["feedback"] is None
    log = d.stderr_so_far()
    assert "failed" not in log and "feedback failing" not in log


def test_a_bad_simulation_value_is_refused(kiosk_with_display):
    d = Daemon(kiosk_with_display, env={"KIOSK_DISPLAY_SIM": "brokn"})
    d.tap(ANNA)
    assert d.line().startswith("IN  anna ")  # the tap still works
    d.wait_log("KIOSK_DISPLAY_SIM='brokn': must be one of ok, broken, hang, absent")
    assert d.close_input() == 0


def test_doctor_check_of_the_display(tmp_path):
    s = config_mod.from_dict({"feedback": {"devices": ["gpio", "display"]}}, require_api=False)
    dev = tmp_path / "dev"
    dev.mkdir()
    check = check_display(s, dev_dir=str(dev))
    assert (check.status, check.name) == ("fail", "display") and "i2c-1 missing" in check.detail
    assert "raspi-config nonint do_i2c 0" in check.fix
    assert check_display(s, hardware=Hardware("ok")).status == "ok"
    broken = check_display(s, hardware=Hardware("broken"))
    assert broken.status == "fail" and "nothing answers at 0x3C" in broken.detail and "SDA pin 3" in broken.fix
    other = check_display(config_mod.from_dict({"feedback": {"devices": ["display"]}, "display": {"i2c_address": 0x3D}},
                                               require_api=False), hardware=Hardware("ok"))
    assert other.status == "fail" and "0x3D" in other.detail  # the panel answers at 0x3C
    assert check_display(config_mod.from_dict({}, require_api=False)).status == "skip"
    lcd = config_mod.from_dict({"feedback": {"devices": ["display"]}, "display": {"driver": "st7735"}},
                               require_api=False)
    (dev / "spidev0.1").touch()
    spi = check_display(lcd, dev_dir=str(dev))
    assert spi.status == "ok" and "DC GPIO24, RST GPIO23, backlight GPIO12" in spi.detail
    dummy = config_mod.from_dict({"feedback": {"devices": ["display"]}, "display": {"driver": "dummy"}},
                                 require_api=False)
    assert check_display(dummy).status == "warn"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may use any device node")
def test_doctor_names_the_group_for_a_device_node_it_may_not_use(tmp_path):
    s = config_mod.from_dict({"feedback": {"devices": ["display"]}}, require_api=False)
    node = tmp_path / "i2c-1"
    node.touch(mode=0o600)
    node.chmod(0)
    check = check_display(s, dev_dir=str(tmp_path))
    assert check.status == "fail" and "usermod -aG i2c" in check.fix


def test_demo_writes_each_screen_as_a_numbered_png(tmp_path):
    out = tmp_path / "screens"
    proc = subprocess.Popen([*KIOSK, "demo", "--display-png", str(out), "--min-session", "0", "--debounce", "0"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env())

    def kinds() -> list[str]:
        return [p.name[5:].removesuffix(".png") for p in sorted(out.glob("*.png"))]

    try:
        assert wait_for(lambda: "idle" in kinds(), 30)
        for uid, kind in (("04A1B2C3", "clock_in"), ("FFFFFFFF", "unknown"), ("1A2B3C4D", "disabled")):
            proc.stdin.write(uid + "\n")
            proc.stdin.flush()
            assert wait_for(lambda: kind in kinds(), 30), kinds()  # a person waits for the screen
        proc.stdin.close()
        assert proc.wait(60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    names = sorted(p.name for p in out.iterdir())
    assert [int(n[:4]) for n in names] == list(range(1, len(names) + 1))
    assert kinds()[0] == "idle" and [k for k in kinds() if k != "idle"] == ["clock_in", "unknown", "disabled"]
    for name in names:
        assert Image.open(out / name).size == (128, 64)


def test_demo_display_window_or_a_clean_error(tmp_path):
    env = {**clean_env(), "SDL_VIDEODRIVER": "dummy"}  # no desktop needed
    result = subprocess.run([*KIOSK, "demo", "--display"], input="04A1B2C3\n", capture_output=True, text=True,
                            timeout=120, env=env)
    try:
        import luma.emulator.device  # noqa: F401 (is the emulator there?)
    except ImportError:
        assert result.returncode == 69 and "luma.emulator" in result.stderr
        pytest.skip("luma.emulator (pygame) is not installed: the clean error is all there is to check")
    assert result.returncode == 0, result.stderr
    assert "IN  anna" in result.stdout and "Traceback" not in result.stderr
    headless = {k: v for k, v in clean_env().items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    result = subprocess.run([*KIOSK, "demo", "--display"], input="", capture_output=True, text=True, timeout=120,
                            env=headless)
    assert result.returncode == 69 and "no desktop" in result.stderr and "Traceback" not in result.stderr
