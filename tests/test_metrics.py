"""kiosk/metrics.py: the Prometheus textfile, read back by real parsers.

prometheus_client's ``text_string_to_metric_families`` (the Python client's
parser) and, where installed, ``promtool check metrics`` (Prometheus's own
linter, Debian package ``prometheus``) read what :func:`kiosk.metrics.write`
wrote. Atomicity is checked by a separate reader process that reads the file in
a loop while it is rewritten; the same reader catches a naive in-place writer,
so the check can fail.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from kiosk import config, metrics
from kiosk.exc import ConfigError

SNAPSHOT = {
    "queue_entries": 4,
    "queue_oldest_age_seconds": 3725.5,
    "rejected_entries": 1,
    "flagged_entries": 2,
    "open_clock_ins": 7,
    "taps_total": {"clock_in": 120, "clock_out": 113, "unknown": 3},
    "deliveries_total": {"delivered": 110, "failed": 9},
    "last_delivery_timestamp_seconds": 1795000000.25,
    "reader_up": True,
    "clock_synced": False,
    "name": "entrance-north",
    "version": "0.1.0",
}

FAMILIES = {
    "kiosk_queue_entries": "gauge", "kiosk_queue_oldest_age_seconds": "gauge", "kiosk_rejected_entries": "gauge",
    "kiosk_flagged_entries": "gauge", "kiosk_open_clock_ins": "gauge", "kiosk_taps": "counter",
    "kiosk_deliveries": "counter", "kiosk_last_delivery_timestamp_seconds": "gauge", "kiosk_reader_up": "gauge",
    "kiosk_clock_synced": "gauge", "kiosk_info": "gauge",
}


def parse(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(family) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}


# ---------------------------------------------------------------- the format


def test_every_metric_parses_with_help_type_and_its_value():
    text = metrics.render(SNAPSHOT).decode()
    fams = parse(text)
    assert {name: f.type for name, f in fams.items()} == FAMILIES
    for name, family in fams.items():
        assert family.documentation, name
        shown = name + "_total" if family.type == "counter" else name
        assert f"\n# HELP {shown} " in "\n" + text and f"\n# TYPE {shown} {family.type}\n" in "\n" + text
    assert samples(fams["kiosk_queue_entries"]) == {("kiosk_queue_entries", ()): 4}
    assert samples(fams["kiosk_queue_oldest_age_seconds"]) == {("kiosk_queue_oldest_age_seconds", ()): 3725.5}
    assert samples(fams["kiosk_rejected_entries"])[("kiosk_rejected_entries", ())] == 1
    assert samples(fams["kiosk_flagged_entries"])[("kiosk_flagged_entries", ())] == 2
    assert samples(fams["kiosk_open_clock_ins"])[("kiosk_open_clock_ins", ())] == 7
    assert samples(fams["kiosk_last_delivery_timestamp_seconds"]) == {
        ("kiosk_last_delivery_timestamp_seconds", ()): 1795000000.25}
    assert samples(fams["kiosk_reader_up"])[("kiosk_reader_up", ())] == 1
    assert samples(fams["kiosk_clock_synced"])[("kiosk_clock_synced", ())] == 0
    assert samples(fams["kiosk_info"]) == {
        ("kiosk_info", (("name", "entrance-north"), ("version", "0.1.0"))): 1}


def test_every_label_value_is_emitted_zero_when_missing():
    fams = parse(metrics.render(SNAPSHOT).decode())
    taps = {dict(labels)["outcome"]: v for (name, labels), v in samples(fams["kiosk_taps"]).items()
            if name == "kiosk_taps_total"}
    assert taps == {"clock_in": 120, "clock_out": 113, "too_soon": 0, "repeat": 0, "unknown": 3, "disabled": 0,
                    "invalid": 0, "error": 0, "stale": 0}
    deliveries = {dict(labels)["result"]: v for (name, labels), v in samples(fams["kiosk_deliveries"]).items()}
    assert deliveries == {"delivered": 110, "rejected": 0, "failed": 9}


def test_an_empty_snapshot_still_gives_every_metric():
    fams = parse(metrics.render({}).decode())
    assert set(fams) == set(FAMILIES)
    assert samples(fams["kiosk_queue_oldest_age_seconds"]) == {("kiosk_queue_oldest_age_seconds", ()): 0}
    assert samples(fams["kiosk_reader_up"]) == {("kiosk_reader_up", ()): 0}
    assert len(fams["kiosk_taps"].samples) == len(metrics.TAP_OUTCOMES)


def test_no_last_delivery_means_no_sample_not_1970():
    snap = dict(SNAPSHOT, last_delivery_timestamp_seconds=None, queue_oldest_age_seconds=None, queue_entries=0)
    text = metrics.render(snap).decode()
    fams = parse(text)
    assert fams["kiosk_last_delivery_timestamp_seconds"].samples == []
    assert "# TYPE kiosk_last_delivery_timestamp_seconds gauge" in text
    assert samples(fams["kiosk_queue_oldest_age_seconds"]) == {("kiosk_queue_oldest_age_seconds", ()): 0}


@pytest.mark.parametrize("name", [
    'hall "B"',
    "back\\door",
    "two\nlines",
    'all \\" of\n them \\n',
    "Eingang Süd ✓",
])
def test_kiosk_name_label_is_escaped_and_reads_back_exactly(name):
    text = metrics.render(dict(SNAPSHOT, name=name)).decode()
    info = parse(text)["kiosk_info"]
    assert [s.labels for s in info.samples] == [{"name": name, "version": "0.1.0"}]
    # One sample line: a raw newline or quote would have broken the line apart.
    assert len([ln for ln in text.splitlines() if ln.startswith("kiosk_info{")]) == 1


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus; .ci/run does)")
def test_promtool_check_metrics_is_silent():
    proc = subprocess.run([PROMTOOL, "check", "metrics"], input=metrics.render(dict(SNAPSHOT, name='a"b\\c\nd')),
                          capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout + proc.stderr == b"", proc.stdout + proc.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt-get install prometheus; .ci/run does)")
def test_promtool_would_catch_a_mistake():
    broken = metrics.render(SNAPSHOT).replace(b"# TYPE kiosk_taps_total counter", b"# TYPE kiosk_taps_total gauge")
    proc = subprocess.run([PROMTOOL, "check", "metrics"], input=broken, capture_output=True, timeout=60)
    assert b"kiosk_taps_total" in proc.stdout + proc.stderr


# ---------------------------------------------------------------- the file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_is_readable_by_node_exporter_whatever_the_umask(tmp_path):
    target = tmp_path / "kiosk.prom"
    old = os.umask(0o077)  # stricter than the unit's UMask=0027
    try:
        metrics.write(target, SNAPSHOT)
    finally:
        os.umask(old)
    assert mode(target) == 0o644
    assert target.read_bytes() == metrics.render(SNAPSHOT)
    assert [p.name for p in tmp_path.iterdir()] == ["kiosk.prom"]  # no temp file left


def test_write_replaces_the_file_and_never_leaves_a_prom_temp(tmp_path):
    target = tmp_path / "kiosk.prom"
    metrics.write(target, SNAPSHOT)
    inode = target.stat().st_ino
    metrics.write(target, dict(SNAPSHOT, queue_entries=9))
    assert target.stat().st_ino != inode  # a new file renamed over the old one, not rewritten in place
    assert samples(parse(target.read_text())["kiosk_queue_entries"]) == {("kiosk_queue_entries", ()): 9}
    assert [p.name for p in tmp_path.iterdir()] == ["kiosk.prom"]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "kiosk.prom"
    metrics.write(target, SNAPSHOT)
    before = target.read_bytes()
    with pytest.raises(ValueError):
        metrics.write(target, dict(SNAPSHOT, queue_entries="many"))  # refused while rendering
    # A write that fails half-way (a full disk): the file size limit makes write(2) fail with EFBIG.
    code = textwrap.dedent(f"""
        import resource, signal, sys
        from kiosk import metrics
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (500, 500))
        try:
            metrics.write({str(target)!r}, {{"name": "x" * 4000}})
        except OSError as exc:
            print(exc.errno)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(__import__("errno").EFBIG)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["kiosk.prom"]


READER = textwrap.dedent("""
    import json, os, sys
    target, stop, *allowed_files = sys.argv[1:]
    allowed = {open(f, "rb").read() for f in allowed_files}
    reads, bad = 0, []
    print("ready", flush=True)
    while not os.path.exists(stop):
        try:
            with open(target, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            continue
        reads += 1
        if data not in allowed and len(bad) < 5:
            bad.append(len(data))
            open(stop + ".bad", "w").close()
    print(json.dumps({"reads": reads, "bad": bad}), flush=True)
""")


def race(tmp_path: Path, write_one, rounds: int, until_bad: bool = False) -> dict:
    """Rewrite the file ``rounds`` times (alternating two snapshots) while another process reads it.

    ``until_bad``: stop as soon as the reader has seen a partial file.
    """
    target = tmp_path / "kiosk.prom"
    stop = tmp_path / "stop"
    snaps = [dict(SNAPSHOT, name="a" * 5000), dict(SNAPSHOT, name="b", queue_entries=123456)]
    allowed = []
    for i, snap in enumerate(snaps):
        allowed.append(tmp_path / f"allowed{i}")
        allowed[-1].write_bytes(metrics.render(snap))
    write_one(target, snaps[0])
    reader = subprocess.Popen([sys.executable, "-c", READER, str(target), str(stop), *map(str, allowed)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "ready"
        for i in range(rounds):
            write_one(target, snaps[i % 2])
            if until_bad and os.path.exists(f"{stop}.bad"):
                break
        stop.touch()
        out, _ = reader.communicate(timeout=30)
    finally:
        if reader.poll() is None:
            reader.kill()
    return json.loads(out)


def test_a_reader_never_sees_a_partial_file(tmp_path):
    result = race(tmp_path, metrics.write, rounds=400)
    assert result["reads"] > 0
    assert result["bad"] == [], f"the reader saw partial files of these sizes: {result['bad']}"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == []


def naive_write(target: Path, snapshot: dict) -> None:
    """Rewriting in place, as a shell redirection does: what the atomic write exists to avoid."""
    data = metrics.render(snapshot)
    with open(target, "wb") as fh:
        fh.write(data[: len(data) // 2])
        fh.flush()
        time.sleep(0.0005)
        fh.write(data[len(data) // 2:])


def test_the_race_check_catches_an_in_place_writer(tmp_path):
    result = race(tmp_path, naive_write, rounds=5000, until_bad=True)
    assert result["bad"], f"{result['reads']} reads saw no partial file: the check above would prove nothing"


# ---------------------------------------------------------------- the daemon's writer


def test_writer_logs_once_per_failure_streak_and_never_raises(tmp_path, caplog):
    target = tmp_path / "gone" / "kiosk.prom"
    writer = metrics.MetricsWriter(target)
    caplog.set_level(logging.INFO, logger="kiosk.metrics")
    for _ in range(5):
        assert writer.update(SNAPSHOT) is False
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and str(target) in errors[0].getMessage()
    assert writer.failures == 5 and writer.failing
    target.parent.mkdir()
    assert writer.update(SNAPSHOT) is True
    assert writer.update(SNAPSHOT) is True
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.INFO] == [
        f"metrics file {target} written again"]
    assert parse(target.read_text())["kiosk_info"].samples[0].labels["name"] == "entrance-north"
    target.parent.chmod(0o500) if os.geteuid() != 0 else shutil.rmtree(target.parent)
    try:
        assert writer.update(SNAPSHOT) is False  # a second streak: logged once more
        assert writer.update(SNAPSHOT) is False
    finally:
        target.parent.mkdir(exist_ok=True)
        target.parent.chmod(0o700)
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2


def test_writer_survives_a_bad_snapshot(tmp_path, caplog):
    writer = metrics.MetricsWriter(tmp_path / "kiosk.prom")
    assert writer.update({"queue_entries": object()}) is False
    assert writer.update(SNAPSHOT) is True


def test_writer_without_a_path_does_nothing(tmp_path):
    writer = metrics.MetricsWriter("")
    assert not writer.enabled
    assert writer.update(SNAPSHOT) is False
    assert list(tmp_path.iterdir()) == []


def test_writer_without_prometheus_client_logs_how_to_install_it(tmp_path):
    """A kiosk installed without the metrics extra: the daemon goes on, the log says what to install."""
    code = textwrap.dedent(f"""
        import logging, sys
        sys.modules["prometheus_client"] = None  # import fails as if not installed
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        from kiosk import metrics
        w = metrics.MetricsWriter({str(tmp_path / "kiosk.prom")!r})
        print(w.update({{}}), w.update({{}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False False"
    assert proc.stderr.count("ERROR") == 1 and "pip install 'kiosk[metrics]'" in proc.stderr
    assert not (tmp_path / "kiosk.prom").exists()


# ---------------------------------------------------------------- [metrics] in the configuration


def test_config_metrics_textfile(write_config):
    assert config.load(write_config("[kiosk]\n"), require_api=False).metrics.textfile == ""
    path = write_config(f'[metrics]\ntextfile = "{metrics.DEBIAN_TEXTFILE}"\n')
    assert config.load(path, require_api=False).metrics.textfile == metrics.DEBIAN_TEXTFILE
    for bad in ("kiosk.prom", "/var/lib/prometheus/node-exporter/kiosk.txt"):
        path = write_config(f'[metrics]\ntextfile = "{bad}"\n')
        with pytest.raises(ConfigError) as info:
            config.load(path, require_api=False)
        assert info.value.key == "metrics.textfile" and ".prom" in str(info.value)
    with pytest.raises(ConfigError, match="unknown key"):
        config.load(write_config('[metrics]\npath = "/x.prom"\n'), require_api=False)
