"""Configuration: defaults, the documented keys, and clear errors (file, key, reason; exit 78)."""

import os
import subprocess

import pytest

from kiosk import config
from kiosk.config import ConfigError

from .kioskproc import KIOSK, clean_env

MINIMAL = """
[api]
base_url = "https://acme.timetrackenterprise.com/api/v2/ext"
key = "k-123"
secret = "s3cret-value"
"""


def test_minimal_config_gets_documented_defaults(write_config):
    s = config.load(write_config(MINIMAL))
    assert s.kiosk.state_dir == "/var/lib/kiosk"
    assert s.reader.type == "mfrc522" and s.feedback.type == "gpio"
    assert (s.rules.debounce_seconds, s.rules.min_session_seconds, s.rules.max_session_hours) == (3, 60, 16)
    assert s.api.secret == "s3cret-value"


def test_full_contract_example(write_config, tmp_path):
    s = config.load(write_config(f"""
        [kiosk]
        name = "entrance"
        state_dir = "{tmp_path}"
        [api]
        base_url = "https://acme.timetrackenterprise.com/api/v2/ext"
        key = "k"
        secret = "s"
        [reader]
        type = "stdin"
        [rules]
        debounce_seconds = 0
        min_session_seconds = 0
        max_session_hours = 12
        [feedback]
        type = "console"
    """))
    assert s.kiosk.name == "entrance" and s.reader.type == "stdin"
    assert s.rules.debounce_seconds == 0 and s.rules.min_session_seconds == 0  # 0 means 0
    assert s.store_path == tmp_path / "kiosk.sqlite"


@pytest.mark.parametrize("body, key, reason", [
    ("[kiosk]\nnmae = 'x'", "kiosk.nmae", "unknown key"),
    ("[kisok]\nname = 'x'", "kisok", "unknown section"),
    ("[rules]\ndebounce_seconds = '3'", "rules.debounce_seconds", "must be a number"),
    ("[rules]\ndebounce_seconds = true", "rules.debounce_seconds", "must be a number"),
    ("[rules]\ndebounce_seconds = -1", "rules.debounce_seconds", "negative"),
    ("[rules]\nmax_session_hours = 0", "rules.max_session_hours", "greater than 0"),
    ("[reader]\ntype = 'usb'", "reader.type", "must be one of"),
    ("[reader]\nspi_bus = 0.5", "reader.spi_bus", "whole number"),
    ("[feedback]\ntype = 'leds'", "feedback.type", "must be one of"),
    ("rules = 3", "rules", "must be a table"),
    ("[kiosk]\nname = ''", "kiosk.name", "empty"),
])
def test_bad_values_name_file_key_and_reason(write_config, body, key, reason):
    # top-level keys must come before the first table
    path = write_config(MINIMAL + "\n" + body if body.startswith("[") else body + "\n" + MINIMAL)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.key == key and reason in info.value.reason
    assert str(path) in str(info.value) and key in str(info.value)


@pytest.mark.parametrize("missing", ["base_url", "key", "secret"])
def test_missing_api_values(write_config, missing):
    lines = [line for line in MINIMAL.splitlines() if not line.startswith(missing)]
    with pytest.raises(ConfigError, match=f"api.{missing}: missing"):
        config.load(write_config("\n".join(lines)))


def test_missing_file_and_bad_toml(write_config, tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        config.load(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="invalid TOML"):
        config.load(write_config("[api\nkey="))


def test_plain_http_only_for_loopback(write_config):
    ok = MINIMAL.replace("https://acme.timetrackenterprise.com", "http://127.0.0.1:8080")
    assert config.load(write_config(ok)).api.base_url.startswith("http://127.0.0.1")
    bad = MINIMAL.replace("https://acme.timetrackenterprise.com", "http://timetrack.example")
    with pytest.raises(ConfigError, match="api.base_url: plain http:// to timetrack.example is only allowed"):
        config.load(write_config(bad))
    allowed = bad.replace("[api]", "[api]\nallow_insecure_http = true")
    assert config.load(write_config(allowed)).api.allow_insecure_http


def test_secret_file_must_be_private(write_config, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    secret.chmod(0o644)
    body = MINIMAL.replace('secret = "s3cret-value"', f'secret_file = "{secret}"')
    with pytest.raises(ConfigError, match="readable by group or others.*chmod 600"):
        config.load(write_config(body))
    secret.chmod(0o600)
    assert config.load(write_config(body)).api.secret == "from-file"


def test_inline_secret_in_a_world_readable_file_refused(write_config):
    path = write_config(MINIMAL)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match=r"api.secret: .*everyone may read it; run: chmod o-rwx"):
        config.load(path)


def test_relative_secret_file_is_relative_to_the_config(write_config, tmp_path, monkeypatch):
    (tmp_path / "secret").write_text("relative\n")
    (tmp_path / "secret").chmod(0o600)
    monkeypatch.chdir("/")
    body = MINIMAL.replace('secret = "s3cret-value"', 'secret_file = "secret"')
    assert config.load(write_config(body)).api.secret == "relative"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_refused(write_config, value):
    with pytest.raises(ConfigError, match="rules.max_session_hours: must be a finite number"):
        config.load(write_config(MINIMAL + f"\n[rules]\nmax_session_hours = {value}\n"))
    with pytest.raises(ConfigError, match="api.backoff_max: must be a finite number"):
        config.load(write_config(MINIMAL.replace("[api]", f"[api]\nbackoff_max = {value}")))


def test_secret_value_never_echoed_in_errors(write_config):
    body = MINIMAL.replace('secret = "s3cret-value"', "secret = 98765432109876")
    with pytest.raises(ConfigError) as info:
        config.load(write_config(body))
    assert "98765432109876" not in str(info.value) and "api.secret" in str(info.value)


def test_cross_key_checks(write_config):
    with pytest.raises(ConfigError, match="nobody could ever clock out"):
        config.load(write_config(MINIMAL + "\n[rules]\nmax_session_hours = 0.01\nmin_session_seconds = 60\n"))
    with pytest.raises(ConfigError, match="reader.device: missing"):
        config.load(write_config(MINIMAL + '\n[reader]\ntype = "keyboard"\n'))


def test_secret_and_secret_file_together_refused(write_config, tmp_path):
    body = MINIMAL + f'secret_file = "{tmp_path}/s"\n'
    with pytest.raises(ConfigError, match="not both"):
        config.load(write_config(body))


def test_systemd_credential(write_config, tmp_path, monkeypatch):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "timetrack-secret").write_text("from-credential")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    body = MINIMAL.replace('secret = "s3cret-value"\n', "")
    assert config.load(write_config(body)).api.secret == "from-credential"


def test_path_resolution(monkeypatch):
    monkeypatch.delenv("KIOSK_CONFIG", raising=False)
    assert config.resolve_path(None) == "/etc/kiosk/kiosk.toml"
    monkeypatch.setenv("KIOSK_CONFIG", "/tmp/env.toml")
    assert config.resolve_path(None) == "/tmp/env.toml"
    assert config.resolve_path("/tmp/cli.toml") == "/tmp/cli.toml"


def test_masked_never_shows_secret(write_config):
    masked = config.load(write_config(MINIMAL)).masked()
    assert masked["api"]["secret"] == "********"
    assert "s3cret-value" not in repr(config.load(write_config(MINIMAL)))


@pytest.fixture
def env():
    return clean_env()


def run_kiosk(args, env):
    return subprocess.run(KIOSK + args, capture_output=True, text=True, env=env, timeout=60)


def test_cli_config_check_exit_78_and_message(write_config, env):
    path = write_config(MINIMAL + "\n[rules]\ndebounce = 3\n")
    result = run_kiosk(["--config", str(path), "config", "check"], env)
    assert result.returncode == 78
    assert f"{path}: rules.debounce: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_config_check_masks_secret_and_honours_env(write_config, env):
    path = write_config(MINIMAL)
    env["KIOSK_CONFIG"] = str(path)
    result = run_kiosk(["config", "check", "--json"], env)
    assert result.returncode == 0, result.stderr
    assert "s3cret-value" not in result.stdout and "********" in result.stdout


def test_cli_run_with_bad_config_starts_nothing(write_config, env, tmp_path):
    state = tmp_path / "state"
    path = write_config(f'[kiosk]\nstate_dir = "{state}"\n[reader]\ntype = "stdin"\n')
    result = run_kiosk(["--config", str(path), "run"], env)
    assert result.returncode == 78 and "api.base_url: missing" in result.stderr
    assert not state.exists()


def test_commands_needing_no_kiosk_need_no_config(env):
    env["KIOSK_CONFIG"] = "/nonexistent/kiosk.toml"
    assert run_kiosk(["demo", "--help"], env).returncode == 0


@pytest.mark.parametrize("section, key, value", [
    ("kiosk", "history_days", 1000000), ("api", "read_timeout", 1e12), ("reader", "poll_interval", 3601),
])
def test_absurdly_large_values_refused(write_config, section, key, value):
    body = MINIMAL.replace("[api]", f"[api]\n{key} = {value}") if section == "api" else \
        MINIMAL + f"\n[{section}]\n{key} = {value}\n"
    with pytest.raises(ConfigError, match=f"{section}.{key}: must be at most"):
        config.load(write_config(body))
