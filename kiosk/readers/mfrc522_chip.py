"""The MFRC522 chip as the RC522 reader drives it: registers, timings, CRC_A, frames, and the driver.

The driver is a subclass of the ``mfrc522`` library's ``MFRC522`` class (0.0.7),
made by :func:`driver_class` from whichever copy of the library the reader's
factory hands over (the real one, or :mod:`kiosk.sim.rc522`'s private copy).
It keeps the library's register access and chip set-up and works around its
defects (see the design notes):

- ``MFRC522.__init__`` opens its own ``spidev.SpiDev``, adds a log handler per
  instance and guesses the reset pin wrongly in BCM mode (upstream issue #40):
  the driver does its steps itself, over the SPI device and GPIO module given.
- ``MFRC522_ToCard``'s wait loop never ends early (``~(n & 0x01)`` is always
  true): with no card, each poll costs about 2,000 SPI transfers. The driver
  replaces it: the chip's own timer (TAuto, 2 ms) is the timeout, and the host
  sleeps that long and then reads ComIrqReg once (a few times at most). An idle
  poll is 7 SPI transfers.
- ``Close_MFRC522`` would ``GPIO.cleanup()`` every pin of the process (the
  feedback LEDs too): :meth:`close_device` frees only the reset pin.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from kiosk.exc import Cause, HardwareError

log = logging.getLogger("kiosk.reader")

# Registers (MFRC522 datasheet section 9)
CommandReg, ComIEnReg, ComIrqReg, DivIrqReg, ErrorReg = 0x01, 0x02, 0x04, 0x05, 0x06
FIFODataReg, FIFOLevelReg, ControlReg, BitFramingReg, CollReg = 0x09, 0x0A, 0x0C, 0x0D, 0x0E
ModeReg, TxModeReg, RxModeReg, TxControlReg, TxASKReg = 0x11, 0x12, 0x13, 0x14, 0x15
TModeReg, TPrescalerReg, TReloadRegH, TReloadRegL, VersionReg = 0x2A, 0x2B, 0x2C, 0x2D, 0x37

PCD_IDLE, PCD_TRANSCEIVE, PCD_AUTHENT = 0x00, 0x0C, 0x0E
RX_IRQ, IDLE_IRQ, ERR_IRQ, TIMER_IRQ = 0x20, 0x10, 0x02, 0x01
COLL_ERR = 0x08
FATAL_ERRORS = 0x13  # BufferOvfl | ParityErr | ProtocolErr: the frame is garbage

# ISO/IEC 14443-3
WUPA = 0x52
SEL_CODES = (0x93, 0x95, 0x97)
CASCADE_TAG = 0x88
SAK_UID_INCOMPLETE = 0x04

# Timer: TAuto, prescaler 169 -> (2*169+1)/13.56 MHz = 25 us per tick, 80 ticks = 2 ms. Layer-3
# answers (ATQA, UID, SAK) start about 90 us after the reader's frame, so 2 ms is ample.
TIMER_PRESCALER = 169
TIMER_RELOAD = 79
TIMEOUT_SECONDS = (2 * TIMER_PRESCALER + 1) * (TIMER_RELOAD + 1) / 13_560_000
EXPECTED = {  # registers the reader relies on, checked after init and every CHECK_INTERVAL
    TModeReg: 0x80 | (TIMER_PRESCALER >> 8),
    TPrescalerReg: TIMER_PRESCALER & 0xFF,
    TReloadRegL: TIMER_RELOAD & 0xFF,
    TxASKReg: 0x40,  # 100 % ASK (the library's "TxAutoReg")
    ModeReg: 0x3D,  # CRC preset 0x6363
}
FIRST_WAIT = TIMEOUT_SECONDS + 0.0005  # sleep before the first ComIrqReg read of a frame
RETRY_WAIT = 0.001
IRQ_READS = 4  # ComIrqReg reads per frame before the chip counts as not answering
RESET_PULSE = 0.001
RESET_SETTLE = 0.05  # oscillator start-up after the reset pin goes high

VERSIONS = {0x88: "FM17522 clone", 0x89: "FM17522E clone", 0x90: "v0.0", 0x91: "v1.0", 0x92: "v2.0",
            0x12: "counterfeit", 0xB2: "FM17522 clone"}


class ChipError(HardwareError):
    """The chip did not behave like a working MFRC522 (unplugged, reset, wedged)."""

    def __init__(self, message: str):
        super().__init__(message, Cause.NOT_ANSWERING)


def crc_a(data) -> int:
    """CRC_A of ISO/IEC 14443-3 (Annex B byte-wise algorithm), preset 0x6363."""
    crc = 0x6363
    for byte in data:
        byte = (byte ^ crc) & 0xFF
        byte = (byte ^ (byte << 4)) & 0xFF
        crc = (crc >> 8) ^ (byte << 8) ^ (byte << 3) ^ (byte >> 4)
    return crc


def with_crc(data) -> list[int]:
    """``data`` followed by its CRC_A, low byte first."""
    crc = crc_a(data)
    return [*data, crc & 0xFF, crc >> 8]


@dataclass(frozen=True)
class Frame:
    """What the chip received after a Transceive."""

    data: bytes  # FIFO bytes; with rx_align, the low rx_align bits of data[0] are not received bits
    bits: int  # received bits (without the rx_align offset)
    errors: int  # ErrorReg
    collision: int | None  # CollPos (1..32, counted from FIFO bit 0 including rx_align), if a collision


@functools.cache
def driver_class(base: type) -> type:
    """A subclass of the library's ``MFRC522`` (imported just now) with a working transceive."""

    class Driver(base):  # type: ignore[misc, valid-type]
        def __init__(self, *, spi, gpio, pin_mode: int, pin_rst: int, sleep: Callable[[float], None]) -> None:
            """The library constructor's steps, over the parts given (``spi`` already open).

            ``MFRC522.__init__`` is not called: it opens its own ``spidev.SpiDev``
            (from whatever module it imported), adds a log handler per instance and
            guesses the reset pin wrongly in BCM mode (upstream issue #40).
            """
            self.spi, self._gpio, self._pin_rst, self._pin_mode, self._sleep = spi, gpio, pin_rst, pin_mode, sleep
            self.logger = logging.getLogger("mfrc522Logger")  # the library's methods log here
            if gpio.getmode() is None:
                gpio.setmode(pin_mode)
            gpio.setup(pin_rst, gpio.OUT)
            gpio.output(pin_rst, 1)
            self.MFRC522_Init()

        # -- register access in bursts (datasheet 8.1.2: one transfer, many bytes)

        def read_registers(self, *addrs: int) -> list[int]:
            out = self.spi.xfer2([((a << 1) & 0x7E) | 0x80 for a in addrs] + [0])
            return list(out[1:])

        def write_fifo(self, data) -> None:
            self.spi.xfer2([(FIFODataReg << 1) & 0x7E, *data])

        def read_fifo(self, count: int) -> list[int]:
            return self.read_registers(*([FIFODataReg] * count)) if count else []

        # -- set-up

        def MFRC522_Init(self) -> None:
            super().MFRC522_Init()  # soft reset, timer, 100 % ASK, CRC preset 0x6363, antenna on
            write = self.Write_MFRC522
            write(TModeReg, EXPECTED[TModeReg])
            write(TPrescalerReg, EXPECTED[TPrescalerReg])
            write(TReloadRegH, TIMER_RELOAD >> 8)
            write(TReloadRegL, TIMER_RELOAD & 0xFF)
            write(CollReg, 0x00)  # ValuesAfterColl = 0: bits after a collision read as 0
            write(ComIEnReg, 0x80)

        def verify(self) -> tuple[int, str | None]:
            """(VersionReg, problem or None): is this a set-up MFRC522 with its antenna on?"""
            addrs = (VersionReg, TxControlReg, *EXPECTED)
            values = dict(zip(addrs, self.read_registers(*addrs)))
            version = values[VersionReg]
            if version in (0x00, 0xFF):
                return version, f"VersionReg reads 0x{version:02X}"
            wrong = [f"0x{addr:02X}=0x{values[addr]:02X}" for addr, want in EXPECTED.items() if values[addr] != want]
            if values[TxControlReg] & 0x03 != 0x03:
                wrong.append("antenna off")
            if wrong:
                return version, f"chip lost its settings ({', '.join(wrong)})"
            return version, None

        def hard_reset(self) -> None:
            """Pulse NRSTPD low then high: a full reset even of a wedged chip.

            The pin is set up again first: another part of the process may have
            called ``GPIO.cleanup()``, which frees every pin and the numbering mode.
            """
            gpio = self._gpio
            if gpio.getmode() is None:
                gpio.setmode(self._pin_mode)
            gpio.setup(self._pin_rst, gpio.OUT, initial=gpio.HIGH)
            gpio.output(self._pin_rst, 0)
            self._sleep(RESET_PULSE)
            self._gpio.output(self._pin_rst, 1)
            self._sleep(RESET_SETTLE)

        def close_device(self) -> None:
            """Antenna off (a stopped kiosk radiates nothing), close SPI, free only the reset pin."""
            spi, self.spi = self.spi, None
            if spi is None:
                return
            try:
                value = spi.xfer2([((TxControlReg << 1) & 0x7E) | 0x80, 0])[1]
                spi.xfer2([(TxControlReg << 1) & 0x7E, value & ~0x03 & 0xFF])
            except OSError:
                pass
            finally:
                spi.close()
                try:
                    self._gpio.cleanup(self._pin_rst)
                except Exception:  # already freed elsewhere: nothing to do
                    pass

        # -- frames

        def _wait_irq(self, mask: int, sent_bytes: int = 1) -> int | None:
            """ComIrqReg once one of ``mask`` is set; None if it never is within a few reads.

            The first read comes when the chip's timer has surely run out: the frame's
            time on air (9 bit times a byte at 106 kbit/s), the timeout, a margin.
            """
            self._sleep(sent_bytes * 9 / 106_000 + FIRST_WAIT)
            value = 0
            for attempt in range(IRQ_READS):
                value = self.Read_MFRC522(ComIrqReg)
                if value == 0xFF:
                    raise ChipError("ComIrqReg reads 0xFF")
                if value & mask:
                    return value
                if attempt < IRQ_READS - 1:
                    self._sleep(RETRY_WAIT)
            self._last_irq = value
            return None

        def transceive(self, data, *, tx_last_bits: int = 0, rx_align: int = 0) -> Frame | None:
            """Send ``data`` (last byte: ``tx_last_bits`` bits, 0 = 8) and receive; None if no card answered."""
            write = self.Write_MFRC522
            write(CommandReg, PCD_IDLE)
            write(ComIrqReg, 0x7F)  # clear every interrupt bit (Set1 = 0)
            write(FIFOLevelReg, 0x80)  # flush
            self.write_fifo(data)
            write(CommandReg, PCD_TRANSCEIVE)
            write(BitFramingReg, 0x80 | (rx_align << 4) | tx_last_bits)  # StartSend
            irq = self._wait_irq(RX_IRQ | TIMER_IRQ, len(data))
            if irq is None:
                log.debug("no interrupt after a frame: ComIrqReg=0x%02X", self._last_irq)
                raise ChipError("no interrupt from the chip after a frame")
            if not irq & RX_IRQ:
                return None
            errors, level, control, coll = self.read_registers(ErrorReg, FIFOLevelReg, ControlReg, CollReg)
            if level > 64:
                raise ChipError(f"FIFOLevelReg reads {level}")
            received = bytes(self.read_fifo(level))
            last_bits = control & 0x07
            bits = (level * 8 if not last_bits else (level - 1) * 8 + last_bits) - rx_align
            collision = ((coll & 0x1F) or 32) if errors & COLL_ERR and not coll & 0x20 else None
            return Frame(received, bits, errors, collision)

        def MFRC522_ToCard(self, command, sendData):
            """The library's ToCard with a wait loop that ends (for the library's own methods)."""
            irq_en, wait_irq = {PCD_AUTHENT: (0x12, IDLE_IRQ), PCD_TRANSCEIVE: (0x77, RX_IRQ | IDLE_IRQ)}.get(
                command, (0x00, 0x00))
            write = self.Write_MFRC522
            write(ComIEnReg, irq_en | 0x80)
            write(ComIrqReg, 0x7F)
            write(FIFOLevelReg, 0x80)
            write(CommandReg, PCD_IDLE)
            self.write_fifo(list(sendData))
            write(CommandReg, command)
            if command == PCD_TRANSCEIVE:
                self.SetBitMask(BitFramingReg, 0x80)
            try:
                irq = self._wait_irq(wait_irq | TIMER_IRQ, len(sendData))
            except ChipError:
                irq = None
            self.ClearBitMask(BitFramingReg, 0x80)
            if irq is None or self.Read_MFRC522(ErrorReg) & 0x1B:
                return self.MI_ERR, [], 0
            if irq & irq_en & TIMER_IRQ and not irq & wait_irq:
                return self.MI_NOTAGERR, [], 0
            back, back_len = [], 0
            if command == PCD_TRANSCEIVE:
                level, control = self.read_registers(FIFOLevelReg, ControlReg)
                last_bits = control & 0x07
                back_len = (level - 1) * 8 + last_bits if last_bits else level * 8
                back = self.read_fifo(min(level, self.MAX_LEN))
            return self.MI_OK, back, back_len

    Driver.__name__ = Driver.__qualname__ = "Mfrc522Driver"
    return Driver
