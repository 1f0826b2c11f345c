"""Badge id parsing: every accepted spelling reduces to one canonical form."""

import pytest
from hypothesis import given, strategies as st

from kiosk.badges import BadgeIdError, parse, to_decimal, to_simple_mfrc522


@pytest.mark.parametrize("text, expected", [
    ("04A1B2C3", "04A1B2C3"),
    ("04a1b2c3", "04A1B2C3"),
    ("0x04A1B2C3", "04A1B2C3"),
    ("0X04a1b2c3", "04A1B2C3"),
    ("04:A1:B2:C3", "04A1B2C3"),
    ("04-a1-b2-c3", "04A1B2C3"),
    ("04 A1 B2 C3", "04A1B2C3"),
    ("  04A1B2C3\n", "04A1B2C3"),
    ("04A1B2C3D4E580", "04A1B2C3D4E580"),
    ("04:a1:b2:c3:d4:e5:80", "04A1B2C3D4E580"),
    ("0102030405060708090A", "0102030405060708090A"),
    ("0x00000001", "00000001"),  # leading zero bytes survive
    ("00:00:00:01", "00000001"),
    ("0x12345678", "12345678"),  # an all-digit hex UID, made explicit
    ("12:34:56:78", "12345678"),
])
def test_hex_forms(text, expected):
    assert parse(text) == expected


def test_usb_decimal_little_endian_default():
    # UID 04 A1 B2 C3, first byte least significant: 0xC3B2A104
    assert parse("3283263748") == "04A1B2C3"
    assert parse(str(0xC3B2A104)) == "04A1B2C3"


def test_usb_decimal_big_endian_and_leading_zeros():
    assert parse("0077705923", "big") == "04A1B2C3"
    assert parse("0000000001", "big") == "00000001"
    assert parse("0000000001", "little") == "01000000"


def test_simple_mfrc522_number_with_checksum():
    uid = bytes.fromhex("04A1B2C3")
    bcc = 0x04 ^ 0xA1 ^ 0xB2 ^ 0xC3
    number = int.from_bytes(uid + bytes([bcc]), "big")
    assert parse(str(number)) == "04A1B2C3"
    assert to_simple_mfrc522("04A1B2C3") == number


def test_simple_mfrc522_bad_checksum_refused_with_hint():
    number = int.from_bytes(bytes.fromhex("04A1B2C3") + b"\x00", "big")
    with pytest.raises(BadgeIdError, match="checksum"):
        parse(str(number))
    with pytest.raises(BadgeIdError, match="0x"):
        parse("12345678")  # looks like hex, read as decimal: refused, not silently misread


def test_truncated_seven_byte_uid_refused():
    # SimpleMFRC522 on a 7-byte card: cascade tag 0x88 + 3 bytes
    uid = bytes.fromhex("8804A1B2")
    number = int.from_bytes(uid + bytes([0x88 ^ 0x04 ^ 0xA1 ^ 0xB2]), "big")
    with pytest.raises(BadgeIdError, match="cascade tag"):
        parse(str(number))
    with pytest.raises(BadgeIdError, match="cascade tag"):
        parse("8804A1B2")


@pytest.mark.parametrize("text, reason", [
    ("", "empty"), ("   ", "empty"), ("04A1B2C", "odd"), ("04A1B2", "4, 7 or 10 bytes"),
    ("04A1B2C3D4", "4, 7 or 10 bytes"), ("zz112233", "not hex"), ("04:A1:B2:C", "two digits"),
    ("04:A1B2:C3", "two digits"), ("0x", "not hex"), ("99999999999999", "too large"),
])
def test_invalid_input_refused_with_reason(text, reason):
    with pytest.raises(BadgeIdError, match=reason):
        parse(text)


def test_bad_byte_order_is_a_programming_error():
    with pytest.raises(ValueError):
        parse("04A1B2C3", "middle")


uids = st.sampled_from([4, 7, 10]).flatmap(lambda n: st.binary(min_size=n, max_size=n)).filter(
    lambda b: b[0] != 0x88)


@given(uids, st.sampled_from([":", "-", " ", ""]), st.booleans(), st.booleans())
def test_any_hex_spelling_round_trips(uid, sep, lower, prefix):
    text = sep.join(f"{b:02x}" if lower else f"{b:02X}" for b in uid)
    if prefix or (not sep and text.isdigit()):
        text = "0x" + text
    assert parse(text) == uid.hex().upper()


@given(st.binary(min_size=4, max_size=4).filter(lambda b: b[0] != 0x88), st.sampled_from(["little", "big"]))
def test_usb_decimal_round_trips(uid, order):
    canonical = uid.hex().upper()
    assert parse(to_decimal(canonical, order), order) == canonical


@given(st.binary(min_size=4, max_size=4).filter(lambda b: b[0] != 0x88 and int.from_bytes(b + b"\0", "big") >= 2**32))
def test_simple_mfrc522_round_trips(uid):
    canonical = uid.hex().upper()
    assert parse(str(to_simple_mfrc522(canonical))) == canonical
