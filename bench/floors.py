"""The floors every tap figure is set against, as processes answering stdin lines like a kiosk.

- ``echo``: reads a line, writes it back. What a pipe round trip through a
  Python process costs on this machine, now: the benchmark's own overhead and
  the machine's scheduling noise.
- ``commit PATH``: reads a line and does the durable write a tap does, with
  nothing else: one ``BEGIN IMMEDIATE`` transaction on a WAL database with
  ``synchronous=FULL`` that reads the badge, writes the open clock-in, an
  audit line and a counter (JSON values in one key/value table, as the store
  keeps them), ``COMMIT`` (fsync), then answers. Python's sqlite3 straight,
  no threads, no sqlitedict: the least a durable tap can cost here.

    python -m bench.floors echo
    python -m bench.floors commit /tmp/floor.sqlite
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time


def echo() -> None:
    for line in sys.stdin:
        sys.stdout.write(line)
        sys.stdout.flush()


def commit(path: str) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute('CREATE TABLE IF NOT EXISTS kiosk (key TEXT PRIMARY KEY, value BLOB)')
    seq = 0
    for line in sys.stdin:
        uid = line.strip()
        db.execute("BEGIN IMMEDIATE")
        row = db.execute("SELECT value FROM kiosk WHERE key = ?", (f"badge:{uid}",)).fetchone()
        username = json.loads(row[0])["username"] if row else uid
        seq += 1
        at = time.time()
        db.execute("INSERT OR REPLACE INTO kiosk VALUES (?, ?)",
                   (f"open:{username}", json.dumps({"username": username, "since": at, "uid": uid})))
        db.execute("INSERT OR REPLACE INTO kiosk VALUES (?, ?)",
                   (f"audit:{seq:012d}", json.dumps({"id": seq, "at": at, "kind": "clock_in", "uid": uid})))
        db.execute("INSERT OR REPLACE INTO kiosk VALUES (?, ?)", ("counter:taps", json.dumps(seq)))
        db.execute("COMMIT")
        sys.stdout.write(f"IN  {username}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    if sys.argv[1:2] == ["echo"]:
        echo()
    elif sys.argv[1:2] == ["commit"] and len(sys.argv) == 3:
        commit(sys.argv[2])
    else:
        sys.exit("usage: python -m bench.floors echo | commit PATH")
