"""A fake RC522 board: the MFRC522 chip at register level, ISO 14443-A cards, spidev and RPi.GPIO.

Shipped in the package, like gpiozero's MockFactory, so tests, the benchmark and
demos run the *real* ``mfrc522`` library (and :mod:`kiosk.readers.mfrc522`) over
a simulated chip on any machine. The board is a reader factory (see
:class:`kiosk.readers.mfrc522.Factory`): pass it to the reader, or make it the
default for a block, as gpiozero's ``Device.pin_factory = MockFactory()``::

    from kiosk.sim import rc522 as fakespi

    card = fakespi.FakeCard("04A1B2C3D4E580")          # 4-, 7- or 10-byte UID
    hw = fakespi.board()                                # a FakeMfrc522 on spidev0.0, RST on GPIO25
    reader = Mfrc522Reader(settings, factory=hw)        # or: with fakespi.installed() as hw: Mfrc522Reader(settings)
    hw.chip.place(card)
    ...
    hw.chip.unplug(); hw.chip.plug()                    # reader gone / back (power-on state)
    hw.chip.transfers                                   # SPI transfers so far
    hw.mfrc522.SimpleMFRC522().read_id_no_block()       # the unchanged library, over this board

Nothing is put into ``sys.modules``: ``hw.mfrc522`` is a private copy of the
installed mfrc522 package whose ``import RPi.GPIO`` and ``import spidev`` get
this board's fakes (see :func:`load_library`).

What is modelled (after the MFRC522 datasheet and ISO/IEC 14443-3):

- SPI framing: a transfer whose first byte has bit 7 set is a read sequence
  (each byte an address ``((addr << 1) & 0x7E) | 0x80``, the answer to byte i
  comes in byte i + 1); otherwise byte 0 is ``(addr << 1) & 0x7E`` and every
  following byte is written to that address (FIFO bursts).
- Registers with their power-on values (VersionReg 0x92 = v2.0), commands Idle,
  Mem, GenerateRandomID, CalcCRC, Transmit, NoCmdChange, Receive, Transceive,
  MFAuthent (not supported: it never completes), SoftReset; unknown commands
  end at once with IdleIRq, as on the chip.
- The 64-byte FIFO (FIFOLevelReg, flush bit, BufferOvfl, Hi/LoAlert), ComIrqReg
  and DivIrqReg with their Set1/Set2 write semantics, ErrorReg, Status1Reg.
- BitFramingReg: StartSend, TxLastBits (the 7-bit REQA/WUPA) and RxAlign;
  ControlReg RxLastBits; CollReg (ValuesAfterColl, CollPosNotValid, CollPos,
  counted from the first FIFO bit including RxAlign, 1..32 with 32 read as 0).
- The CRC coprocessor (CRC_A, preset from ModeReg: 0x0000/0x6363/0xA671/0xFFFF,
  result in CRCResultRegH/L), TxCRCEn/RxCRCEn in TxModeReg/RxModeReg.
- The timer only as far as a driver sees it: with TAuto set, a Transceive that
  gets no answer raises TimerIRq; without TAuto (the power-on state) it never
  completes. :attr:`FakeMfrc522.timer_seconds` gives the configured timeout.
- TxControlReg Tx1RFEn/Tx2RFEn: no field, no card answers; switching the field
  off powers the cards down (back to IDLE).
- Time does not pass: a frame's answer is there at once (or after
  ``irq_delay_reads`` register reads), so everything is deterministic.

Cards (:class:`FakeCard`): states IDLE, READY, ACTIVE, HALT (with READY*/ACTIVE*
after a WUPA from HALT); REQA/WUPA answered with ATQA, bit-oriented
anticollision and SELECT at cascade levels 1 to 3 (0x93/0x95/0x97, cascade tag
0x88, BCC, SAK with bit 0x04 while the UID is incomplete), HLTA. Any other or
malformed frame in READY/ACTIVE sends the card back to IDLE (HALT if it was
woken from HALT), as ISO 14443-3 says; so a card left in READY by a reader that
stops after anticollision ignores the next REQA. Several cards in the field
answer together and collide bit by bit.

Not modelled: MIFARE Crypto1 authentication, block READ/WRITE, ISO 14443-4,
RF timing, parity errors, the serial/I2C host interfaces.
"""

from __future__ import annotations

import builtins
import contextlib
import enum
import errno
import importlib.util
import os
import types
from collections.abc import Iterable, Iterator, Mapping

# ---------------------------------------------------------------- registers

CommandReg = 0x01
ComIEnReg = 0x02
DivIEnReg = 0x03
ComIrqReg = 0x04
DivIrqReg = 0x05
ErrorReg = 0x06
Status1Reg = 0x07
Status2Reg = 0x08
FIFODataReg = 0x09
FIFOLevelReg = 0x0A
WaterLevelReg = 0x0B
ControlReg = 0x0C
BitFramingReg = 0x0D
CollReg = 0x0E
ModeReg = 0x11
TxModeReg = 0x12
RxModeReg = 0x13
TxControlReg = 0x14
TxASKReg = 0x15
CRCResultRegH = 0x21  # the library calls it CRCResultRegM
CRCResultRegL = 0x22
TModeReg = 0x2A
TPrescalerReg = 0x2B
TReloadRegH = 0x2C
TReloadRegL = 0x2D
TCounterValueRegH = 0x2E
TCounterValueRegL = 0x2F
VersionReg = 0x37

# Power-on (and SoftReset) values, datasheet section 9.2; unlisted registers are 0x00.
POWER_ON_VALUES = {
    CommandReg: 0x20, ComIEnReg: 0x80, ComIrqReg: 0x14, Status1Reg: 0x21,
    WaterLevelReg: 0x08, ControlReg: 0x10, CollReg: 0xA0, ModeReg: 0x3F,
    TxControlReg: 0x80, 0x16: 0x10, 0x17: 0x84, 0x18: 0x84, 0x19: 0x4D,
    0x1C: 0x62, 0x1F: 0xEB, CRCResultRegH: 0xFF, CRCResultRegL: 0xFF,
    0x24: 0x26, 0x26: 0x48, 0x27: 0x88, 0x28: 0x20, 0x29: 0x20,
    0x33: 0x80, 0x36: 0x40,
}

# Commands (CommandReg bits 3..0)
IDLE, MEM, GENERATE_RANDOM_ID, CALC_CRC, TRANSMIT = 0x0, 0x1, 0x2, 0x3, 0x4
NO_CMD_CHANGE, RECEIVE, TRANSCEIVE, MF_AUTHENT, SOFT_RESET = 0x7, 0x8, 0xC, 0xE, 0xF

# ComIrqReg bits
TX_IRQ, RX_IRQ, IDLE_IRQ, HI_ALERT_IRQ, LO_ALERT_IRQ, ERR_IRQ, TIMER_IRQ = 0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01
CRC_IRQ = 0x04  # DivIrqReg
# ErrorReg bits
PROTOCOL_ERR, PARITY_ERR, CRC_ERR, COLL_ERR, BUFFER_OVFL, TEMP_ERR, WR_ERR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x40, 0x80

FIFO_SIZE = 64
CARRIER_HZ = 13_560_000

# ISO 14443-3 frames
REQA, WUPA = 0x26, 0x52
SEL_CODES = (0x93, 0x95, 0x97)
CASCADE_TAG = 0x88
HLTA = (0x50, 0x00)

_CRC_PRESETS = (0x0000, 0x6363, 0xA671, 0xFFFF)


def crc_a(data: Iterable[int], preset: int = 0x6363) -> int:
    """CRC_A of ISO/IEC 14443-3 (x^16 + x^12 + x^5 + 1, LSB first), as the chip computes it.

    Sent least significant byte first: ``crc_a(b"\\x50\\x00") == 0xCD57`` -> ``50 00 57 CD``.
    """
    crc = preset
    for byte in data:
        crc ^= byte & 0xFF
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def with_crc(data: Iterable[int]) -> bytes:
    """``data`` followed by its CRC_A, low byte first."""
    data = bytes(data)
    crc = crc_a(data)
    return data + bytes((crc & 0xFF, crc >> 8))


def _to_bits(data: bytes, last_bits: int = 0) -> list[int]:
    """Bits as sent on air (LSB of each byte first); ``last_bits`` valid bits of the last byte (0 = 8)."""
    bits: list[int] = []
    for i, byte in enumerate(data):
        count = last_bits if (i == len(data) - 1 and last_bits) else 8
        bits.extend((byte >> j) & 1 for j in range(count))
    return bits


def _to_bytes(bits: list[int]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        out[i // 8] |= (bit & 1) << (i % 8)
    return bytes(out)


# ---------------------------------------------------------------- cards


class CardState(str, enum.Enum):
    IDLE = "IDLE"
    READY = "READY"
    ACTIVE = "ACTIVE"
    HALT = "HALT"


class FakeCard:
    """An ISO 14443-A PICC (MIFARE Classic, NTAG, DESFire...) as far as layer 3 goes.

    ``uid``: 4, 7 or 10 bytes (bytes or hex text). ``atqa`` (2 bytes, sent LSB
    first) and ``sak`` (final SAK) default by UID size: 4 bytes -> ATQA 0x0004,
    SAK 0x08 (MIFARE Classic 1K); 7 -> 0x0044, 0x00 (NTAG/Ultralight); 10 ->
    0x0084, 0x20. ``answer_every=2`` makes the card hear only every other
    REQA/WUPA (the 2nd, 4th... are lost, as with a card held at the edge of the
    field), so a reader's grace period gets exercised.
    """

    def __init__(self, uid: bytes | str, *, atqa: bytes | None = None, sak: int | None = None,
                 answer_every: int = 1) -> None:
        if isinstance(uid, str):
            uid = bytes.fromhex(uid)
        uid = bytes(uid)
        if len(uid) not in (4, 7, 10):
            raise ValueError(f"a UID has 4, 7 or 10 bytes, not {len(uid)}")
        if len(uid) == 4 and uid[0] == CASCADE_TAG:
            raise ValueError("a 4-byte UID cannot start with the cascade tag 0x88")
        if answer_every < 1:
            raise ValueError("answer_every must be at least 1")
        self.uid = uid
        size_bits = {4: 0x00, 7: 0x40, 10: 0x80}[len(uid)]
        self.atqa = bytes(atqa) if atqa is not None else bytes((size_bits | 0x04, 0x00))
        self.sak = sak if sak is not None else {4: 0x08, 7: 0x00, 10: 0x20}[len(uid)]
        if self.sak & 0x04:
            raise ValueError("the final SAK must not have the cascade bit 0x04")
        self.answer_every = answer_every
        self.state = CardState.IDLE
        self._from_halt = False  # READY*/ACTIVE*: woken by WUPA from HALT
        self._level = 0  # cascade level being resolved, 0-based
        self.requests_heard = 0  # REQA/WUPA frames that reached the card
        self.selections = 0  # times it became ACTIVE
        self.halts = 0

    @property
    def id(self) -> str:
        """Canonical badge id: the UID bytes in uppercase hex."""
        return self.uid.hex().upper()

    @property
    def levels(self) -> int:
        return {4: 1, 7: 2, 10: 3}[len(self.uid)]

    def cascade_bytes(self, level: int) -> bytes:
        """UID CLn of cascade ``level`` (0-based) with its BCC: 5 bytes."""
        uid, n = self.uid, self.levels
        if level == n - 1:
            part = uid[-4:]
        else:
            part = bytes((CASCADE_TAG,)) + uid[3 * level: 3 * level + 3]
        return part + bytes((part[0] ^ part[1] ^ part[2] ^ part[3],))

    def __repr__(self) -> str:
        return f"FakeCard({self.id}, {self.state.value})"

    # -- field

    def power_up(self) -> None:
        """Entering a field (or the field switched on): POWER-OFF -> IDLE."""
        self.state, self._from_halt, self._level = CardState.IDLE, False, 0

    def receive(self, bits: list[int]) -> list[int] | None:
        """One frame from the reader (bits in air order); returns the answer's bits, or None."""
        if len(bits) == 7:
            command = _to_bytes(bits)[0]
            if command in (REQA, WUPA):
                self.requests_heard += 1
                if (self.requests_heard - 1) % self.answer_every:
                    return None  # lost in the field: the card never heard it
                if self.state is CardState.IDLE or (command == WUPA and self.state is CardState.HALT):
                    self._from_halt = self.state is CardState.HALT
                    self.state, self._level = CardState.READY, 0
                    return _to_bits(self.atqa)
            return self._other()
        if len(bits) < 16:
            return self._other()
        data = _to_bytes(bits)
        if data[0] in SEL_CODES:
            return self._select(data[0], data[1], bits)
        if len(bits) == 32 and data == with_crc(HLTA) and self.state is CardState.ACTIVE:
            self.state, self._from_halt, self._level = CardState.HALT, False, 0
            self.halts += 1
            return None
        return self._other()

    def _other(self) -> None:
        if self.state in (CardState.READY, CardState.ACTIVE):
            self.state = CardState.HALT if self._from_halt else CardState.IDLE
            self._level = 0
        return None

    def _select(self, sel: int, nvb: int, bits: list[int]) -> list[int] | None:
        if self.state is not CardState.READY or sel != SEL_CODES[self._level]:
            return self._other()
        nbytes, nbits = nvb >> 4, nvb & 0x0F
        if not 2 <= nbytes <= 7 or nbits > 7:
            return self._other()
        known = (nbytes - 2) * 8 + nbits
        cl = self.cascade_bytes(self._level)
        if nvb == 0x70:  # SELECT: SEL, NVB, UID CLn, BCC, CRC_A
            frame = _to_bytes(bits)
            if len(bits) != 72 or with_crc(frame[:7]) != frame:
                return self._other()
            if frame[2:7] != cl:
                return self._other()
            if self._level == self.levels - 1:
                self.state = CardState.ACTIVE
                self.selections += 1
                sak = self.sak
            else:
                self._level += 1
                sak = 0x04
            return _to_bits(with_crc((sak,)))
        if known >= 40 or len(bits) != 16 + known:
            return self._other()
        mine = _to_bits(cl)
        if bits[16:] != mine[:known]:
            return None  # not this card: it stays READY and keeps quiet
        return mine[known:]


# ---------------------------------------------------------------- the chip


class FakeMfrc522:
    """The MFRC522 chip behind an SPI chip select, with the cards in its field.

    ``version``: VersionReg (0x91 = v1.0, 0x92 = v2.0, 0x88 = FM17522 clone).
    ``unplugged_value``: what every read returns while unplugged (0x00 or 0xFF,
    depending on how MISO floats). ``irq_delay_reads``: how many register reads
    pass before a frame's result (IRQ bits, FIFO) shows, to exercise polling
    loops; 0 = at once.
    """

    def __init__(self, *, version: int = 0x92, unplugged_value: int = 0x00, irq_delay_reads: int = 0) -> None:
        self.version = version
        self.unplugged_value = unplugged_value
        self.irq_delay_reads = irq_delay_reads
        self.cards: list[FakeCard] = []
        self.plugged = True
        self.reset_line = True  # NRSTPD: high = running, low = hard power-down
        self.spi_error: BaseException | None = None  # raised by every transfer while set
        self._buffer = bytearray(25)  # the internal buffer (Mem command)
        self.reset_counters()
        self.power_on_resets = 0  # power-up, plug-in, reset-pin pulse
        self.soft_resets = 0  # SoftReset commands
        self._power_on()

    # -- counters

    def reset_counters(self) -> None:
        """Zero :attr:`transfers`, :attr:`register_reads`, :attr:`register_writes`, :attr:`transceives`."""
        self.transfers = 0  # SPI transfers (xfer/xfer2/readbytes/writebytes calls)
        self.register_reads = 0
        self.register_writes = 0
        self.transceives = 0  # frames sent with Transceive/Transmit (polls, for an idle reader)

    # -- power

    @property
    def powered(self) -> bool:
        return self.plugged and self.reset_line

    @property
    def antenna_on(self) -> bool:
        return self.powered and bool(self._regs[TxControlReg] & 0x03)

    def unplug(self, reads: int | None = None) -> None:
        """Disconnect the reader: every read returns ``reads`` (default ``unplugged_value``), writes are lost."""
        if reads is not None:
            self.unplugged_value = reads
        was_on = self.antenna_on
        self.plugged = False
        if was_on:
            self._field_changed(False)

    def plug(self) -> None:
        """Reconnect the reader: it starts in its power-on state (antenna off, registers reset)."""
        if not self.plugged:
            self.plugged = True
            if self.reset_line:
                self._power_on()

    def set_reset_line(self, high: bool) -> None:
        """The NRSTPD pin (wired to the reset GPIO): low powers down, a rising edge resets."""
        high = bool(high)
        if high == self.reset_line:
            return
        was_on = self.antenna_on
        self.reset_line = high
        if not self.plugged:
            return
        if high:
            self._power_on()
        elif was_on:
            self._field_changed(False)

    def _power_on(self) -> None:
        self.power_on_resets += 1
        self._reset_registers()

    def _reset_registers(self) -> None:
        was_on = getattr(self, "_regs", None) is not None and self.antenna_on
        self._regs = bytearray(64)
        for addr, value in POWER_ON_VALUES.items():
            self._regs[addr] = value
        self._regs[VersionReg] = self.version
        self._fifo: list[int] = []
        self._command = IDLE
        self._crc = 0xFFFF
        self._crc_ready = True
        self._rx_last_bits = 0
        self._coll = 0x20  # CollPosNotValid
        self._pending: tuple[int, object] | None = None
        if was_on:
            self._field_changed(False)

    # -- field

    def place(self, card: FakeCard) -> FakeCard:
        """Put ``card`` in the field (powered up at once if the antenna is on)."""
        if card not in self.cards:
            self.cards.append(card)
            card.power_up()
        return card

    def remove(self, card: FakeCard) -> None:
        """Take ``card`` out of the field (it loses power: back to IDLE)."""
        if card in self.cards:
            self.cards.remove(card)
            card.power_up()

    def clear(self) -> None:
        for card in list(self.cards):
            self.remove(card)

    def _field_changed(self, on: bool) -> None:
        for card in self.cards:
            card.power_up()  # off: power lost; on: fresh IDLE

    # -- introspection (no side effects, not counted)

    def peek(self, addr: int) -> int:
        """A register's value as a read would return it, without side effects (FIFODataReg: next byte)."""
        if addr == FIFODataReg:
            return self._fifo[0] if self._fifo else 0
        return self._value(addr)

    @property
    def command(self) -> int:
        return self._command

    @property
    def fifo(self) -> list[int]:
        return list(self._fifo)

    @property
    def timer_seconds(self) -> float:
        """The timeout configured in TModeReg/TPrescalerReg/TReloadReg."""
        prescaler = ((self._regs[TModeReg] & 0x0F) << 8) | self._regs[TPrescalerReg]
        reload = (self._regs[TReloadRegH] << 8) | self._regs[TReloadRegL]
        return (2 * prescaler + 1) * (reload + 1) / CARRIER_HZ

    # -- SPI

    def transfer(self, data: list[int]) -> list[int]:
        """One SPI transfer with chip select held low; returns the MISO bytes."""
        self.transfers += 1
        if self.spi_error is not None:
            raise self.spi_error
        data = [int(b) & 0xFF for b in data]
        if not data:
            return []
        if not self.powered:
            return [self.unplugged_value] * len(data)
        if data[0] & 0x80:  # read sequence: each byte addresses the next answer
            out = [0]
            for byte in data[:-1]:
                out.append(self._read((byte >> 1) & 0x3F))
            return out
        addr = (data[0] >> 1) & 0x3F
        for value in data[1:]:
            self._write(addr, value)
        return [0] * len(data)

    def _read(self, addr: int) -> int:
        self.register_reads += 1
        if self._pending is not None:
            countdown, apply = self._pending
            if countdown <= 0:
                self._pending = None
                apply()  # type: ignore[operator]
            else:
                self._pending = (countdown - 1, apply)
        if addr == FIFODataReg:
            value = self._fifo.pop(0) if self._fifo else 0x00
            self._fifo_changed()
            return value
        return self._value(addr)

    def _value(self, addr: int) -> int:
        regs = self._regs
        if addr == CommandReg:
            return (regs[CommandReg] & 0x30) | self._command
        if addr == ComIrqReg:
            return regs[ComIrqReg] & 0x7F
        if addr == DivIrqReg:
            return regs[DivIrqReg] & 0x14
        if addr == Status1Reg:
            level = len(self._fifo)
            water = regs[WaterLevelReg] & 0x3F
            irq = (regs[ComIrqReg] & regs[ComIEnReg] & 0x7F) or (regs[DivIrqReg] & regs[DivIEnReg] & 0x14)
            crc_ok = self._crc_ready and self._crc == 0
            return ((level <= water) | ((FIFO_SIZE - level <= water) << 1) | (bool(irq) << 4)
                    | (self._crc_ready << 5) | (crc_ok << 6))
        if addr == FIFOLevelReg:
            return len(self._fifo)
        if addr == ControlReg:
            return 0x10 | self._rx_last_bits
        if addr == BitFramingReg:
            return regs[BitFramingReg] & 0x77
        if addr == CollReg:
            return (regs[CollReg] & 0x80) | self._coll
        if addr == CRCResultRegH:
            return self._crc >> 8
        if addr == CRCResultRegL:
            return self._crc & 0xFF
        if addr in (TCounterValueRegH, TCounterValueRegL):
            return 0
        return regs[addr]

    def _write(self, addr: int, value: int) -> None:
        self.register_writes += 1
        regs = self._regs
        if addr == CommandReg:
            regs[CommandReg] = value & 0x30
            command = value & 0x0F
            if command != NO_CMD_CHANGE:
                self._start(command)
        elif addr in (ComIrqReg, DivIrqReg):
            mask = value & 0x7F
            regs[addr] = regs[addr] | mask if value & 0x80 else regs[addr] & ~mask & 0x7F
        elif addr == FIFODataReg:
            if len(self._fifo) >= FIFO_SIZE:
                regs[ErrorReg] |= BUFFER_OVFL
            else:
                self._fifo.append(value)
                self._fifo_changed()
            if self._command == CALC_CRC:
                self._crc_feed()
        elif addr == FIFOLevelReg:
            if value & 0x80:
                self._fifo.clear()
                regs[ErrorReg] &= ~BUFFER_OVFL & 0xFF
                self._fifo_changed()
        elif addr == BitFramingReg:
            regs[BitFramingReg] = value & 0x77
            if value & 0x80 and self._command == TRANSCEIVE:
                self._send(receive=True)
        elif addr == ControlReg:
            if value & 0x40:  # TStartNow: time does not pass here, so the timer runs out at once
                regs[ComIrqReg] |= TIMER_IRQ
        elif addr == TxControlReg:
            was_on = self.antenna_on
            regs[TxControlReg] = value
            if was_on != self.antenna_on:
                self._field_changed(self.antenna_on)
        elif addr == CollReg:
            regs[CollReg] = value & 0x80
        elif addr == Status2Reg:
            regs[Status2Reg] = value & 0xC8 & (regs[Status2Reg] | 0xC0)  # MFCrypto1On can only be cleared
        elif addr in (ErrorReg, Status1Reg, VersionReg, CRCResultRegH, CRCResultRegL,
                      TCounterValueRegH, TCounterValueRegL):
            pass  # read-only
        else:
            regs[addr] = value

    # -- commands

    def _start(self, command: int) -> None:
        regs = self._regs
        self._pending = None
        if command == SOFT_RESET:
            self.soft_resets += 1
            buffer = self._buffer
            self._reset_registers()
            self._buffer = buffer
            return
        if command == IDLE:
            self._command = IDLE
        elif command == CALC_CRC:
            self._command = CALC_CRC
            self._crc = _CRC_PRESETS[regs[ModeReg] & 0x03]
            self._crc_feed()
        elif command == TRANSCEIVE:
            self._command = TRANSCEIVE  # waits for StartSend
        elif command == TRANSMIT:
            self._command = TRANSMIT
            self._send(receive=False)
            self._command = IDLE
            regs[ComIrqReg] |= IDLE_IRQ
        elif command == RECEIVE:
            self._command = RECEIVE  # no card speaks first: nothing ever arrives
        elif command == MEM:
            if self._fifo:
                self._buffer = bytearray((self._fifo + [0] * 25)[:25])
                self._fifo.clear()
            else:
                self._fifo = list(self._buffer)
            self._fifo_changed()
            regs[ComIrqReg] |= IDLE_IRQ
        elif command == GENERATE_RANDOM_ID:
            self._buffer[15:25] = bytes(range(0xA0, 0xAA))  # "random", but repeatable
            regs[ComIrqReg] |= IDLE_IRQ
        elif command == MF_AUTHENT:
            self._command = MF_AUTHENT  # no Crypto1 here: never completes (a driver times out)
        else:  # unknown command: back to Idle at once, IdleIRq set
            self._command = IDLE
            regs[ComIrqReg] |= IDLE_IRQ

    def _crc_feed(self) -> None:
        """CalcCRC consumes the FIFO as data arrives, continuing from the running value."""
        self._crc = crc_a(self._fifo, self._crc)
        self._fifo = []
        self._fifo_changed()
        self._crc_ready = True
        self._regs[DivIrqReg] |= CRC_IRQ

    def _fifo_changed(self) -> None:
        level, water = len(self._fifo), self._regs[WaterLevelReg] & 0x3F
        if level <= water:
            self._regs[ComIrqReg] |= LO_ALERT_IRQ
        if FIFO_SIZE - level <= water:
            self._regs[ComIrqReg] |= HI_ALERT_IRQ

    def _send(self, *, receive: bool) -> None:
        """Send the FIFO as one frame; with ``receive``, collect the cards' answers."""
        regs = self._regs
        tx_last_bits = regs[BitFramingReg] & 0x07
        rx_align = (regs[BitFramingReg] >> 4) & 0x07
        data = bytes(self._fifo)
        self._fifo = []
        self._fifo_changed()
        if regs[TxModeReg] & 0x80 and not tx_last_bits:
            data = with_crc(data)
        self.transceives += 1
        frame = _to_bits(data, tx_last_bits)
        answers = []
        if self.antenna_on and frame:
            for card in list(self.cards):
                answer = card.receive(frame)
                if answer is not None:
                    answers.append(answer)
        regs[ComIrqReg] |= TX_IRQ
        if not receive:
            return
        regs[ErrorReg] &= BUFFER_OVFL | TEMP_ERR
        self._coll = 0x20
        self._rx_last_bits = 0
        if not answers:
            if regs[TModeReg] & 0x80:  # TAuto: the timer started at the end of sending, and ran out
                self._later(lambda: self._set_irq(TIMER_IRQ))
            return  # without TAuto: the receiver waits forever
        self._later(lambda: self._receive(answers, rx_align))

    def _later(self, apply) -> None:
        if self.irq_delay_reads > 0:
            self._pending = (self.irq_delay_reads, apply)
        else:
            apply()

    def _set_irq(self, bits: int) -> None:
        self._regs[ComIrqReg] |= bits

    def _receive(self, answers: list[list[int]], rx_align: int) -> None:
        regs = self._regs
        length = max(len(a) for a in answers)
        merged: list[int] = []
        first_collision = None
        for i in range(length):
            values = {a[i] for a in answers if i < len(a)}
            if len(values) > 1:
                if first_collision is None:
                    first_collision = i
                merged.append(1)
            else:
                merged.append(values.pop())
        if first_collision is not None:
            if not regs[CollReg] & 0x80:  # ValuesAfterColl = 0: bits from the collision on read as 0
                merged[first_collision:] = [0] * (length - first_collision)
            regs[ErrorReg] |= COLL_ERR
            position = rx_align + first_collision + 1
            self._coll = (position & 0x1F) if position <= 32 else 0x20
        stream = [0] * rx_align + merged
        received = _to_bytes(stream)
        self._rx_last_bits = len(stream) % 8
        if regs[RxModeReg] & 0x80 and not self._rx_last_bits:  # RxCRCEn: check and strip CRC_A
            if len(received) >= 3 and with_crc(received[:-2]) == received:
                received = received[:-2]
            else:
                regs[ErrorReg] |= CRC_ERR
        for byte in received:
            if len(self._fifo) >= FIFO_SIZE:
                regs[ErrorReg] |= BUFFER_OVFL
                break
            self._fifo.append(byte)
        self._fifo_changed()
        irq = RX_IRQ
        if regs[ErrorReg] & (PROTOCOL_ERR | PARITY_ERR | CRC_ERR | COLL_ERR | BUFFER_OVFL):
            irq |= ERR_IRQ
        regs[ComIrqReg] |= irq


# ---------------------------------------------------------------- spidev and RPi.GPIO


class FakeSpiDev:
    """Stands in for ``spidev.SpiDev``; opens the chip wired at (bus, device) in the installed :class:`FakeHardware`."""

    hardware: FakeHardware | None = None  # set on the per-installation subclass

    def __init__(self, bus: int | None = None, device: int | None = None) -> None:
        self.chip: FakeMfrc522 | None = None
        self.bus = self.device = None
        self.max_speed_hz = 125_000_000
        self.mode = 0
        self.bits_per_word = 8
        self.cshigh = self.lsbfirst = self.threewire = self.loop = self.no_cs = False
        self.transfers = 0
        if bus is not None:
            self.open(bus, device if device is not None else 0)

    def open(self, bus: int, device: int) -> None:
        hardware = type(self).hardware
        chip = hardware.chips.get((bus, device)) if hardware is not None else None
        if chip is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"/dev/spidev{bus}.{device}")
        self.chip, self.bus, self.device = chip, bus, device

    def close(self) -> None:
        self.chip = None

    def _transfer(self, data) -> list[int]:
        if self.chip is None:
            raise OSError(errno.EBADF, "Bad file descriptor")
        self.transfers += 1
        return self.chip.transfer(list(data))

    def xfer(self, data, speed_hz: int = 0, delay_usecs: int = 0, bits_per_word: int = 0) -> list[int]:
        return self._transfer(data)

    def xfer2(self, data, speed_hz: int = 0, delay_usecs: int = 0, bits_per_word: int = 0) -> list[int]:
        return self._transfer(data)

    def xfer3(self, data, speed_hz: int = 0, delay_usecs: int = 0, bits_per_word: int = 0) -> tuple[int, ...]:
        return tuple(self._transfer(data))

    def writebytes(self, data) -> None:
        self._transfer(data)

    def writebytes2(self, data) -> None:
        self._transfer(data)

    def readbytes(self, n: int) -> list[int]:
        return self._transfer([0] * n)


def _bcm_to_board() -> dict[int, int]:
    from kiosk.readers.mfrc522 import BCM_TO_BOARD

    return BCM_TO_BOARD


class FakeGPIO(types.ModuleType):
    """Stands in for the ``RPi.GPIO`` module (its calls, constants and main error messages).

    An output pin wired to a chip's reset line drives it; a pin not set up as
    an output leaves the line high (the module pulls RST up). :attr:`events`
    records ``(bcm_pin, level)`` for every output change.
    """

    BOARD, BCM = 10, 11
    OUT, IN = 0, 1
    LOW, HIGH = 0, 1
    PUD_OFF, PUD_DOWN, PUD_UP = 20, 21, 22
    RISING, FALLING, BOTH = 31, 32, 33
    UNKNOWN, SERIAL, SPI, I2C, HARD_PWM = -1, 40, 41, 42, 43
    VERSION = "0.7.1 (kiosk fakespi)"
    RPI_REVISION = 3
    RPI_INFO = {"P1_REVISION": 3, "TYPE": "Fake Pi", "MANUFACTURER": "kiosk", "PROCESSOR": "fake",
                "RAM": "1G", "REVISION": "fake"}

    def __init__(self, hardware: FakeHardware | None = None) -> None:
        super().__init__("RPi.GPIO", "Fake RPi.GPIO (kiosk.sim.rc522)")
        self._hardware = hardware
        self._mode: int | None = None
        self._pins: dict[int, dict] = {}  # bcm -> {"direction", "level", "pull"}
        self.warnings = True
        self.events: list[tuple[int, int]] = []

    # -- numbering

    def setmode(self, mode: int) -> None:
        if mode not in (self.BOARD, self.BCM):
            raise ValueError("An invalid mode was passed to setmode()")
        if self._mode is not None and mode != self._mode:
            raise ValueError("A different mode has already been set!")
        self._mode = mode

    def getmode(self) -> int | None:
        return self._mode

    def setwarnings(self, flag: bool) -> None:
        self.warnings = bool(flag)

    def _bcm(self, channel: int) -> int:
        if self._mode is None:
            raise RuntimeError("Please set pin numbering mode using GPIO.setmode(GPIO.BOARD) or GPIO.setmode(GPIO.BCM)")
        if self._mode == self.BCM:
            if not 0 <= channel <= 27:
                raise ValueError("The channel sent is invalid on a Raspberry Pi")
            return channel
        for bcm, board in _bcm_to_board().items():
            if board == channel:
                return bcm
        raise ValueError("The channel sent is invalid on a Raspberry Pi")

    # -- pins

    def setup(self, channel, direction: int, pull_up_down: int = PUD_OFF, initial: int = -1) -> None:
        for ch in channel if isinstance(channel, (list, tuple)) else (channel,):
            bcm = self._bcm(ch)
            if direction == self.OUT:
                previous = self._pins.get(bcm, {})
                level = initial if initial != -1 else previous.get("level", 0)  # output latch, 0 after boot
                self._pins[bcm] = {"direction": self.OUT, "level": int(bool(level)), "pull": pull_up_down}
            elif direction == self.IN:
                self._pins[bcm] = {"direction": self.IN, "level": int(pull_up_down == self.PUD_UP),
                                   "pull": pull_up_down}
            else:
                raise ValueError("An invalid direction was passed to setup()")
            self._drive(bcm)

    def output(self, channel, value) -> None:
        channels = channel if isinstance(channel, (list, tuple)) else (channel,)
        values = value if isinstance(value, (list, tuple)) else (value,) * len(channels)
        for ch, val in zip(channels, values):
            bcm = self._bcm(ch)
            pin = self._pins.get(bcm)
            if pin is None or pin["direction"] != self.OUT:
                raise RuntimeError("The GPIO channel has not been set up as an OUTPUT")
            pin["level"] = int(bool(val))
            self.events.append((bcm, pin["level"]))
            self._drive(bcm)

    def input(self, channel) -> int:
        bcm = self._bcm(channel)
        pin = self._pins.get(bcm)
        if pin is None:
            raise RuntimeError("You must setup() the GPIO channel first")
        return pin["level"]

    def gpio_function(self, channel) -> int:
        pin = self._pins.get(self._bcm(channel))
        return self.IN if pin is None else pin["direction"]

    def cleanup(self, channel=None) -> None:
        if channel is None:
            pins = list(self._pins)
            self._pins.clear()
            self._mode = None
        else:
            pins = [self._bcm(ch) for ch in (channel if isinstance(channel, (list, tuple)) else (channel,))]
            for bcm in pins:
                self._pins.pop(bcm, None)
        for bcm in pins:
            self._drive(bcm)

    # -- introspection

    def is_setup(self, bcm: int) -> bool:
        return bcm in self._pins

    def line_level(self, bcm: int) -> int:
        """What a device on BCM pin ``bcm`` sees: the driven level, or high when not driven."""
        pin = self._pins.get(bcm)
        return pin["level"] if pin is not None and pin["direction"] == self.OUT else 1

    def _drive(self, bcm: int) -> None:
        if self._hardware is not None:
            self._hardware._pin_changed(bcm, self.line_level(bcm))


class FakeHardware:
    """Chips on SPI chip selects, their reset lines on GPIO pins: a reader factory for the simulated board.

    As a :class:`kiosk.readers.mfrc522.Factory`: :attr:`mfrc522` is the
    library (loaded privately over this board, on first use), :attr:`gpio` the
    fake ``RPi.GPIO``, :meth:`spi` a new fake ``spidev.SpiDev``. Two boards are
    two separate worlds; nothing global changes, except within
    :meth:`as_default`.
    """

    def __init__(self) -> None:
        self.gpio = FakeGPIO(self)
        self.chips: dict[tuple[int, int], FakeMfrc522] = {}
        self.reset_pins: dict[int, FakeMfrc522] = {}  # BCM pin -> chip
        self.spidev = types.ModuleType("spidev", "Fake spidev (kiosk.sim.rc522)")
        self.spidev.SpiDev = type("SpiDev", (FakeSpiDev,), {"hardware": self})
        self.rpi = types.ModuleType("RPi", "Fake RPi package (kiosk.sim.rc522)")
        self.rpi.__path__ = []  # a package, so "import RPi.GPIO" works
        self.rpi.GPIO = self.gpio
        self._library: types.ModuleType | None = None

    @property
    def chip(self) -> FakeMfrc522:
        """The first (usually only) chip."""
        return next(iter(self.chips.values()))

    def attach(self, chip: FakeMfrc522, *, bus: int = 0, device: int = 0, reset_pin: int | None = 25) -> FakeMfrc522:
        """Wire ``chip`` to /dev/spidev<bus>.<device>, its RST to BCM ``reset_pin`` (None: not wired)."""
        self.chips[(bus, device)] = chip
        if reset_pin is not None:
            self.reset_pins[reset_pin] = chip
            chip.set_reset_line(bool(self.gpio.line_level(reset_pin)))
        return chip

    def _pin_changed(self, bcm: int, level: int) -> None:
        chip = self.reset_pins.get(bcm)
        if chip is not None:
            chip.set_reset_line(bool(level))

    # -- the factory

    @property
    def mfrc522(self) -> types.ModuleType:
        """The installed ``mfrc522`` package, unchanged, running over this board (loaded once, privately).

            >>> hw = board()
            >>> lib = hw.mfrc522.MFRC522(pin_mode=11, pin_rst=25)   # the library's own constructor
            >>> hw.chip.antenna_on
            True
        """
        if self._library is None:
            self._library = load_library({"spidev": self.spidev, "RPi": self.rpi, "RPi.GPIO": self.gpio})
        return self._library

    def spi(self) -> FakeSpiDev:
        """A new, unopened ``spidev.SpiDev`` of this board."""
        return self.spidev.SpiDev()

    @contextlib.contextmanager
    def as_default(self) -> Iterator[FakeHardware]:
        """Within the block, readers built without a factory use this board (``Mfrc522Reader.default_factory``).

        For code that builds its own reader from the configuration (``kiosk
        doctor``); the previous default is put back on exit.
        """
        from kiosk.readers.mfrc522 import Mfrc522Reader

        previous = Mfrc522Reader.default_factory
        Mfrc522Reader.default_factory = self
        try:
            yield self
        finally:
            Mfrc522Reader.default_factory = previous


def load_library(modules: Mapping[str, types.ModuleType]) -> types.ModuleType:
    """A private copy of the installed ``mfrc522`` package whose imports of ``modules``' names get those modules.

    The library does ``import RPi.GPIO as GPIO`` and ``import spidev`` at import
    time and uses those module globals in ``MFRC522.__init__``, ``Close_MFRC522``
    and ``SimpleMFRC522``. Rather than putting fakes into ``sys.modules`` for
    everyone, its unchanged source files are executed here into new module
    objects, with builtins of their own whose ``__import__`` answers the names in
    ``modules`` (and the package's relative imports) and passes every other
    import on. The copy is registered nowhere: ``sys.modules`` and the real
    builtins are never touched, and any number of copies (one per board) live
    side by side.

        >>> hw = FakeHardware()
        >>> lib = load_library({"spidev": hw.spidev, "RPi": hw.rpi, "RPi.GPIO": hw.gpio})   # as hw.mfrc522 does
        >>> lib.MFRC522.__init__.__globals__["GPIO"] is hw.gpio
        True
        >>> import sys; "mfrc522" in sys.modules or "RPi.GPIO" in sys.modules
        False
    """
    spec = importlib.util.find_spec("mfrc522")  # a top-level name: found, not executed
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the mfrc522 package is not installed")
    folder = list(spec.submodule_search_locations)[0]
    submodules: dict[str, types.ModuleType] = {}
    real_import = builtins.__import__

    def import_(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0:
            if name in modules:  # "import RPi.GPIO as GPIO" asks for "RPi.GPIO" and takes .GPIO of what comes back
                return modules[name] if fromlist else modules[name.partition(".")[0]]
            return real_import(name, globals, locals, fromlist, level)
        if level != 1:
            raise ImportError(f"mfrc522 (private copy): relative import beyond the package: {name!r}")
        if not name:  # from . import X
            for attr in fromlist or ():
                if not hasattr(package, attr):
                    load(attr)
            return package
        return load(name)  # from .X import Y

    scope = dict(vars(builtins), __import__=import_)

    def execute(name: str, path: str, **kwargs):
        module_spec = importlib.util.spec_from_file_location(name, path, **kwargs)
        module = importlib.util.module_from_spec(module_spec)
        module.__builtins__ = scope  # type: ignore[attr-defined]
        return module, module_spec

    def load(sub: str) -> types.ModuleType:
        if sub not in submodules:
            path = os.path.join(folder, f"{sub}.py")
            if not os.path.isfile(path):
                raise ImportError(f"mfrc522 (private copy) has no module {sub!r}")
            module, module_spec = execute(f"mfrc522.{sub}", path)
            submodules[sub] = module
            setattr(package, sub, module)  # as the import system does, before the module runs
            module_spec.loader.exec_module(module)
        return submodules[sub]

    package, package_spec = execute("mfrc522", os.path.join(folder, "__init__.py"), submodule_search_locations=[folder])
    package_spec.loader.exec_module(package)
    return package


def board(chip: FakeMfrc522 | None = None, *, bus: int = 0, device: int = 0,
          reset_pin: int | None = 25) -> FakeHardware:
    """A board with one fake RC522 (``chip`` or a new :class:`FakeMfrc522`) on SPI ``bus``.``device``, RST on ``reset_pin``.

        >>> hw = board(FakeMfrc522(version=0x88))
        >>> hw.chip.version, hw.gpio.line_level(25)
        (136, 1)
    """
    hardware = FakeHardware()
    hardware.attach(chip if chip is not None else FakeMfrc522(), bus=bus, device=device, reset_pin=reset_pin)
    return hardware


@contextlib.contextmanager
def installed(chip: FakeMfrc522 | None = None, *, bus: int = 0, device: int = 0,
              reset_pin: int | None = 25) -> Iterator[FakeHardware]:
    """:func:`board`, made the default factory of :class:`~kiosk.readers.mfrc522.Mfrc522Reader` within the block.

    Yields the :class:`FakeHardware`; ``hw.chip`` is the chip, ``hw.gpio`` the fake ``RPi.GPIO``::

        with fakespi.installed() as hw:
            check = doctor.run_checks(settings, only=["reader"])   # builds Mfrc522Reader(settings.reader)
    """
    hardware = board(chip, bus=bus, device=device, reset_pin=reset_pin)
    with hardware.as_default():
        yield hardware


__all__ = [
    "CardState", "FakeCard", "FakeGPIO", "FakeHardware", "FakeMfrc522", "FakeSpiDev",
    "POWER_ON_VALUES", "board", "crc_a", "installed", "load_library", "with_crc",
]
