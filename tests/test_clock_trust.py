"""Clock trust (#13): the kernel's NTP state, the sync file, and TimeTrack's Date header as a witness.

Before #13 entries waited for ``/run/systemd/timesync/synchronized``, which only
systemd-timesyncd writes: under chrony or ntpd, or with NTP blocked, they were
held forever and ``kiosk status`` did not say why. The whole-process tests
here failed on that code (entries never sent; no ``clock`` in the status).
"""

from __future__ import annotations

import email.utils
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kiosk import clock as clk, config, doctor
from kiosk.clock import Clock, KernelTime, date_sample, kernel_time
from kiosk.config import ApiSettings, ConfigError
from kiosk.delivery.client import TimeTrackClient
from kiosk.sim.emulator import Emulator
from kiosk.store import Store

from .kioskproc import Daemon, closed_port, kiosk, kiosk_json, wait_for, write_config
from .tlsfront import TlsFront

KEY, SECRET = "clock-key", "Cl0ck-S3cret-never-shown"
ANNA = "04A1B2C3"
ROOT = Path(__file__).resolve().parent.parent
UNSYNCED = KernelTime(False, 16.0, 16.0, 0x40)


def http_date(offset: float = 0.0) -> str:
    return email.utils.formatdate(time.time() + offset, usegmt=True)


class Wall:
    """A wall clock the test can step, as an administrator's ``date -s`` does."""

    def __init__(self):
        self.step = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.step


def unsynced_clock(**kw) -> Clock:
    return Clock(source="kernel", kernel=lambda: UNSYNCED, **kw)


def observe(clock: Clock, offset: float) -> None:
    b = clk.boottime()
    clock.observe(http_date(offset), b - 0.01, b)


# ---------------------------------------------------------------- the kernel


def test_the_kernel_ntp_state_is_read_as_timedatectl_reads_it():
    state = kernel_time()
    assert state.error == ""  # Linux: adjtimex(2) answers, read-only, with no privilege
    assert 0 <= state.maxerror <= 160 and 0 <= state.esterror <= 160
    assert state.synced == (state.maxerror < 16.0)  # systemd's rule: maxerror below 16 s


def test_reading_the_kernel_state_needs_no_privilege():
    """Without any capability (as the unit runs it: empty CapabilityBoundingSet=) the read still works."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    # As the unit runs it: no capability at all (even as root: an empty bounding set empties them on exec).
    args = [setpriv, "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all"]
    code = ("from kiosk.clock import kernel_time; k = kernel_time(); "
            "caps = [l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0]; "
            "print(repr(k.error), k.maxerror, caps)")
    out = subprocess.run([*args, sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert out.returncode == 0, out.stderr
    error, maxerror, caps = out.stdout.split()
    assert int(caps, 16) == 0  # no CAP_SYS_TIME: the call can only read
    assert error == "''" and 0 <= float(maxerror) <= 160


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize("section, source", [
    (None, "kernel"),  # the default
    ({"sync_file": ""}, "none"),  # configs from before clock.source: "" trusted the local clock
    ({"sync_file": "/run/systemd/timesync/synchronized"}, "kernel"),  # timesyncd's file: the kernel knows too
    ({"sync_file": "/run/my-ntp/synced"}, "file"),
    ({"source": "kernel", "sync_file": ""}, "kernel"),  # an explicit source wins
    ({"source": "none"}, "none"),
])
def test_clock_source_keeps_old_configs_valid(section, source):
    raw = {} if section is None else {"clock": section}
    assert config.from_dict(raw, require_api=False).clock.source == source


@pytest.mark.parametrize("section, key", [
    ({"source": "file", "sync_file": ""}, "clock.sync_file"),
    ({"source": "chrony"}, "clock.source"),
    ({"max_skew_seconds": -1}, "clock.max_skew_seconds"),
    ({"server_date": "yes"}, "clock.server_date"),
])
def test_bad_clock_settings_are_refused(section, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        config.from_dict({"clock": section}, require_api=False)


def test_request_deadline_setting():
    assert config.ApiSettings().request_deadline == 30.0
    with pytest.raises(ConfigError, match="api.request_deadline"):
        config.from_dict({"api": {"request_deadline": 0}}, require_api=False)


# ---------------------------------------------------------------- TimeTrack's Date header


def test_no_witness_no_trust():
    clock = unsynced_clock()
    assert not clock.synced() and clock.wants_evidence()
    assert not clock.stamp().synced and clock.correct({"boottime": 1.0, "boot": clk.boot_id()}) is None
    assert clock.summary()["trusted"] is False and clock.summary()["skew_seconds"] is None


def test_within_max_skew_the_local_clock_is_trusted():
    clock = unsynced_clock(max_skew=10)
    observe(clock, 3.0)
    summary = clock.summary()
    assert clock.synced() and summary["source"] == "timetrack" and not summary["offset_applied"]
    assert 2.0 < summary["skew_seconds"] < 4.0
    assert clock.stamp().synced  # taps keep the local time, as with NTP
    assert not clock.wants_evidence()


def test_beyond_max_skew_stamps_get_timetracks_time_from_the_boot_clock():
    clock = unsynced_clock(max_skew=10)
    observe(clock, 3600.0)
    stamp = clock.stamp()
    assert clock.synced() and not stamp.synced  # held, then corrected
    true = clock.correct({"boottime": stamp.boottime, "boot": stamp.boot})
    assert abs((true - stamp.at).total_seconds() - 3600) < 1.5
    later = clock.correct({"boottime": stamp.boottime + 90.0, "boot": stamp.boot})
    assert later - true == timedelta(seconds=90)  # lengths come from the boot clock, exactly
    assert "corrected by +3600" in clock.correction_note() or "corrected by +3599" in clock.correction_note()
    assert clock.correct({"boottime": stamp.boottime, "boot": "another-boot"}) is None


def test_a_local_clock_stepped_after_the_measurement_is_noticed():
    wall = Wall()
    clock = unsynced_clock(max_skew=10, now=wall)
    observe(clock, 0.0)
    assert clock.stamp().synced
    wall.step = timedelta(hours=-2)  # someone sets the clock back two hours
    assert clock.synced() and not clock.stamp().synced  # held: the measurement is boottime-referenced
    assert abs(clock.skew() - 7200) < 2
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 2  # the true time, not the stepped one


def test_date_samples_from_slow_round_trips_are_not_used():
    b = clk.boottime()
    assert date_sample(http_date(), b - 20.0, b) is None  # the Date may be 20 s off either way
    assert date_sample("not a date", b - 0.1, b) is None
    sample = date_sample(http_date(), b - 0.2, b)
    assert sample is not None and sample.uncertainty == pytest.approx(0.6)


def test_the_sample_in_use_stays_while_later_ones_agree():
    """Both ends of an entry from one reference: its length is what the boot clock measured."""
    clock = unsynced_clock()
    b = clk.boottime()
    clock.observe(http_date(3600), b - 0.2, b)
    first = clock.sample_record()
    for shift in (0.4, -0.4, 0.9):  # within the uncertainties (the Date header has whole seconds)
        clock.observe(http_date(3600 + shift), b - 0.2, b)
    assert clock.sample_record() == first
    clock.observe(http_date(3660), b - 0.2, b)  # the server's clock moved a minute: believe it
    assert abs(clock.skew() - 3660) < 1.5
    slow = unsynced_clock()
    slow.observe(http_date(10), b - 8.0, b)  # a slow round trip: +-4.5 s
    slow.observe(http_date(10), b - 0.1, b)  # far more precise: taken
    assert slow.sample_record()["uncertainty"] == pytest.approx(0.55)


def test_a_restart_in_the_same_boot_takes_up_the_recorded_sample():
    measured = unsynced_clock()
    observe(measured, 3600)
    record = measured.sample_record()
    restarted = unsynced_clock()
    assert restarted.restore(record) and restarted.synced() and restarted.sample_record() == record
    other_boot = unsynced_clock()
    assert not other_boot.restore({**record, "boot": "another-boot"}) and not other_boot.synced()
    for bad in (None, {}, {**record, "uncertainty": "x"}, {**record, "at": clk.boottime() + 3600},
                {**record, "epoch_at_boot": float("nan")}):
        assert not unsynced_clock().restore(bad)


def test_the_server_date_setting_and_the_sources_own_word():
    off = unsynced_clock(server_date=False)
    observe(off, 3600)
    assert not off.synced() and not off.wants_evidence()
    synced = Clock(source="kernel", kernel=lambda: KernelTime(True, 0.05, 0.01, 0))
    observe(synced, 3600)
    assert synced.synced() and synced.stamp().synced and synced.summary()["source"] == "kernel"


def test_date_is_taken_over_verified_tls_and_loopback_only(tmp_path):
    """A TLS front (test certificate, trusted through api.ca_bundle) before the emulator."""
    with Emulator(key=KEY, secret=SECRET) as emu, TlsFront("selfsigned", upstream=("127.0.0.1", emu.port)) as front:
        emu.set_faults(date_offset=7200)
        clock = unsynced_clock()
        api = ApiSettings(base_url=front.url(), key=KEY, secret=SECRET, ca_bundle=str(front.cert))
        with TimeTrackClient(api, clock=clock) as client:
            assert client.witness and client.ping().ok
        assert 7198 < clock.skew() < 7202
    remote = ApiSettings(base_url="http://10.0.0.5/api", key=KEY, secret=SECRET, allow_insecure_http=True)
    assert not TimeTrackClient(remote).witness  # plain http over a network: anyone could say any time
    assert TimeTrackClient(ApiSettings(base_url="http://127.0.0.1:1/api", key=KEY, secret=SECRET)).witness


def test_a_portals_date_is_no_evidence():
    with Emulator(key=KEY, secret=SECRET) as emu:
        emu.set_faults(captive_portal="page", date_offset=7200)
        clock = unsynced_clock()
        with TimeTrackClient(ApiSettings(base_url=emu.url, key=KEY, secret=SECRET), clock=clock) as client:
            assert not client.ping().ok
        assert clock.skew() is None and not clock.synced()


# ---------------------------------------------------------------- doctor


def doctor_settings(tmp_path, url: str, **clock_section) -> config.Settings:
    return config.from_dict({"kiosk": {"state_dir": str(tmp_path / "state")},
                             "api": {"base_url": url, "key": KEY, "secret": SECRET},
                             "clock": clock_section}, require_api=False)


def test_doctor_says_which_source_vouches_and_the_skew(tmp_path):
    missing = str(tmp_path / "synchronized")
    with Emulator(key=KEY, secret=SECRET) as emu:
        emu.set_faults(date_offset=-5000)
        (check,) = doctor.run_checks(doctor_settings(tmp_path, emu.url, sync_file=missing), only=["clock"])
    assert check.status == doctor.WARN and "TimeTrack's Date header vouches" in check.detail
    assert check.data["clock_synced"] is True and check.data["source"] == "timetrack"
    assert -5002 < check.data["skew_seconds"] < -4998 and "timedatectl" in check.fix
    (check,) = doctor.run_checks(doctor_settings(tmp_path, f"http://127.0.0.1:{closed_port()}/api",
                                                 sync_file=missing), only=["clock"])
    assert check.status == doctor.WARN and check.data["clock_synced"] is False
    assert "no answer from TimeTrack yet" in check.detail
    Path(missing).touch()
    (check,) = doctor.run_checks(doctor_settings(tmp_path, emu.url, sync_file=missing), only=["clock"])
    assert check.status == doctor.OK and check.data == {"clock_synced": True, "source": "file",
                                                        "skew_seconds": None, "held": None}


# ---------------------------------------------------------------- the daemon, as a real process


def write_kiosk_config(tmp_path: Path, url: str, sync_file: Path) -> Path:
    """A daemon whose clock trust comes from ``sync_file`` (absent: not synchronised) or TimeTrack's Date."""
    return write_config(tmp_path / "kiosk.toml", tmp_path / "state", url, key=KEY, secret=SECRET, name="clock-test",
                        api={"probe_interval": 0.1, "settle_seconds": 0.2},
                        clock={"source": "file", "sync_file": sync_file})


def two_sessions(d: Daemon) -> list[datetime]:
    """Two clock-in/clock-out pairs; the local wall-clock times around each tap."""
    seen = []
    for _ in range(2):
        for kind in ("IN ", "OUT"):
            seen.append(datetime.now(UTC))
            d.tap(ANNA)
            assert d.line().startswith(f"{kind} anna")
            time.sleep(0.05)
    return seen


def test_a_wrong_local_clock_is_corrected_by_timetracks_date(tmp_path):
    """Kernel (here: sync file) unsynchronised, local clock an hour behind TimeTrack's: the entries go
    out with TimeTrack's time, their lengths from the boot clock, the correction noted on each."""
    with Emulator(key=KEY, secret=SECRET) as emu:
        emu.set_faults(date_offset=3600)
        cfg = write_kiosk_config(tmp_path, emu.url, tmp_path / "sync")
        kiosk(cfg, "badge", "add", ANNA, "anna")
        d = Daemon(cfg, log_level="INFO")
        try:
            taps = two_sessions(d)
            assert wait_for(lambda: len(emu.entries()) == 2, 20), d.stderr_so_far()
            assert wait_for(lambda: kiosk_json(cfg, "status")["outbox"] == 0)
            status = kiosk_json(cfg, "status")
        finally:
            assert d.close_input() == 0
        rows = emu.entries()
    assert status["clock"]["trusted"] is True and status["clock"]["source"] == "timetrack"
    assert 3598 < status["clock"]["skew_seconds"] < 3602 and status["clock_synced"] is True
    for row, (start, end) in zip(rows, [taps[0:2], taps[2:4]]):
        sent_from, sent_to = clk.from_api(row["from"]), clk.from_api(row["to"])
        assert abs((sent_from - start).total_seconds() - 3600) < 2.5
        assert timedelta(0) < sent_to - sent_from < (end - start) + timedelta(seconds=1)
    with Store(tmp_path / "state" / "kiosk.sqlite", create=False) as store:
        notes = [e.notes_log for e in store.delivered()]
    assert all(any("from TimeTrack's Date header" in n for n in log) for log in notes), notes
    assert "corrected 1 held entries" in d.stderr_so_far() or "corrected 2 held entries" in d.stderr_so_far()


def test_timetracks_date_within_max_skew_lets_entries_go_with_local_times(tmp_path):
    with Emulator(key=KEY, secret=SECRET) as emu:
        emu.set_faults(date_offset=3)
        cfg = write_kiosk_config(tmp_path, emu.url, tmp_path / "sync")
        kiosk(cfg, "badge", "add", ANNA, "anna")
        d = Daemon(cfg)
        try:
            taps = two_sessions(d)
            assert wait_for(lambda: len(emu.entries()) == 2, 20), d.stderr_so_far()
        finally:
            assert d.close_input() == 0
        rows = emu.entries()
    for row, start in zip(rows, (taps[0], taps[2])):
        assert abs((clk.from_api(row["from"]) - start).total_seconds()) < 1.5


def test_a_restarted_daemon_keeps_timetracks_time_without_asking_again(tmp_path):
    """SIGKILL, then a restart while TimeTrack is unreachable: the same boot, the same reference."""
    with Emulator(key=KEY, secret=SECRET) as emu:
        emu.set_faults(date_offset=3600)
        cfg = write_kiosk_config(tmp_path, emu.url, tmp_path / "sync")
        kiosk(cfg, "badge", "add", ANNA, "anna")
        d = Daemon(cfg)
        d.tap(ANNA)
        assert d.line().startswith("IN  anna")
        assert wait_for(lambda: kiosk_json(cfg, "status")["clock"]["source"] == "timetrack")
        d.kill()
    d = Daemon(cfg)  # the emulator is gone: nobody can vouch now but the recorded measurement
    try:
        assert wait_for(lambda: kiosk_json(cfg, "status")["daemon"]["running"])
        status = kiosk_json(cfg, "status")
        time.sleep(0.05)
        d.tap(ANNA)
        assert d.line().startswith("OUT anna")
        assert wait_for(lambda: kiosk_json(cfg, "status")["outbox"] == 1 and kiosk_json(cfg, "status")["held"] == 0)
    finally:
        assert d.close_input() == 0
    assert status["clock"]["trusted"] and status["clock"]["source"] == "timetrack"
    [entry] = kiosk_json(cfg, "queue", "list")
    start, end = clk.from_iso(entry["from"]), clk.from_iso(entry["to"])
    assert timedelta(0) < end - start < timedelta(seconds=30)
    assert abs((start - datetime.now(UTC)).total_seconds() - 3600) < 60


def test_without_any_witness_entries_wait_and_status_says_why(tmp_path):
    cfg = write_kiosk_config(tmp_path, f"http://127.0.0.1:{closed_port()}/api/v2/ext", tmp_path / "sync")
    kiosk(cfg, "badge", "add", ANNA, "anna")
    d = Daemon(cfg)
    try:
        two_sessions(d)
        assert wait_for(lambda: kiosk_json(cfg, "status")["held"] == 2)
        status = kiosk_json(cfg, "status")
        text = kiosk(cfg, "status").stdout
    finally:
        assert d.close_input() == 0
    assert status["clock"] == {"trusted": False, "source": "file", "skew_seconds": None, "held": 2}
    assert status["clock_synced"] is False
    assert "clock:          NOT trusted (file)" in text and "2 entries wait for a trusted clock" in text
    assert "no answer from TimeTrack yet" in text
