"""Every screen the door display shows, drawn through luma's own dummy device and compared with
the reference pictures in tests/display/ (the same pictures the README shows).

The comparison is pixel-exact when the pictures come from the renderer that made the
references (the same Pillow, FreeType and DejaVu font files, recorded in
tests/display/renderer.json): text is drawn 1-bit with Pillow's BASIC layout, so nothing else
varies. With another FreeType or font version a glyph may move by a pixel; the comparison then
allows 3% of the pixels to differ and warns that the references should be regenerated:

    KIOSK_UPDATE_SCREENS=1 .venv/bin/python -m pytest tests/test_display_screens.py
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import pytest

pytest.importorskip("luma.core", reason="the display extra (luma) is not installed: pip install -e '.[display]'")

from luma.core.device import dummy  # noqa: E402
from luma.core.render import canvas  # noqa: E402
from PIL import Image, ImageChops, features  # noqa: E402

from kiosk.feedback import Health, Status, screens  # noqa: E402
from kiosk.feedback.display import to_device_mode  # noqa: E402
from kiosk.rules import TapKind  # noqa: E402

from .display_helpers import AT, UTC, FakeClock, display, outcome  # noqa: E402

REFS = Path(__file__).parent / "display"
UPDATE = os.environ.get("KIOSK_UPDATE_SCREENS") == "1"
TOLERANCE = 0.03


def renderer() -> dict:
    fonts = screens.default_fonts()
    missing = fonts.missing
    assert not missing, f"DejaVu fonts not found ({missing}): apt-get install fonts-dejavu-core (deploy/build-deps.sh)"
    return {"pillow": Image.__version__, "freetype": features.version("freetype2"),
            "fonts": {face: {"file": Path(path).name, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}
                      for face, path in sorted(fonts.paths.items())}}


@pytest.fixture(scope="module")
def same_renderer() -> bool:
    record = REFS / "renderer.json"
    now = renderer()
    if UPDATE:
        REFS.mkdir(exist_ok=True)
        record.write_text(json.dumps(now, indent=2, sort_keys=True) + "\n")
        return True
    return json.loads(record.read_text()) == now


def check(image: Image.Image, name: str, same_renderer: bool) -> None:
    path = REFS / f"{name}.png"
    if UPDATE:
        image.save(path)
        return
    assert path.exists(), f"{path} missing: KIOSK_UPDATE_SCREENS=1 makes it"
    ref = Image.open(path)
    ref.load()
    assert ref.size == image.size and ref.mode == image.mode, f"{name}: {ref.size} {ref.mode} vs {image.size} {image.mode}"
    diff = ImageChops.difference(ref.convert("RGB"), image.convert("RGB")).convert("L")
    changed = sum(diff.histogram()[1:])
    if same_renderer:
        assert changed == 0, f"{name}: {changed} pixels differ from {path} (box {diff.getbbox()})"
    else:
        warnings.warn(f"{name}: another Pillow/FreeType/font than the references': {changed} pixels differ; "
                      "regenerate with KIOSK_UPDATE_SCREENS=1")
        assert changed <= TOLERANCE * image.size[0] * image.size[1], f"{name}: {changed} pixels differ"


def shown(feedback) -> Image.Image:
    """Let the display draw once; what luma's dummy device holds."""
    feedback.step()
    return feedback.device.image


TAPS = {
    "in": outcome(TapKind.CLOCK_IN),
    "out": outcome(TapKind.CLOCK_OUT),
    "too-soon": outcome(TapKind.TOO_SOON),
    "unknown": outcome(TapKind.UNKNOWN, None, "04D5E6F7A8B9C0"),
    "unknown-10-byte": outcome(TapKind.UNKNOWN, None, "04D5E6F7A8B9C0D1E2F3"),
    "disabled": outcome(TapKind.DISABLED, "carla", "1A2B3C4D"),
    "error": outcome(TapKind.ERROR, message="store error: disk full"),
    "invalid": outcome(TapKind.INVALID, None, "xyz"),
    "in-greek": outcome(TapKind.CLOCK_IN, "Ζωή"),
    "in-cyrillic": outcome(TapKind.CLOCK_IN, "Алексей"),
    "in-accents": outcome(TapKind.CLOCK_IN, "Ångström Éva"),
    "in-cjk": outcome(TapKind.CLOCK_IN, "山田太郎"),  # nothing DejaVu can draw: the badge id instead
    "in-mixed": outcome(TapKind.CLOCK_IN, "José 山田"),
}


@pytest.mark.parametrize("name", TAPS)
def test_tap_screens(name, same_renderer):
    feedback = display()
    feedback.show(TAPS[name])
    check(shown(feedback), name, same_renderer)


@pytest.mark.parametrize("name, status", [
    ("idle", Status()),
    ("idle-fault", Status(Health.FAULT, "reader not answering", problems=("reader not answering",))),
    ("idle-offline", Status(Health.BACKLOG, "entries waiting for delivery", queued=12)),
])
def test_idle_screens(name, status, same_renderer):
    feedback = display()
    feedback.set_status(status)
    check(shown(feedback), name, same_renderer)


def test_enrolment_screen(same_renderer):
    feedback = display()
    feedback.enrolling("anna")
    check(shown(feedback), "enrol", same_renderer)


def test_a_long_name_steps_through_whole_characters(same_renderer):
    clock = FakeClock()
    feedback = display(mono=clock)
    name = "Maximiliane Wolfeschlegelsteinhausen"
    feedback.show(outcome(TapKind.CLOCK_OUT, name))
    frames = []
    for _ in range(200):
        image = shown(feedback)
        if not frames or image.tobytes() != frames[-1].tobytes():
            frames.append(image.copy())
        clock.advance(screens.SCROLL_SECONDS)
        if feedback.current()[0].kind == "idle":
            break
    assert len(frames) > 10  # it scrolled, one character a step, and then the idle screen came back
    assert feedback.current()[0].kind == "idle"
    check(frames[0], "out-long-name-first", same_renderer)
    check(frames[-1], "out-long-name-last", same_renderer)


def test_colour_lcd_screen(same_renderer):
    device = dummy(width=160, height=128, mode="RGB")
    feedback = display(device, driver="st7735", width=160, height=128)
    feedback.show(outcome(TapKind.CLOCK_OUT))
    check(shown(feedback), "out-st7735-160x128", same_renderer)


def test_screens_render_through_luma_canvas_as_drawn():
    """luma's own canvas on the dummy device shows the rendered picture unchanged, in mode 1 and RGB."""
    screen = screens.for_outcome(TAPS["out"], tz=UTC)
    for mode in ("1", "RGB"):
        device = dummy(width=128, height=64, mode=mode)
        image = to_device_mode(screens.Renderer((128, 64)).render(screen), mode, screen.kind)
        with canvas(device, background=image):
            pass
        assert device.image.tobytes() == image.tobytes()


def test_readme_shows_every_reference_picture():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for name in ("idle", "idle-fault", "in", "out", "too-soon", "unknown", "disabled", "error", "enrol"):
        assert f"tests/display/{name}.png" in readme, name


def test_idle_screen_time_and_date_come_from_the_clock():
    feedback = display()
    screen = feedback.current()[0]
    assert (screen.clock, screen.footer, screen.headline) == ("16:31", AT.strftime("%a %d %b"), "entrance")
    twelve = display(clock="12h")
    assert twelve.current()[0].clock == "4:31 PM"


def test_the_comparison_sees_a_single_pixel(same_renderer):
    if UPDATE:
        pytest.skip("regenerating the references")
    if not same_renderer:
        pytest.skip("the references come from another renderer: the comparison is tolerant here")
    image = Image.open(REFS / "in.png")
    image.load()
    image.putpixel((0, 63), 1 - image.getpixel((0, 63)))
    with pytest.raises(AssertionError, match="1 pixels differ"):
        check(image, "in", same_renderer)
