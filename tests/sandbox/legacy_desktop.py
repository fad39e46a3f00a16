"""A legacy order-entry desktop program (Tk), for desktop bots to drive under an X display.

Run it as ``python -m tests.sandbox.legacy_desktop --records orders.jsonl``
(``DISPLAY`` set). Its screens:

- **Login** (title "Order Entry — Login"): "User name", "Password", button
  "Log in". Wrong credentials open the error box "Invalid user name or
  password."
- **New order** (title "Order Entry — New order"): "Reference", "Customer",
  "Postal code" (five digits), "Amount" (``1234,50`` or ``1234.50``), buttons
  "Save" and "Find". A bad field opens the error box, e.g. "Postal code 1234
  is not valid", and nothing is saved; after OK the cursor is back in that
  field. A good order is appended to the ``--records`` file as one JSON line,
  the form is emptied, the label under it says "Saved order 17" and the
  window's title becomes "Order Entry — Order 17 saved". "Find" looks the
  reference up: the title becomes "Order Entry — Order 17 found" or "Order
  Entry — No order PO-1" (the label says the same). A bot reads the title,
  which X keeps as text, where the label is only pixels.
- **Error box** (title "Error"): a modal grey window with a dark-blue
  "Error" caption, the message in red and "OK" (Return or Escape close it
  too); the form below takes no input meanwhile.

Return in the password field logs in; Return in "Amount" or on "Save" saves.
``--save-delay`` makes saving freeze the window that many seconds, as a slow
host would. The program notes each thing a person would see in the
``--log`` file ("screen New order", "error Postal code 1234 is not valid",
"saved order 1"), so a test can check what happened without reading pixels.

The geometry never changes: the window is 640x480 at +0+0 and the error box
320x140 at +160+170 (without a window manager, exactly there on the
screen); every widget sits at the place in :data:`LAYOUT`, so a bot may
click by coordinates (:func:`center`).
"""

from __future__ import annotations

import argparse
import json
import re
import time
import tkinter as tk
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

APP = "Order Entry"
WINDOW = (640, 480, 0, 0)  # width, height, x, y
ERROR_BOX = (320, 140, 160, 170)
FONT = ("DejaVu Sans", 11)
#: Each widget's (x, y, width, height) in the window (the error box's in the box).
LAYOUT: dict[str, tuple[int, int, int, int]] = {
    "user": (240, 150, 240, 28),
    "password": (240, 200, 240, 28),
    "login": (240, 260, 120, 32),
    "reference": (240, 90, 260, 28),
    "customer": (240, 140, 260, 28),
    "postal_code": (240, 190, 260, 28),
    "amount": (240, 240, 260, 28),
    "save": (240, 300, 120, 32),
    "find": (380, 300, 120, 32),
    "result": (40, 380, 560, 28),
    "error_caption": (0, 0, 320, 26),
    "error_message": (10, 34, 300, 50),
    "error_ok": (120, 96, 80, 30),
}
LABELS = {
    "user": "User name",
    "password": "Password",
    "reference": "Reference",
    "customer": "Customer",
    "postal_code": "Postal code",
    "amount": "Amount",
}
_POSTAL = re.compile(r"\d{5}")
_AMOUNT = re.compile(r"\d{1,9}(?:[.,]\d{1,2})?")


def center(name: str) -> tuple[int, int]:
    """Where on the screen to click the widget ``name`` (window at +0+0, no decorations)."""
    x, y, w, h = LAYOUT[name]
    if name.startswith("error_"):
        x, y = x + ERROR_BOX[2], y + ERROR_BOX[3]
    else:
        x, y = x + WINDOW[2], y + WINDOW[3]
    return x + w // 2, y + h // 2


def check(values: dict[str, str]) -> tuple[str, str] | None:
    """The first bad field and its message, or ``None`` when the order may be saved."""
    if not values["reference"]:
        return "reference", "Reference is required"
    if not values["customer"]:
        return "customer", "Customer is required"
    if not _POSTAL.fullmatch(values["postal_code"]):
        return "postal_code", f"Postal code {values['postal_code']} is not valid"
    amount = values["amount"]
    if not (_AMOUNT.fullmatch(amount) and Decimal(amount.replace(",", ".")) > 0):
        return "amount", f"Amount {amount} is not valid"
    return None


def next_number(records: Path) -> int:
    """One more than the last order number in the records file (1 for none)."""
    if not records.exists():
        return 1
    lines = [line for line in records.read_text(encoding="utf-8").splitlines() if line.strip()]
    return int(json.loads(lines[-1])["number"]) + 1 if lines else 1


class OrderEntry:
    """The program's one window and its two screens."""

    def __init__(
        self,
        root: tk.Tk,
        records: Path,
        *,
        user: str,
        password: str,
        log: Path | None = None,
        save_delay: float = 0.0,
    ) -> None:
        self.root, self.records, self.log_path = root, records, log
        self.user, self.password, self.save_delay = user, password, save_delay
        width, height, x, y = WINDOW
        root.geometry(f"{width}x{height}+{x}+{y}")
        root.resizable(False, False)
        root.option_add("*Font", FONT)
        self.entries: dict[str, tk.Entry] = {}
        self.screen = tk.Frame(root)
        self.error: tk.Toplevel | None = None
        self.show_login()

    # ---------------------------------------------------------------- screens
    def _new_screen(self, title: str) -> tk.Frame:
        self.screen.destroy()
        self.screen = tk.Frame(self.root, width=WINDOW[0], height=WINDOW[1])
        self.screen.place(x=0, y=0, width=WINDOW[0], height=WINDOW[1])
        self.entries = {}
        self.root.title(f"{APP} — {title}")
        tk.Label(self.screen, text=title, font=(FONT[0], 14, "bold"), anchor="w").place(
            x=40, y=30, width=560, height=30
        )
        self.note(f"screen {title}")
        return self.screen

    def _field(self, frame: tk.Frame, name: str, *, secret: bool = False) -> tk.Entry:
        x, y, w, h = LAYOUT[name]
        tk.Label(frame, text=LABELS[name] + ":", anchor="e").place(
            x=40, y=y, width=x - 50, height=h
        )
        entry = tk.Entry(frame, show="*" if secret else "")
        entry.place(x=x, y=y, width=w, height=h)
        self.entries[name] = entry
        return entry

    def _button(
        self, frame: tk.Frame, name: str, text: str, command: Callable[[], None]
    ) -> tk.Button:
        x, y, w, h = LAYOUT[name]
        button = tk.Button(frame, text=text, command=command)
        button.place(x=x, y=y, width=w, height=h)
        button.bind("<Return>", lambda _e: button.invoke())
        return button

    def show_login(self) -> None:
        frame = self._new_screen("Login")
        self._field(frame, "user")
        self._field(frame, "password", secret=True).bind("<Return>", lambda _e: self.log_in())
        self._button(frame, "login", "Log in", self.log_in)
        self.focus("user")

    def show_form(self) -> None:
        frame = self._new_screen("New order")
        for name in ("reference", "customer", "postal_code"):
            self._field(frame, name)
        self._field(frame, "amount").bind("<Return>", lambda _e: self.save())
        self._button(frame, "save", "Save", self.save)
        self._button(frame, "find", "Find", self.find)
        x, y, w, h = LAYOUT["result"]
        self.result = tk.Label(frame, text="", anchor="w", fg="#006600")
        self.result.place(x=x, y=y, width=w, height=h)
        self.focus("reference")

    # ---------------------------------------------------------------- actions
    def log_in(self) -> None:
        if self.error is not None:
            return
        user, password = self.entries["user"].get(), self.entries["password"].get()
        if (user, password) != (self.user, self.password):
            self.entries["password"].delete(0, tk.END)
            self.show_error("Invalid user name or password.", "password")
            return
        self.note("logged in")
        self.show_form()

    def save(self) -> None:
        if self.error is not None:
            return
        values = {name: self.entries[name].get().strip() for name in LABELS if name in self.entries}
        bad = check(values)
        if bad is not None:
            self.show_error(bad[1], bad[0])
            return
        self.result.configure(text="Saving...")
        self.root.update_idletasks()
        time.sleep(self.save_delay)  # the window freezes, as it did while the host worked
        number = next_number(self.records)
        record = dict(values, number=number, user=self.user)
        record["amount"] = f"{Decimal(values['amount'].replace(',', '.')):.2f}"
        record["saved_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        with self.records.open("a", encoding="utf-8") as file:
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
        for entry in self.entries.values():
            entry.delete(0, tk.END)
        self.result.configure(text=f"Saved order {number}")
        self.root.title(f"{APP} — Order {number} saved")
        self.root.update_idletasks()
        self.note(f"saved order {number}")
        self.focus("reference")

    def find(self) -> None:
        """Look the reference up among the saved orders; the title and the label say what."""
        if self.error is not None:
            return
        reference = self.entries["reference"].get().strip()
        if not reference:
            self.show_error("Reference is required", "reference")
            return
        number = None
        if self.records.exists():
            for line in self.records.read_text(encoding="utf-8").splitlines():
                record = json.loads(line) if line.strip() else {}
                if record.get("reference") == reference:
                    number = int(record["number"])
        if number is None:
            self.result.configure(text=f"No order {reference}")
            self.root.title(f"{APP} — No order {reference}")
            self.note(f"not found {reference}")
        else:
            self.result.configure(text=f"Order {number} has reference {reference}")
            self.root.title(f"{APP} — Order {number} found")
            self.note(f"found order {number}")
        self.focus("reference")

    def show_error(self, message: str, back_to: str) -> None:
        """The modal error box; after OK the cursor goes back to the field ``back_to``."""
        box = self.error = tk.Toplevel(self.root)
        width, height, x, y = ERROR_BOX
        box.geometry(f"{width}x{height}+{x}+{y}")
        box.resizable(False, False)
        box.title("Error")
        box.transient(self.root)
        box.configure(borderwidth=2, relief="raised", background="#C0C0C0")
        x, y, w, h = LAYOUT["error_caption"]
        caption = tk.Label(box, text=" Error", anchor="w", fg="#FFFFFF", bg="#000080")
        caption.place(x=x, y=y, width=w - 4, height=h)
        x, y, w, h = LAYOUT["error_message"]
        tk.Label(box, text=message, fg="#CC0000", bg="#C0C0C0", wraplength=w).place(
            x=x, y=y, width=w, height=h
        )
        x, y, w, h = LAYOUT["error_ok"]

        def close(_event: object = None) -> None:
            box.grab_release()
            box.destroy()
            self.error = None
            self.note("error closed")
            self.focus(back_to)

        ok = tk.Button(box, text="OK", command=close)
        ok.place(x=x, y=y, width=w, height=h)
        box.bind("<Return>", close)
        box.bind("<Escape>", close)
        box.protocol("WM_DELETE_WINDOW", close)
        box.wait_visibility()
        box.grab_set()
        ok.focus_force()
        self.note(f"error {message}")

    # ----------------------------------------------------------------- helpers
    def focus(self, name: str) -> None:
        entry = self.entries.get(name)
        if entry is not None:
            self.root.after_idle(entry.focus_force)

    def note(self, line: str) -> None:
        if self.log_path is not None:
            with self.log_path.open("a", encoding="utf-8") as file:
                file.write(line + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.sandbox.legacy_desktop")
    parser.add_argument("--records", type=Path, required=True, help="JSON lines file of orders")
    parser.add_argument("--user", default="clerk")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--log", type=Path, help="file noting each screen, error and save")
    parser.add_argument("--save-delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    root = tk.Tk(className="OrderEntry")
    OrderEntry(
        root,
        args.records,
        user=args.user,
        password=args.password,
        log=args.log,
        save_delay=args.save_delay,
    )
    root.mainloop()


if __name__ == "__main__":
    main()
