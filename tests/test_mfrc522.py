"""The MFRC522 reader on the real mfrc522 library code, over the fake chip (kiosk.sim.rc522).

The fake board is the reader's factory (``Mfrc522Reader(settings, factory=hw)``);
nothing is swapped in ``sys.modules``. Most tests drive ``Mfrc522Reader.step()``
with a fake clock and no-op sleeps, advancing the clock by the delay each step
asks for: the same schedule as ``taps()``, deterministic and fast. One test
runs ``taps()`` in a thread in real time.
"""

from __future__ import annotations

import importlib.abc
import logging
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kiosk.config import ReaderSettings
from kiosk.sim import rc522 as fakespi
from kiosk.readers import mfrc522 as reader_mod
from kiosk.sim.rc522 import CardState, FakeCard, FakeMfrc522
from kiosk.exc import Cause
from kiosk.readers.mfrc522 import BACKOFF_MAX, Mfrc522Reader, ReaderUnavailable

UID4 = "04A1B2C3"
UID7 = "04D5E6F7A8B9C0"
UID10 = "04112233445566778899"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hw():
    return fakespi.board()


@pytest.fixture
def make_reader(hw):
    made = []

    def make(**settings) -> Mfrc522Reader:
        clock = FakeClock()
        reader = Mfrc522Reader(ReaderSettings(**settings), factory=hw, sleep=lambda seconds: None, clock=clock)
        reader.clock = clock
        reader.health = []
        reader.on_health = lambda ok, message: reader.health.append((ok, message))
        reader.delays = []
        made.append(reader)
        return reader

    yield make
    for reader in made:
        reader.close()


def run(reader: Mfrc522Reader, seconds: float) -> list[str]:
    """Step the reader for ``seconds`` of fake time, as taps() would; returns the ids it yielded."""
    end = reader.clock.now + seconds
    ids = []
    while reader.clock.now < end:
        uid, delay = reader.step()
        reader.delays.append(delay)
        if uid is not None:
            assert type(uid) is bytes  # the UID, never text to guess at
            ids.append(uid.hex().upper())
        reader.clock.now += max(delay, 0.001)
    return ids


def raw_spi(hw) -> object:
    dev = hw.spidev.SpiDev()
    dev.open(0, 0)
    return dev


def read_reg(dev, addr: int) -> int:
    return dev.xfer2([((addr << 1) & 0x7E) | 0x80, 0])[1]


def write_reg(dev, addr: int, value: int) -> None:
    dev.xfer2([(addr << 1) & 0x7E, value])


# ---------------------------------------------------------------- the fake chip


@pytest.mark.parametrize(("data", "crc"), [
    (b"\x00\x00", 0x1EA0),  # ISO/IEC 14443-3 Annex B
    (b"\x12\x34", 0xCF26),  # ISO/IEC 14443-3 Annex B
    (b"\x50\x00", 0xCD57),  # HLTA: 50 00 57 CD
    (b"\xE0\x50", 0xA5BC),  # RATS: E0 50 BC A5
    (b"\x30\x00", 0xA802),  # READ block 0: 30 00 02 A8
])
def test_crc_a_matches_known_vectors(hw, data, crc):
    assert fakespi.crc_a(data) == crc
    assert reader_mod.crc_a(data) == crc  # the reader's own (byte-wise) implementation
    assert fakespi.with_crc(data) == data + bytes((crc & 0xFF, crc >> 8))
    lib = hw.mfrc522.MFRC522(pin_mode=11, pin_rst=25)  # the library's CalulateCRC over the chip's coprocessor
    assert lib.CalulateCRC(list(data)) == [crc & 0xFF, crc >> 8]


def test_crc_preset_follows_mode_reg(hw):
    dev = raw_spi(hw)
    write_reg(dev, fakespi.ModeReg, 0x3F)  # power-on preset: 0xFFFF
    dev.xfer2([fakespi.FIFODataReg << 1, 0x12, 0x34])
    write_reg(dev, fakespi.CommandReg, fakespi.CALC_CRC)
    assert read_reg(dev, fakespi.DivIrqReg) & fakespi.CRC_IRQ
    result = read_reg(dev, fakespi.CRCResultRegH) << 8 | read_reg(dev, fakespi.CRCResultRegL)
    assert result == fakespi.crc_a(b"\x12\x34", 0xFFFF)


def test_power_on_registers_and_spi_framing(hw):
    dev = raw_spi(hw)
    assert read_reg(dev, fakespi.VersionReg) == 0x92
    assert read_reg(dev, fakespi.CommandReg) == 0x20
    assert read_reg(dev, fakespi.TxControlReg) == 0x80 and not hw.chip.antenna_on
    assert read_reg(dev, fakespi.ComIrqReg) == 0x14
    assert read_reg(dev, fakespi.TModeReg) == 0x00
    # A write burst goes to one address (the FIFO); a read sequence answers each address in the next byte.
    dev.xfer2([fakespi.FIFODataReg << 1, 1, 2, 3])
    fifo = ((fakespi.FIFODataReg << 1) & 0x7E) | 0x80
    level = ((fakespi.FIFOLevelReg << 1) & 0x7E) | 0x80
    assert dev.xfer2([level, fifo, fifo, level, 0]) == [0, 3, 1, 2, 1]
    write_reg(dev, fakespi.FIFOLevelReg, 0x80)  # flush
    assert read_reg(dev, fakespi.FIFOLevelReg) == 0
    # ComIrqReg: Set1 = 1 sets the marked bits, Set1 = 0 clears them.
    write_reg(dev, fakespi.ComIrqReg, 0x7F)
    assert read_reg(dev, fakespi.ComIrqReg) == 0x00
    write_reg(dev, fakespi.ComIrqReg, 0x80 | 0x21)
    assert read_reg(dev, fakespi.ComIrqReg) == 0x21
    assert hw.chip.transfers == 13


@pytest.mark.parametrize("value", [0x00, 0xFF])
def test_unplugged_chip_reads_constant_and_comes_back_in_power_on_state(hw, value):
    chip = hw.chip
    dev = raw_spi(hw)
    write_reg(dev, fakespi.TxControlReg, 0x83)
    write_reg(dev, fakespi.TModeReg, 0x8D)
    assert chip.antenna_on
    chip.unplug(reads=value)
    assert read_reg(dev, fakespi.VersionReg) == value
    assert dev.xfer2([0xEE, 0xEE, 0]) == [value] * 3
    write_reg(dev, fakespi.TModeReg, 0x12)  # lost
    chip.plug()
    assert read_reg(dev, fakespi.VersionReg) == 0x92
    assert read_reg(dev, fakespi.TModeReg) == 0x00
    assert read_reg(dev, fakespi.TxControlReg) == 0x80 and not chip.antenna_on


def test_reset_pin_pulse_resets_the_chip(hw):
    chip, gpio = hw.chip, hw.gpio
    dev = raw_spi(hw)
    gpio.setmode(gpio.BCM)
    gpio.setup(25, gpio.OUT, initial=gpio.HIGH)
    write_reg(dev, fakespi.TModeReg, 0x8D)
    resets = chip.power_on_resets
    gpio.output(25, gpio.LOW)
    assert read_reg(dev, fakespi.VersionReg) == 0x00  # hard power-down: nothing answers
    gpio.output(25, gpio.HIGH)
    assert chip.power_on_resets == resets + 1
    assert read_reg(dev, fakespi.TModeReg) == 0x00
    assert read_reg(dev, fakespi.VersionReg) == 0x92


def test_card_follows_iso14443_states(hw):
    lib = hw.mfrc522.MFRC522(pin_mode=11, pin_rst=25)
    card = hw.chip.place(FakeCard(UID4))
    assert lib.MFRC522_Request(lib.PICC_REQIDL) == (lib.MI_OK, 16)  # REQA -> ATQA (16 bits)
    assert card.state is CardState.READY
    # A second REQA in READY is "any other command": the card drops back to IDLE without answering,
    # which is why polling with REQA + anticollision only (SimpleMFRC522) sees a held card every other time.
    assert lib.MFRC522_Request(lib.PICC_REQIDL)[0] == lib.MI_ERR
    assert card.state is CardState.IDLE
    assert lib.MFRC522_Request(lib.PICC_REQIDL)[0] == lib.MI_OK
    status, uid = lib.MFRC522_Anticoll()
    assert status == lib.MI_OK and bytes(uid) == card.cascade_bytes(0)
    assert lib.MFRC522_SelectTag(uid) == 0x08  # SAK of a MIFARE Classic 1K
    assert card.state is CardState.ACTIVE
    lib.MFRC522_ToCard(lib.PCD_TRANSCEIVE, list(fakespi.with_crc(fakespi.HLTA)))
    assert card.state is CardState.HALT
    assert lib.MFRC522_Request(lib.PICC_REQIDL)[0] == lib.MI_ERR  # REQA does not wake a halted card
    assert lib.MFRC522_Request(lib.PICC_REQALL)[0] == lib.MI_OK  # WUPA does
    hw.chip.remove(card)
    assert card.state is CardState.IDLE


def test_library_default_reset_pin_is_wrong_in_bcm_mode(hw):
    """Upstream issue #40: with BCM numbering already set, mfrc522 picks GPIO15 (UART RX), not GPIO25."""
    hw.gpio.setmode(hw.gpio.BCM)
    hw.mfrc522.MFRC522()
    assert hw.gpio.is_setup(15) and not hw.gpio.is_setup(25)


NAMES = ("spidev", "RPi", "RPi.GPIO", "mfrc522", "mfrc522.MFRC522", "mfrc522.SimpleMFRC522")


def test_the_fake_board_leaves_sys_modules_alone(hw, make_reader):
    before = {name: sys.modules.get(name) for name in NAMES}
    reader = make_reader()
    hw.chip.place(FakeCard(UID4))
    assert run(reader, 0.15) == [UID4]
    assert hw.mfrc522.SimpleMFRC522().READER.spi.chip is hw.chip
    assert {name: sys.modules.get(name) for name in NAMES} == before
    # The library's module globals are this board's parts, in a copy of its own.
    assert hw.mfrc522.MFRC522.__init__.__globals__["GPIO"] is hw.gpio
    assert hw.mfrc522.MFRC522.__init__.__globals__["spidev"] is hw.spidev
    other = fakespi.board()
    assert other.mfrc522.MFRC522 is not hw.mfrc522.MFRC522
    assert other.mfrc522.MFRC522.__init__.__globals__["GPIO"] is other.gpio


def test_reading_over_the_fake_board_imports_no_hardware_module():
    """In a fresh interpreter: a reader over the fake board, a tap, and still none of the Pi modules imported."""
    code = ("import sys; from kiosk.config import ReaderSettings; from kiosk.sim import rc522; "
            "from kiosk.readers.mfrc522 import Mfrc522Reader; hw = rc522.board(); "
            "r = Mfrc522Reader(ReaderSettings(), factory=hw, sleep=lambda s: None); "
            "hw.chip.place(rc522.FakeCard('12345678')); r.step(); uid, _ = r.step(); r.close(); "
            "hw.mfrc522.SimpleMFRC522(); "
            f"print(uid.hex(), sorted(m for m in {NAMES!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["12345678", "[]"]


def test_installed_makes_the_board_the_default_factory_for_the_block():
    assert Mfrc522Reader.default_factory is None
    with fakespi.installed() as outer:
        assert Mfrc522Reader.default_factory is outer
        with fakespi.installed(FakeMfrc522(version=0x88)) as inner:
            reader = Mfrc522Reader(ReaderSettings(), sleep=lambda seconds: None)  # no factory: the default
            assert reader.factory is inner and reader.chip.verify()[0] == 0x88
            reader.close()
        assert Mfrc522Reader.default_factory is outer
    assert Mfrc522Reader.default_factory is None


def test_taps_are_uid_bytes_even_when_all_digits(hw, make_reader):
    """Issue 7: the reader handed over "12345678" as text, which the daemon read as a decimal number."""
    reader = make_reader()
    hw.chip.place(FakeCard("12345678"))
    reader.step()  # first step: check the chip
    uid, _ = reader.step()
    assert uid == b"\x12\x34\x56\x78"


# ---------------------------------------------------------------- reading cards


@pytest.mark.parametrize("uid", [UID4, UID7, UID10])
def test_reads_the_full_uid(hw, make_reader, uid):
    reader = make_reader()
    card = hw.chip.place(FakeCard(uid))
    assert run(reader, 0.15) == [uid]
    assert card.selections >= 1 and card.halts >= 1
    assert card.state is CardState.HALT  # each poll ends with HLTA


def test_two_7_byte_cards_with_a_common_prefix_get_different_ids(hw, make_reader):
    a, b = FakeCard("04D5E6F7A8B9C0"), FakeCard("04D5E6112233C4")
    reader = make_reader()
    hw.chip.place(a)
    first = run(reader, 0.15)
    hw.chip.remove(a)
    run(reader, 1.0)
    hw.chip.place(b)
    second = run(reader, 0.15)
    assert first == [a.id] and second == [b.id]


def test_simple_mfrc522_truncates_7_byte_uids_to_the_same_number():
    """The defect the reader fixes: SimpleMFRC522 reads cascade level 1 only, BCC included."""
    a, b = FakeCard("04D5E6F7A8B9C0"), FakeCard("04D5E6112233C4")
    ids = []
    for card in (a, b):
        hw = fakespi.board()
        hw.chip.place(card)
        ids.append(hw.mfrc522.SimpleMFRC522().read_id_no_block())
    level1 = bytes((0x88, 0x04, 0xD5, 0xE6))
    assert ids[0] == ids[1] == int.from_bytes(level1 + bytes((0x88 ^ 0x04 ^ 0xD5 ^ 0xE6,)), "big")


@pytest.mark.parametrize("answer_every", [1, 2])
def test_a_held_card_is_read_once(hw, make_reader, answer_every):
    reader = make_reader()  # poll_interval 0.1, release_seconds 0.3
    card = hw.chip.place(FakeCard(UID7, answer_every=answer_every))
    assert run(reader, 5.0) == [UID7]
    assert card.requests_heard >= 45  # polled all along, not just skipped
    if answer_every == 2:
        assert card.selections <= card.requests_heard // 2 + 1  # it really missed every other poll


def test_a_card_missing_longer_than_the_release_time_taps_again(hw, make_reader):
    reader = make_reader()
    hw.chip.place(FakeCard(UID4, answer_every=5))  # unseen for 0.4 s between answers > release 0.3 s
    assert run(reader, 1.05) == [UID4, UID4, UID4]


def test_remove_and_place_again_is_a_second_tap(hw, make_reader):
    reader = make_reader()
    card = FakeCard(UID4)
    hw.chip.place(card)
    assert run(reader, 0.5) == [UID4]
    hw.chip.remove(card)
    assert run(reader, 0.1) == []  # one poll without it
    hw.chip.place(card)  # back within release_seconds: the same tap
    assert run(reader, 0.5) == []
    hw.chip.remove(card)
    assert run(reader, 0.5) == []
    hw.chip.place(card)
    assert run(reader, 0.5) == [UID4]


def test_swapping_cards_reads_the_second_at_once(hw, make_reader):
    reader = make_reader()
    a, b = FakeCard(UID4), FakeCard(UID7)
    hw.chip.place(a)
    assert run(reader, 0.3) == [UID4]
    hw.chip.remove(a)
    hw.chip.place(b)
    assert run(reader, 0.15) == [UID7]


def test_two_cards_in_the_field_resolve_to_one_whole_uid(hw, make_reader):
    reader = make_reader()
    a, b = FakeCard("04A1B2C3D4E580"), FakeCard("04A1B2C3D4E581")  # differ in the very last UID bit
    hw.chip.place(a)
    hw.chip.place(b)
    ids = run(reader, 1.0)
    assert len(ids) == 1 and ids[0] in (a.id, b.id)
    winner, other = (a, b) if ids[0] == a.id else (b, a)
    hw.chip.remove(winner)
    assert run(reader, 0.2) == [other.id]


def test_library_anticollision_fails_on_a_collision(hw):
    lib = hw.mfrc522.MFRC522(pin_mode=11, pin_rst=25)
    hw.chip.place(FakeCard("04A1B2C3"))
    hw.chip.place(FakeCard("04A1B2C4"))
    assert lib.MFRC522_Request(lib.PICC_REQIDL)[0] == lib.MI_OK  # same ATQA: no collision yet
    assert lib.MFRC522_Anticoll()[0] == lib.MI_ERR  # CollErr: no id (and no garbage id either)


def test_collisions_at_several_bits_and_levels(hw, make_reader):
    reader = make_reader()
    cards = [FakeCard("04A1B2C3D4E580"), FakeCard("0411B2C3D4E580"), FakeCard("1A2B3C4D")]
    for card in cards:
        hw.chip.place(card)
    seen = []
    for _ in cards:  # one card at a time, each whole, until the field is empty
        ids = run(reader, 0.15)
        assert len(ids) == 1 and ids[0] in {c.id for c in cards} - set(seen)
        seen.append(ids[0])
        hw.chip.remove(next(c for c in cards if c.id == ids[0]))
    assert sorted(seen) == sorted(c.id for c in cards)


def test_slow_interrupts_are_waited_for(hw, make_reader):
    hw.chip.irq_delay_reads = 2  # the result shows only on the third register read
    reader = make_reader()
    hw.chip.place(FakeCard(UID7))
    assert run(reader, 0.3) == [UID7]
    assert reader.healthy


# ---------------------------------------------------------------- cost of an idle poll


def test_idle_poll_costs_few_spi_transfers(hw, make_reader):
    reader = make_reader()
    run(reader, 0.05)  # first step: check the chip
    chip = hw.chip
    chip.reset_counters()
    before = reader.polls
    run(reader, 10.0)
    polls = reader.polls - before
    assert 95 <= polls <= 101
    per_poll = chip.transfers / polls
    assert per_poll <= 10  # 7, plus a 1-transfer chip check every 2 s
    assert chip.transceives == polls  # one WUPA per idle poll
    assert all(d <= 0.1 for d in reader.delays)

    # Library methods on the reader's driver use the fixed ToCard too: a REQA costs a handful of transfers.
    chip.reset_counters()
    assert reader.chip.MFRC522_Request(0x26)[0] == reader.chip.MI_ERR
    fixed = chip.transfers
    assert fixed <= 15

    # The unpatched library: its ToCard wait loop spins 2,000 reads when no card answers.
    lib = hw.mfrc522.MFRC522(pin_mode=11, pin_rst=25)
    chip.reset_counters()
    assert lib.MFRC522_Request(lib.PICC_REQIDL)[0] == lib.MI_ERR
    assert chip.transfers > 2000
    assert chip.transfers > 100 * per_poll


def test_chip_timer_is_the_timeout(hw, make_reader):
    make_reader()
    assert hw.chip.timer_seconds == pytest.approx(reader_mod.TIMEOUT_SECONDS)
    assert 0.001 <= reader_mod.TIMEOUT_SECONDS <= 0.005


# ---------------------------------------------------------------- health and recovery


@pytest.mark.parametrize("floating", [0x00, 0xFF])
def test_unplugged_reader_goes_unhealthy_and_recovers(hw, make_reader, floating):
    chip = hw.chip
    reader = make_reader()
    card = FakeCard(UID4)
    assert run(reader, 0.3) == []
    assert reader.health == [(True, "MFRC522 on /dev/spidev0.0: OK (chip v2.0, VersionReg 0x92)")]

    chip.unplug(reads=floating)
    reader.delays.clear()
    assert run(reader, 10.0) == []
    assert reader.health[-1][0] is False
    assert f"VersionReg reads 0x{floating:02X}" in reader.health[-1][1]
    assert len(reader.health) == 2  # reported once, not at every retry
    assert max(reader.delays) == BACKOFF_MAX  # backs off, capped
    assert len(reader.delays) >= 6  # and keeps retrying

    chip.plug()  # power-on state: antenna off, registers reset
    chip.place(card)
    ids = run(reader, BACKOFF_MAX + 0.2)
    assert ids == [UID4]
    assert [ok for ok, _ in reader.health] == [True, False, True]
    assert chip.antenna_on


def test_a_long_outage_still_recovers(hw, make_reader):
    reader = make_reader()
    run(reader, 0.3)
    hw.chip.unplug()
    run(reader, 2 * 3600.0)  # thousands of attempts: the backoff must not overflow
    assert reader.delays[-1] == BACKOFF_MAX and len(reader.health) == 2
    hw.chip.plug()
    hw.chip.place(FakeCard(UID4))
    assert run(reader, BACKOFF_MAX + 0.2) == [UID4]
    assert reader.healthy


def test_power_glitch_is_repaired_without_going_unhealthy(hw, make_reader):
    chip = hw.chip
    reader = make_reader()
    run(reader, 0.3)
    chip.unplug()
    chip.plug()  # between two polls: the chip is back in its power-on state
    chip.place(FakeCard(UID7))
    assert run(reader, 0.3) == [UID7]
    assert [ok for ok, _ in reader.health] == [True]


def test_spi_errors_make_the_reader_unhealthy_until_they_stop(hw, make_reader):
    import errno

    reader = make_reader()
    run(reader, 0.3)
    hw.chip.spi_error = OSError(errno.EIO, "Input/output error")
    run(reader, 5.0)
    assert reader.health[-1][0] is False and "Input/output error" in reader.health[-1][1]
    hw.chip.spi_error = None
    hw.chip.place(FakeCard(UID4))
    assert run(reader, BACKOFF_MAX + 0.2) == [UID4]
    assert reader.health[-1][0] is True


def test_frames_that_keep_failing_make_the_reader_unhealthy(hw, make_reader):
    reader = make_reader()
    run(reader, 0.3)
    hw.chip.irq_delay_reads = 50  # registers answer, frames never complete in time
    run(reader, 5.0)
    assert [ok for ok, _ in reader.health] == [True, False]
    assert "frames keep failing" in reader.health[-1][1]
    assert max(reader.delays) == BACKOFF_MAX
    hw.chip.irq_delay_reads = 0
    hw.chip.place(FakeCard(UID4))
    assert run(reader, BACKOFF_MAX + 0.2) == [UID4]
    assert [ok for ok, _ in reader.health] == [True, False, True]


def test_gpio_cleanup_elsewhere_does_not_stop_recovery(hw, make_reader):
    reader = make_reader()
    run(reader, 0.3)
    hw.gpio.cleanup()  # e.g. another module closing its pins: the reset pin and the numbering mode are gone
    hw.chip.unplug()
    run(reader, 3.0)
    assert not reader.healthy
    hw.chip.plug()
    hw.chip.place(FakeCard(UID4))
    assert run(reader, BACKOFF_MAX + 0.2) == [UID4]
    assert reader.healthy and hw.gpio.is_setup(25) and hw.gpio.line_level(25) == 1


def test_reader_absent_at_start_is_reported_and_found_later(hw, make_reader):
    hw.chip.unplug()
    reader = make_reader()
    run(reader, 1.0)
    assert reader.health and reader.health[-1][0] is False
    hw.chip.plug()
    hw.chip.place(FakeCard(UID10))
    assert run(reader, BACKOFF_MAX + 0.2) == [UID10]
    assert reader.healthy


def test_taps_in_real_time(hw):
    reader = Mfrc522Reader(ReaderSettings(poll_interval=0.01, release_seconds=0.5), factory=hw)
    stop = threading.Event()
    out: queue.Queue[str] = queue.Queue()

    def consume():
        for uid in reader.taps(stop):
            out.put(uid.hex().upper() if type(uid) is bytes else uid)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    try:
        time.sleep(0.05)
        hw.chip.place(FakeCard(UID7))
        assert out.get(timeout=2.0) == UID7
        time.sleep(0.2)  # held: no second tap
        assert out.empty()
        assert reader.healthy
    finally:
        stop.set()
        thread.join(timeout=2.0)
        reader.close()
    assert not thread.is_alive()


# ---------------------------------------------------------------- set-up and errors


def test_module_import_does_not_import_the_library():
    code = ("import sys, kiosk.readers.mfrc522, kiosk.sim.rc522; "
            "print(sorted(m for m in ('mfrc522', 'RPi', 'RPi.GPIO', 'spidev') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def _on_a_pi() -> bool:
    try:
        return "Raspberry Pi" in Path("/proc/device-tree/model").read_text(errors="replace")
    except OSError:
        return False


@pytest.fixture
def clean_modules():
    names = ("mfrc522", "mfrc522.MFRC522", "mfrc522.SimpleMFRC522", "RPi", "RPi.GPIO", "spidev")
    saved = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    yield
    for name in names:
        sys.modules.pop(name, None)
    sys.modules.update(saved)


@pytest.mark.skipif(_on_a_pi(), reason="on a Raspberry Pi RPi.GPIO imports fine")
def test_off_a_pi_the_error_says_what_to_do(clean_modules):
    with pytest.raises(ReaderUnavailable) as info:
        Mfrc522Reader(ReaderSettings())
    message = str(info.value)
    assert "needs a Raspberry Pi" in message or "needs the mfrc522" in message
    assert 'reader.type = "stdin"' in message or "venv" in message


class _NotAPi(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "RPi.GPIO":
            raise RuntimeError("This module can only be run on a Raspberry Pi!")
        return None


def test_rpi_gpio_refusing_to_import_gives_a_clear_error(clean_modules, monkeypatch):
    monkeypatch.setattr(sys, "meta_path", [_NotAPi(), *sys.meta_path])
    with pytest.raises(ReaderUnavailable, match="needs a Raspberry Pi.*only be run on a Raspberry Pi.*rpi-lgpio.*stdin"):
        Mfrc522Reader(ReaderSettings())


def test_missing_packages_give_a_clear_error(clean_modules, monkeypatch):
    monkeypatch.setitem(sys.modules, "mfrc522", None)
    with pytest.raises(ReaderUnavailable, match="needs the mfrc522, spidev and RPi.GPIO packages"):
        Mfrc522Reader(ReaderSettings())


def test_missing_spi_device_gives_a_clear_error(hw):
    with pytest.raises(ReaderUnavailable, match=r"/dev/spidev0\.1 not found: enable SPI .*raspi-config") as info:
        Mfrc522Reader(ReaderSettings(spi_device=1), factory=hw)
    assert info.value.cause is Cause.DEVICE_MISSING


def test_a_reset_pin_that_cannot_be_set_up_closes_the_spi_device(hw):
    opened = []
    spi = hw.spi

    def tracking_spi():
        dev = spi()
        opened.append(dev)
        return dev

    hw.spi = tracking_spi
    hw.gpio.setmode(hw.gpio.BCM)
    with pytest.raises(ReaderUnavailable, match="cannot set up the reset pin") as info:
        Mfrc522Reader(ReaderSettings(reset_pin=40), factory=hw)  # no GPIO40 on a Pi
    assert info.value.cause is Cause.PIN_SETUP
    assert len(opened) == 1 and opened[0].chip is None  # opened, then closed again


def test_clone_chip_works_and_is_named():
    hw = fakespi.board(FakeMfrc522(version=0x88))
    reader = Mfrc522Reader(ReaderSettings(), factory=hw, sleep=lambda seconds: None)
    try:
        hw.chip.place(FakeCard(UID4))
        badge, _ = reader.step()  # first step: check the chip
        badge, _ = reader.step()
        assert badge == bytes.fromhex(UID4)
        assert "FM17522 clone" in reader.health_message
    finally:
        reader.close()


def test_board_numbering_set_elsewhere_is_followed(hw, make_reader):
    hw.gpio.setmode(hw.gpio.BOARD)
    reader = make_reader(reset_pin=25)
    assert hw.gpio.getmode() == hw.gpio.BOARD
    resets = hw.chip.power_on_resets
    reader.chip.hard_reset()  # drives physical pin 22 = GPIO25, the chip's RST
    assert hw.chip.power_on_resets == resets + 1


def test_close_frees_only_the_reset_pin_and_stops_the_field(hw, make_reader):
    gpio = hw.gpio
    gpio.setmode(gpio.BCM)
    gpio.setup(17, gpio.OUT)  # an LED of the feedback module
    reader = make_reader()
    run(reader, 0.2)
    assert hw.chip.antenna_on and gpio.is_setup(25)
    reader.close()
    reader.close()
    assert gpio.is_setup(17) and not gpio.is_setup(25)
    assert not hw.chip.antenna_on


def test_library_log_handlers_do_not_pile_up(hw, make_reader):
    handlers = list(logging.getLogger("mfrc522Logger").handlers)
    make_reader()
    make_reader()
    assert logging.getLogger("mfrc522Logger").handlers == handlers


def test_docstring_examples():
    import doctest

    import kiosk.readers
    import kiosk.readers.mfrc522_chip

    for module in (kiosk.readers, reader_mod, kiosk.readers.mfrc522_chip, fakespi):
        assert doctest.testmod(module).failed == 0, module.__name__
