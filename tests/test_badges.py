"""Badge id parsing: every accepted spelling reduces to one canonical form."""

import doctest
import unicodedata

import pytest
from hypothesis import example, given, settings, strategies as st

from kiosk import badges
from kiosk.badges import BadgeIdError, from_bytes, parse, to_decimal, to_simple_mfrc522


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
    ("12345678", "12345678"),  # ... or as the kiosk prints it: 8, 14 or 20 digits are hex
    ("04112233445566", "04112233445566"),
    ("00000000000000000001", "00000000000000000001"),
    ("99999999999999", "99999999999999"),
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
    with pytest.raises(BadgeIdError, match="8, 14 or 20 digits"):
        parse("123456789")  # 9 digits: neither hex nor a reader number; the message says what would be


def test_the_kiosks_own_spelling_is_accepted_back():
    """Issue 7: a 4-byte card 12345678 (2% of cards are all digits) was INVALID at every tap."""
    for canonical in ("12345678", "04112233445566", "00000000", "99999999"):
        assert parse(canonical) == canonical
        assert parse(from_bytes(bytes.fromhex(canonical))) == canonical


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
    ("04:A1B2:C3", "two digits"), ("0x", "not hex"), ("9999999999999", "too large"),
    ("1" * 16, "16 digits"), ("0x88123456", "cascade tag"),
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


# ---------------------------------------------------------------- one spelling rule that round-trips


MAX_INPUT = 64  # characters (issue 7)
HEX_DIGITS = (8, 14, 20)

canonical_uids = st.sampled_from([4, 7, 10]).flatmap(lambda n: st.binary(min_size=n, max_size=n)).filter(
    lambda b: b[0] != 0x88)


@given(canonical_uids)
@example(bytes.fromhex("12345678"))
@example(bytes.fromhex("00000000"))
@example(bytes.fromhex("04112233445566"))
@example(bytes.fromhex("99999999999999999999"))
def test_canonical_round_trips(uid):
    canonical = uid.hex().upper()
    assert from_bytes(uid) == canonical
    assert parse(canonical) == canonical
    assert parse(canonical.lower()) == canonical


def _simple(uid: int) -> int:
    """SimpleMFRC522's number for the 4-byte UID ``uid`` (as an int): UID * 256 + BCC."""
    data = uid.to_bytes(4, "big")
    return uid * 256 + (data[0] ^ data[1] ^ data[2] ^ data[3])


def test_decimal_forms_never_take_the_hex_lengths():
    """Why no decimal id is misread as hex (or as the other decimal), over the whole range.

    The reading of an all-digit string depends only on its length and on
    whether its value is below 2**32; both grow monotonically with the number.
    So the ends of each range decide for all of it:

    - wedge numbers: 0 .. 2**32 - 1, always written with exactly 10 digits;
    - SimpleMFRC522 numbers of UIDs whose first byte is not 00: UID * 256 + BCC
      runs from _simple(0x01000000) to _simple(0xFFFFFFFF), that is 10 to 13
      digits, never below 2**32: never 8/14/20 digits, never a wedge number.
    """
    assert len(f"{0:010d}") == len(f"{2**32 - 1:010d}") == 10
    low, high = _simple(0x01000000), _simple(0xFFFFFFFF)
    assert low >= 2**32 and len(str(low)) == 10 and len(str(high)) == 13 and high < 2**40
    assert all(_simple(u) < _simple(u + 1) for u in (0x01000000, 0x01FFFFFF, 0xFFFFFFFE))  # monotonic
    # Every first byte at the ends of its range: the number is read back as that UID.
    for first in range(1, 256):
        if first == 0x88:
            continue
        for rest in (0x000000, 0x000001, 0x7F7F7F, 0xFFFFFE, 0xFFFFFF):
            uid = first << 24 | rest
            canonical = uid.to_bytes(4, "big").hex().upper()
            number = str(_simple(uid))
            assert len(number) not in HEX_DIGITS and 10 <= len(number) <= 13
            assert parse(number) == canonical
            for order in ("little", "big"):
                assert parse(to_decimal(canonical, order), order) == canonical


@given(st.integers(0x01000000, 0xFFFFFFFF).filter(lambda u: u >> 24 != 0x88), st.sampled_from(["little", "big"]))
def test_decimal_forms_round_trip_anywhere_in_the_range(uid, order):
    canonical = uid.to_bytes(4, "big").hex().upper()
    assert parse(str(_simple(uid)), order) == canonical
    assert parse(to_decimal(canonical, order), order) == canonical


def test_uids_starting_with_00_are_the_documented_exception():
    """For a UID starting with 00 SimpleMFRC522's number is below 2**32: 8 digits read as hex, 10 as a
    wedge number (as the README says); zero-padded to 13 digits it is read right, for every such UID."""
    eight = _simple(0x00010203)  # 16909056
    assert len(str(eight)) == 8 and parse(str(eight)) == "16909056"
    ten = _simple(0x00FFFFFF)
    assert len(str(ten)) == 10 and parse(str(ten)) == to_decimal_reading(ten)
    assert parse(f"{eight:013d}") == "00010203"
    # Exhaustively: every UID whose SimpleMFRC522 number has 8 digits (00 00 98 97 .. 00 05 F5 E0).
    first, last = -(-10**7 // 256), (10**8 - 1) // 256
    assert len(str(_simple(first - 1))) == 7 and len(str(_simple(last + 1))) == 9
    for uid in range(first, last + 1, 97):
        assert parse(f"{_simple(uid):013d}") == uid.to_bytes(4, "big").hex().upper()


def to_decimal_reading(number: int) -> str:
    return number.to_bytes(4, "big")[::-1].hex().upper()


# ---------------------------------------------------------------- junk: always a BadgeIdError


@pytest.mark.parametrize("junk", ["²", "①", "🄄", "３２８３２６３７４８", "0x０４A1B2C3", "04:A1:B2:Ｃ3", "١٢٣٤٥٦٧٨",
                                  "04A1B2C3\u3000", "\u200b04A1B2C3", "04 A1 B2 C3\u00a0"])
def test_only_ascii_digits_and_letters_count(junk):
    with pytest.raises(BadgeIdError, match=r"character \d+ is U\+[0-9A-F]{4,}.*ASCII digits 0-9"):
        parse(junk)


def test_the_message_names_the_character():
    with pytest.raises(BadgeIdError) as info:
        parse("３２８３２６３７４８")
    assert "character 1 is U+FF13 FULLWIDTH DIGIT THREE" in str(info.value)


@pytest.mark.parametrize("size", [MAX_INPUT + 1, 4_300, 5_000, 1_000_000])
def test_long_input_refused_without_conversion(size):
    """Python's int() refuses more than 4,300 digits (ValueError): long input never gets that far."""
    with pytest.raises(BadgeIdError) as info:
        parse("1" * size)
    message = str(info.value)
    assert f"{size} characters" in message and f"at most {MAX_INPUT}" in message
    assert len(message) < 200


def test_refused_input_is_echoed_escaped_and_cut_short():
    junk = "04A1\x1b[2J\x1b]0;owned\x07" * 20
    with pytest.raises(BadgeIdError) as info:
        parse(junk)
    message = str(info.value)
    assert "\x1b" not in message and "\x07" not in message and "\\x1b" in message
    assert len(message) < 200 and f"({len(junk)} characters)" in message
    with pytest.raises(BadgeIdError) as info:
        parse("04\x1b[2J")  # short: shown whole, still escaped
    assert "\x1b" not in str(info.value) and "04\\x1b[2J" in str(info.value)


any_text = st.one_of(
    st.text(st.characters(exclude_categories=[])),  # every category, surrogates included
    st.text(st.characters(categories=["N"]), max_size=30),  # digits and numbers of every script
    st.text("0123456789abcdefABCDEFxX:- \t\n", max_size=80),
    st.text(st.sampled_from("0123456789²①３٣"), max_size=25),
)


@settings(max_examples=500)
@given(any_text)
@example("1" * 4301)
@example("9" * 64)
@example("0x" + "1" * 62)
@example("\udcff" * 8)
@example("\x1b[2J" * 4_000_000)  # 16 MB
@example("٣" * 10_000_000)
def test_parse_never_raises_anything_but_badge_id_error(text):
    try:
        result = parse(text)
    except BadgeIdError as exc:
        assert len(str(exc)) < 400
    else:
        assert len(result) in HEX_DIGITS and result == result.upper()
        assert parse(result) == result  # whatever is accepted prints in a form that is accepted back


def test_every_unicode_category_is_refused_cleanly():
    """The first 40 characters beyond ASCII of every category, and every 211th code point."""
    sample: dict[str, list[str]] = {}
    for code in range(0x80, 0x110000):
        ch = chr(code)
        found = sample.setdefault(unicodedata.category(ch), [])
        if len(found) < 40 or code % 211 == 0:
            found.append(ch)
    assert len(sample) == 30  # every general category there is
    for chars in sample.values():
        for ch in chars:
            for junk in ("04A1B2" + ch, ch * 8, ch):
                with pytest.raises(BadgeIdError):
                    parse(junk)


def test_from_bytes_refuses_wrong_lengths_and_shows_little():
    with pytest.raises(BadgeIdError, match="4, 7 or 10 bytes, not 5"):
        from_bytes(b"\x01\x02\x03\x04\x05")
    with pytest.raises(BadgeIdError) as info:
        from_bytes(bytes(1_000_000))
    assert len(str(info.value)) < 200


def test_docstring_examples():
    assert doctest.testmod(badges).failed == 0
