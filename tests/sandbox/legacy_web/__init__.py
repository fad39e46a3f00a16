"""A legacy order-entry web app (server-rendered HTML, frames, 2003 style) on 127.0.0.1.

Its quirks, each one a thing a web bot has to cope with:

- login with a server-side session (cookie ``LEGACYSID``) that expires after
  ``session_seconds`` idle; the next page is the login page with "Your session
  has expired. Please log in again." (the login page breaks out of frames);
- a frameset: frame ``menu`` on top (links open in frame ``main``);
- generated element ids (``f_`` + random hex) and, on the order form,
  generated field names, new on every page load; the ``<label>`` texts
  ("Reference", "Customer", "Postal code", "Amount") stay the same;
- a slow customer autocomplete: it listens to key presses (setting the
  field's value without typing shows no list), asks the server after two
  letters, and the answer comes ``suggest_delay`` seconds later; only a
  customer chosen from the list is accepted ("Please choose a customer from
  the list");
- ``window.confirm("Save order?")`` before the form is sent;
- red validation errors above the form, e.g. "Postal code 1234 is not valid"
  (five digits), and no order saved;
- "System busy, try again later." instead of saving, for the next ``n`` saves
  after :meth:`LegacyWebApp.busy_next` (HTTP 200 by default, as a client must
  read the page to know; ``busy_status=503`` to change it);
- no unique check on the external reference: sending a form twice makes two
  orders, so a careful client searches "Find order" by reference first;
- a paginated customer table (57 customers, 10 a page, "Next >" links) and a
  CSV export (``;``-separated, decimal comma, a file download).

Run it by hand with ``python -m tests.sandbox.legacy_web --port 8100``.
"""

from tests.sandbox.legacy_web.app import Counts, LegacyWebApp, Order
from tests.sandbox.legacy_web.customers import CUSTOMERS, Customer

__all__ = ["CUSTOMERS", "Counts", "Customer", "LegacyWebApp", "Order"]
