"""kiosk doctor: every check on this (non-Pi) machine, the fake RC522, the emulator over real HTTP, tmp dirs."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import replace

import pytest

from kiosk import config, doctor
from kiosk.config import ConfigError
from kiosk.doctor import FAIL, OK, SKIP, WARN, Check
from kiosk.sim.emulator import Emulator
from kiosk.sim import rc522 as fakespi
from kiosk.store import Store

from .kioskproc import wait_for
from .tlsfront import TlsFront

KEY, SECRET = "doctor-key", "D0ctor-S3cret-never-print"


@pytest.fixture(autouse=True)
def no_dev(tmp_path, monkeypatch):
    """An empty /dev: this machine has no SPI or GPIO nodes, whatever the host has."""
    dev = tmp_path / "dev"
    dev.mkdir()
    monkeypatch.setattr(doctor, "DEV_DIR", str(dev))
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    return dev


def make(tmp_path, **sections) -> config.Settings:
    raw = {"kiosk": {"state_dir": str(tmp_path / "state")}, "clock": {"sync_file": ""}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config.from_dict(raw, path=None, require_api=False)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def one(settings, name: str) -> Check:
    (check,) = doctor.run_checks(settings, only=[name])
    assert check.name == name
    return check


# ---------------------------------------------------------------- off a Pi


def test_off_pi_mfrc522_config_reports_failures_with_fixes(tmp_path):
    settings = make(tmp_path, reader={"type": "mfrc522"}, feedback={"type": "gpio"})
    checks = by_name(doctor.run_checks(settings))
    assert list(checks) == list(doctor.CHECKS)
    spi, reader, gpio = checks["spi"], checks["reader"], checks["gpio"]
    assert spi.status == FAIL and "spidev0.0 not found" in spi.detail
    assert "raspi-config nonint do_spi 0" in spi.fix and "dtparam=spi=on" in spi.fix
    assert reader.status == FAIL and "Raspberry Pi" in reader.detail and reader.fix
    assert gpio.status == FAIL and "no GPIO on this machine" in gpio.detail and gpio.fix
    assert checks["config"].status == OK
    assert doctor.exit_code(checks.values()) == 1
    text = doctor.render(checks.values())
    assert "Traceback" not in text
    assert "fix: sudo raspi-config nonint do_spi 0" in text


def test_spi_node_present_and_readable(tmp_path, no_dev):
    (no_dev / "spidev0.1").write_bytes(b"")
    check = one(make(tmp_path, reader={"spi_device": 1}), "spi")
    assert check.status == OK and check.detail.endswith("spidev0.1 present, read/write")
    assert doctor.render([check]).startswith(f"  ok    spi      {no_dev}/spidev0.1 present")


def test_spi_permission_denied(tmp_path, no_dev, monkeypatch):
    (no_dev / "spidev0.0").write_bytes(b"")
    monkeypatch.setattr(doctor.os, "access", lambda path, mode: False)  # root may read anything
    check = one(make(tmp_path), "spi")
    assert check.status == FAIL and "may not read/write" in check.detail
    assert "usermod -aG spi" in check.fix


def test_non_spi_readers(tmp_path):
    stdin = make(tmp_path, reader={"type": "stdin"})
    assert one(stdin, "spi").status == SKIP
    assert one(stdin, "reader").status == SKIP
    missing = make(tmp_path, reader={"type": "keyboard", "device": str(tmp_path / "event-kbd")})
    check = one(missing, "reader")
    assert check.status == FAIL and "not found" in check.detail and "/dev/input/by-id" in check.fix
    device = tmp_path / "event-kbd"
    device.write_bytes(b"")
    present = one(missing, "reader")
    try:
        import evdev  # noqa: F401
        assert present.status == OK and "readable" in present.detail
    except ImportError:
        assert present.status == FAIL and "evdev" in present.detail
    with pytest.raises(config.ConfigError, match="reader.device: missing"):  # caught by the config itself now
        make(tmp_path, reader={"type": "keyboard"})


# ---------------------------------------------------------------- reader over the fake chip


def test_reader_fake_chip_version_ok_and_reset_pin_released(tmp_path):
    settings = make(tmp_path)
    with fakespi.installed() as hw:
        check = one(settings, "reader")
        assert check.status == OK, check
        assert "0x92" in check.detail and "v2.0" in check.detail
        assert not hw.gpio.is_setup(25)  # the reset pin is free again
        assert not hw.chip.antenna_on


@pytest.mark.parametrize("value", [0x00, 0xFF])
def test_reader_unplugged_chip_not_answering(tmp_path, value):
    with fakespi.installed(fakespi.FakeMfrc522(unplugged_value=value)) as hw:
        hw.chip.unplug()
        check = one(make(tmp_path), "reader")
    assert check.status == FAIL
    assert "not answering" in check.detail and f"0x{value:02X}" in check.detail
    assert "wiring" in check.fix and "3.3 V" in check.fix and "CE0" in check.fix


def test_reader_clone_chip_warns(tmp_path):
    with fakespi.installed(fakespi.FakeMfrc522(version=0x88)):
        check = one(make(tmp_path), "reader")
    assert check.status == WARN and "0x88" in check.detail and "clone" in check.detail


def test_reader_wrong_spi_device(tmp_path):
    with fakespi.installed():
        check = one(make(tmp_path, reader={"spi_device": 1}), "reader")
    assert check.status == FAIL and "spidev0.1 not found" in check.detail and "do_spi" in check.fix


# ---------------------------------------------------------------- GPIO


def test_gpio_node_without_pin_library(tmp_path, no_dev):
    (no_dev / "gpiochip0").write_bytes(b"")
    check = one(make(tmp_path), "gpio")
    assert check.status == FAIL and "no usable pin library" in check.detail and "lgpio" in check.fix


def test_gpio_devices_built_and_closed(tmp_path, no_dev, monkeypatch):
    from gpiozero import Device

    (no_dev / "gpiochip0").write_bytes(b"")
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    before = Device.pin_factory
    check = one(make(tmp_path), "gpio")
    assert check.status == OK, check
    assert "GPIO17" in check.detail and "GPIO18" in check.detail and "MockFactory" in check.detail
    assert Device.pin_factory is before  # the process-wide factory is left alone


def test_gpio_pin_clash(tmp_path, no_dev, monkeypatch):
    (no_dev / "gpiochip0").write_bytes(b"")
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    check = one(make(tmp_path, feedback={"buzzer_pin": 17}), "gpio")
    assert check.status == FAIL and "GPIO17" in check.detail and "own pin" in check.fix


def test_gpio_skipped_for_console_feedback(tmp_path):
    assert one(make(tmp_path, feedback={"type": "console"}), "gpio").status == SKIP


# ---------------------------------------------------------------- clock


def test_clock(tmp_path):
    sync = tmp_path / "synchronized"
    settings = make(tmp_path, clock={"sync_file": str(sync)})
    absent = one(settings, "clock")
    assert absent.status == WARN and "not synchronised" in absent.detail
    assert "timedatectl set-ntp true" in absent.fix and "recorded" in absent.detail
    sync.write_text("")
    assert one(settings, "clock").status == OK
    assert one(make(tmp_path), "clock").status == SKIP  # sync_file = "": check disabled


# ---------------------------------------------------------------- API over real HTTP


@pytest.fixture(scope="module")
def emu():
    with Emulator(key=KEY, secret=SECRET) as emulator:
        yield emulator


def api_settings(tmp_path, url: str, secret: str = SECRET) -> config.Settings:
    return make(tmp_path, api={"base_url": url, "key": KEY, "secret": secret,
                               "connect_timeout": 2.0, "read_timeout": 2.0})


def assert_no_secret(checks, *secrets):
    text = doctor.render(checks) + doctor.render(checks, as_json=True)
    for secret in secrets:
        assert secret not in text


def test_api_ok(tmp_path, emu):
    check = one(api_settings(tmp_path, emu.url), "api")
    assert check.status == OK and "credentials accepted" in check.detail
    assert_no_secret([check], SECRET)


def test_api_wrong_secret(tmp_path, emu):
    wrong = "Wr0ng-S3cret-also-private"
    checks = doctor.run_checks(api_settings(tmp_path, emu.url, wrong))
    check = by_name(checks)["api"]
    assert check.status == FAIL and "credentials rejected" in check.detail and "secret" in check.fix
    assert_no_secret(checks, wrong, SECRET)


def test_api_closed_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    check = one(api_settings(tmp_path, f"http://127.0.0.1:{port}/api"), "api")
    assert check.status == FAIL and "unreachable" in check.detail and "api.base_url" in check.fix
    assert_no_secret([check], SECRET)


@pytest.mark.parametrize("cert, trusted, expect, fix", [
    ("future", True, "certificate not yet valid", "clock"),  # a Pi whose clock is still in the past
    ("selfsigned", False, "TLS failed", "ca_bundle"),
])
def test_api_tls_failures_classified(tmp_path, cert, trusted, expect, fix):
    """Real handshakes against a TLS server (tests/tlsfront.py), classified by the client's typed cause."""
    with TlsFront(cert) as front:
        settings = api_settings(tmp_path, front.url("/api"))
        if trusted:
            settings = replace(settings, api=replace(settings.api, ca_bundle=str(front.cert)))
        check = one(settings, "api")
        # The server saw the handshake fail: no request was ever sent.
        assert wait_for(lambda: front.handshakes_failed >= 1, 5)
    assert check.status == FAIL and expect in check.detail and fix in check.fix


def test_api_dns_failure(tmp_path):
    """.invalid never resolves (RFC 6761): a real failed lookup."""
    check = one(api_settings(tmp_path, "https://timetrack.invalid/api"), "api")
    assert check.status == FAIL and "DNS lookup of timetrack.invalid" in check.detail and "DNS" in check.fix


def test_api_http_error_and_secret_echo_masked(tmp_path, emu):
    """A server error whose body echoes the request headers, secret included: never shown."""
    emu.set_faults(error_rate=1.0, echo_headers=True)
    try:
        checks = doctor.run_checks(api_settings(tmp_path, emu.url), only=["api"])
    finally:
        emu.set_faults()
    assert checks[0].status == FAIL and "server error" in checks[0].detail
    assert "Request headers" in checks[0].detail and doctor.MASK in checks[0].detail
    assert_no_secret(checks, SECRET)


@pytest.mark.parametrize("mode", ["page", "redirect", "511"])
def test_api_captive_portal_or_web_front_end(tmp_path, emu, mode):
    """Before #13 a 200 login page passed as "reachable, credentials accepted"."""
    emu.set_faults(captive_portal=mode)
    try:
        check = one(api_settings(tmp_path, emu.url), "api")
    finally:
        emu.set_faults()
    assert check.status == FAIL and "answered with a web page" in check.detail
    assert "captive portal" in check.detail and "api.base_url" in check.fix


def test_api_trickling_server_is_cut_at_the_deadline(tmp_path, emu):
    emu.set_faults(dribble_head=0.2)
    settings = api_settings(tmp_path, emu.url)
    settings = replace(settings, api=replace(settings.api, request_deadline=1.0))
    started = time.monotonic()
    try:
        check = one(settings, "api")
    finally:
        emu.set_faults()
    assert time.monotonic() - started < 5
    assert check.status == FAIL and "trickles" in check.detail


def test_api_oversized_answer(tmp_path, emu):
    emu.set_faults(oversize=5_000_000)
    try:
        check = one(api_settings(tmp_path, emu.url), "api")
    finally:
        emu.set_faults()
    assert check.status == FAIL and "larger than 1024 KiB" in check.detail


def test_api_not_configured_or_partly(tmp_path):
    assert one(make(tmp_path), "api").status == SKIP
    partial = one(make(tmp_path, api={"base_url": "https://tt.example/api"}), "api")
    assert partial.status == FAIL and "api.key" in partial.detail and "secret" in partial.detail


# ---------------------------------------------------------------- state dir and store


def test_state_dir_ok_and_store_counts(tmp_path):
    settings = make(tmp_path)
    state = tmp_path / "state"
    state.mkdir(mode=0o750)
    os.chmod(state, 0o750)
    Store(settings.store_path).close()
    checks = by_name(doctor.run_checks(settings, only=["state", "store"]))
    assert checks["state"].status == OK and "0750" in checks["state"].detail
    assert checks["store"].status == OK
    assert "integrity ok" in checks["store"].detail and "0 queued, 0 rejected" in checks["store"].detail


def test_state_dir_missing(tmp_path):
    checks = by_name(doctor.run_checks(make(tmp_path), only=["state", "store"]))
    state = checks["state"]
    assert state.status == WARN and "missing" in state.detail and "install -d" in state.fix
    assert checks["store"].status == WARN and "no store" in checks["store"].detail
    assert not (tmp_path / "state").exists()  # the doctor creates nothing


def test_state_dir_world_writable(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o777)
    check = one(make(tmp_path), "state")
    assert check.status == WARN and "world-writable" in check.detail and "chmod o-w" in check.fix


def test_state_dir_not_writable(tmp_path, monkeypatch):
    (tmp_path / "state").mkdir()
    monkeypatch.setattr(doctor.os, "access", lambda path, mode: False)
    check = one(make(tmp_path), "state")
    assert check.status == FAIL and "not writable" in check.detail


@pytest.mark.parametrize("content", [b"this is not an sqlite database" * 100,
                                     b"SQLite format 3\x00" + b"\x01" * 5000])
def test_store_damaged_fails_quietly(tmp_path, capfd, content):
    settings = make(tmp_path)
    (tmp_path / "state").mkdir()
    settings.store_path.write_bytes(content)
    check = one(settings, "store")
    assert check.status == FAIL and "database" in check.detail and "kiosk restore" in check.fix
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err  # sqlitedict's thread logs one if let through


# ---------------------------------------------------------------- secret file


def test_secret_file_modes(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    settings = make(tmp_path, api={"secret_file": str(secret)})
    check = one(settings, "secret")
    assert check.status == OK and "0600" in check.detail
    secret.chmod(0o640)  # changed after the config was read
    check = one(settings, "secret")
    assert check.status == FAIL and "chmod 600" in check.fix
    secret.chmod(0o700)
    assert one(settings, "secret").status == WARN
    assert_no_secret([check], SECRET)


def test_inline_secret_in_world_readable_config(write_config):
    path = write_config(f'[api]\nbase_url = "http://127.0.0.1:1/api"\nkey = "{KEY}"\nsecret = "{SECRET}"\n')
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="everyone may read it"):  # the config refuses this itself
        config.load(path)
    path.chmod(0o640)
    assert one(config.load(path), "secret").status == WARN
    path.chmod(0o600)
    assert one(config.load(path), "secret").status == OK


# ---------------------------------------------------------------- config, robustness, output


def test_config_error_still_runs_what_needs_no_config(tmp_path):
    err = ConfigError("/etc/kiosk/kiosk.toml", "reader.type", "must be one of mfrc522, stdin, keyboard, not 'x'")
    checks = doctor.run_checks(None, only=["clock", "api"], config_error=err)
    named = by_name(checks)
    assert list(named) == ["config", "clock", "api"]  # config always comes along when it failed
    assert named["config"].status == FAIL and "reader.type" in named["config"].detail
    assert named["clock"].status in (OK, WARN)  # the default sync file
    assert named["api"].status == SKIP
    assert doctor.exit_code(checks) == 1


def test_diagnose_missing_file(tmp_path):
    checks = doctor.diagnose(tmp_path / "nope.toml")
    assert by_name(checks)["config"].status == FAIL and "file not found" in by_name(checks)["config"].detail
    assert all(c.status in doctor.STATUSES for c in checks)


def test_a_crashing_check_becomes_a_fail_line(tmp_path, monkeypatch):
    def boom(settings):
        raise ZeroDivisionError("oops")

    monkeypatch.setitem(doctor._CHECK_FUNCS, "clock", boom)
    check = one(make(tmp_path), "clock")
    assert check.status == FAIL and "ZeroDivisionError: oops" in check.detail


def test_only_rejects_unknown_names(tmp_path):
    with pytest.raises(ValueError, match="unknown check"):
        doctor.run_checks(make(tmp_path), only=["nonsense"])


def test_render_and_exit_code():
    checks = [Check("spi", OK, "/dev/spidev0.0 present, read/write"),
              Check("clock", WARN, "not synchronised", "sudo timedatectl set-ntp true"),
              Check("api", SKIP, "api not configured", "ignored for skips")]
    assert doctor.render(checks).splitlines() == [
        "  ok    spi      /dev/spidev0.0 present, read/write",
        "  warn  clock    not synchronised",
        "                 fix: sudo timedatectl set-ntp true",
        "  skip  api      api not configured",
    ]
    assert doctor.exit_code(checks) == 0
    assert doctor.exit_code([*checks, Check("gpio", FAIL, "x", "y")]) == 1
    data = json.loads(doctor.render(checks, as_json=True))
    assert data[1] == {"name": "clock", "status": "warn", "detail": "not synchronised",
                       "fix": "sudo timedatectl set-ntp true"}

