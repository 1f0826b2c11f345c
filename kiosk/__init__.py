"""kiosk: an RFID clock-in kiosk daemon for the Raspberry Pi, delivering to TimeTrack."""

__version__ = "0.1.0"
