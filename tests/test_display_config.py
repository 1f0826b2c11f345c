"""The display's configuration: feedback.devices, the [display] section, and clear errors."""

from __future__ import annotations

import pytest

from kiosk import config
from kiosk.config import ConfigError, DisplaySettings

from .test_config import MINIMAL


def test_defaults_and_the_old_keys_keep_working(write_config):
    s = config.load(write_config(MINIMAL + '[feedback]\ntype = "console"\n'))
    assert s.feedback.type == "console" and s.feedback.devices == ()
    assert s.display == DisplaySettings()
    assert (s.display.driver, s.display.i2c_port, s.display.i2c_address) == ("ssd1306", 1, 0x3C)


def test_several_devices_and_a_display(write_config, tmp_path):
    font = tmp_path / "font.ttf"
    font.write_bytes(b"")
    s = config.load(write_config(MINIMAL + f"""
        [feedback]
        devices = ["gpio", "display"]
        [display]
        driver = "sh1106"
        i2c_address = 0x3D
        rotate = 2
        contrast = 200
        dim_after_seconds = 30
        blank_after_seconds = 3600
        shift_pixels = 3
        clock = "12h"
        font = "{font}"
    """))
    assert s.feedback.devices == ("gpio", "display")
    assert (s.display.driver, s.display.i2c_address, s.display.rotate, s.display.clock) == ("sh1106", 0x3D, 2, "12h")
    assert s.masked()["feedback"]["devices"] == ("gpio", "display")
    assert s.masked()["display"]["blank_after_seconds"] == 3600


@pytest.mark.parametrize("body, key, reason", [
    ('[feedback]\ndevices = "display"', "feedback.devices", "list of strings"),
    ('[feedback]\ndevices = ["gpio", 3]', "feedback.devices", "list of strings"),
    ('[feedback]\ndevices = ["gpio", "lcd"]', "feedback.devices", "each item must be one of"),
    ('[feedback]\ndevices = ["gpio", "gpio"]', "feedback.devices", "twice"),
    ('[feedback]\ndevices = ["none", "gpio"]', "feedback.devices", "cannot be combined"),
    ('[feedback]\ntype = "oled"', "feedback.type", "must be one of"),
    ('[display]\ndriver = "ssd1351"', "display.driver", "must be one of"),
    ('[display]\nrotate = 4', "display.rotate", "at most 3"),
    ('[display]\ncontrast = 256', "display.contrast", "at most 255"),
    ('[display]\ni2c_address = 0x78', "display.i2c_address", "at most"),
    ('[display]\ni2c_address = 1', "display.i2c_address", "at least"),
    ('[display]\nbacklight_pin = -2', "display.backlight_pin", "at least -1"),
    ('[display]\ntap_seconds = 0', "display.tap_seconds", "greater than 0"),
    ('[display]\nshift_pixels = 5', "display.shift_pixels", "at most 4"),
    ('[display]\nclock = "24"', "display.clock", "must be one of"),
    ('[display]\nwidth = 128\nheight = 32', "display.width", "ssd1306 supports 128x64, not 128x32"),
    ('[display]\ndriver = "st7735"\nwidth = 128\nheight = 64', "display.width", "st7735 supports"),
    ('[display]\nrotate = 1', "display.driver", "rotated 90 degrees is 64x128"),
    ('[display]\nfont = "fonts/x.ttf"', "display.font", "absolute path"),
    ('[display]\nfont = "/nonexistent/x.ttf"', "display.font", "file not found"),
])
def test_errors_name_the_key_and_the_reason(write_config, body, key, reason):
    with pytest.raises(ConfigError) as info:
        config.load(write_config(MINIMAL + body))
    assert info.value.key == key and reason in info.value.reason, str(info.value)


def test_a_dummy_display_takes_any_size_from_128x64():
    s = config.from_dict({"display": {"driver": "dummy", "width": 256, "height": 128}}, require_api=False)
    assert (s.display.width, s.display.height) == (256, 128)
    with pytest.raises(ConfigError, match="at least 128x64"):
        config.from_dict({"display": {"driver": "dummy", "width": 100, "height": 64}}, require_api=False)


def test_an_spi_lcd_shares_no_pin_and_no_chip_select(write_config):
    lcd = '[feedback]\ndevices = ["gpio", "display"]\n[display]\ndriver = "st7735"\n'
    config.load(write_config(MINIMAL + lcd))  # the defaults fit beside the reader, LEDs and buzzer
    for extra, key, reason in [
        ("spi_device = 0\n", "display.spi_device", "the reader uses /dev/spidev0.0"),
        ("dc_pin = 25\n", "display.dc_pin", "reader.reset_pin"),
        ("backlight_pin = 18\n", "display.backlight_pin", "feedback.buzzer_pin"),
        ("reset_pin = 17\n", "display.reset_pin", "feedback.green_pin"),
        ("dc_pin = 5\nreset_pin = 5\n", "display.reset_pin", "display.dc_pin"),
    ]:
        with pytest.raises(ConfigError) as info:
            config.load(write_config(MINIMAL + lcd + extra))
        assert info.value.key == key and reason in info.value.reason, str(info.value)
    # not in use: the pins are not checked
    config.load(write_config(MINIMAL + '[display]\ndriver = "st7735"\ndc_pin = 25\n'))
    # a backlight wired to 3V3
    config.load(write_config(MINIMAL + lcd + "backlight_pin = -1\n"))
