"""The HTML of the order-entry app, drawn the way it was in 2003.

HTML 4.01 with tables for layout, ``<font>`` tags, inline event handlers and
a frameset. Every input gets a fresh ``id`` (``f_`` and random hex) on every
page load, and the order form's field names are random too; only the
visible ``<label>`` texts stay the same. Nothing is loaded from outside the
app.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from html import escape

from tests.sandbox.legacy_web.customers import Customer

DOCTYPE = '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN">'
TITLE = "Order Entry 2.3"
#: The order form's fields, by the label a person sees.
FIELDS = [("reference", "Reference"), ("customer", "Customer"), ("postal_code", "Postal code"), ("amount", "Amount")]  # fmt: skip


def new_id() -> str:
    """A generated element id, different on every page load."""
    return "f_" + secrets.token_hex(5)


def page(title: str, body: str, *, head: str = "") -> str:
    return f"""{DOCTYPE}
<html>
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
<title>{escape(title)} - {TITLE}</title>
{head}
</head>
<body bgcolor="#FFFFFF" text="#000000" link="#000080" vlink="#000080">
<font face="Verdana, Arial, Helvetica" size="2">
{body}
</font>
</body>
</html>
"""


def heading(text: str) -> str:
    return (
        '<table width="100%" cellpadding="3" cellspacing="0" border="0"><tr>'
        f'<td bgcolor="#336699"><font color="#FFFFFF"><b>{escape(text)}</b></font></td>'
        "</tr></table><br>"
    )


def errors_block(errors: Iterable[str]) -> str:
    items = "".join(f"<li>{escape(e)}</li>" for e in errors)
    if not items:
        return ""
    return f'<font color="#CC0000" class="error"><b><ul>{items}</ul></b></font>'


def text_row(label: str, name: str, value: str = "", *, kind: str = "text", extra: str = "") -> str:
    fid = new_id()
    return (
        f'<tr><td align="right"><label for="{fid}">{escape(label)}</label></td>'
        f'<td><input type="{kind}" id="{fid}" name="{escape(name)}" value="{escape(value)}"'
        f' size="30"{extra}></td></tr>'
    )


# ----------------------------------------------------------------- login
def login(message: str = "", error: str = "") -> str:
    # An old app breaks out of frames so the login page always fills the window.
    head = "<script type=\"text/javascript\">if (top != self) top.location.href = self.location.href;</script>"  # fmt: skip
    notice = f'<p><font color="#996600"><b>{escape(message)}</b></font></p>' if message else ""
    body = f"""{heading("Order Entry System - Log in")}
{notice}{errors_block([error] if error else [])}
<form method="post" action="/j_security_check">
<table border="0" cellpadding="3">
{text_row("User name", "j_username")}
{text_row("Password", "j_password", kind="password")}
<tr><td></td><td><input type="submit" value="Log in"></td></tr>
</table>
</form>"""
    return page("Log in", body, head=head)


def frameset() -> str:
    return f"""<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Frameset//EN">
<html>
<head><meta http-equiv="Content-Type" content="text/html; charset=utf-8"><title>{TITLE}</title></head>
<frameset rows="70,*" border="1">
<frame name="menu" src="/menu" scrolling="no" noresize>
<frame name="main" src="/welcome">
<noframes><body>This application needs a browser that can show frames.</body></noframes>
</frameset>
</html>
"""


def menu(user: str) -> str:
    links = [
        ("/order/new", "New order", "main"),
        ("/customers", "Customers", "main"),
        ("/order/find", "Find order", "main"),
        ("/orders/export.csv", "Export orders (CSV)", "main"),
        ("/logout", "Log out", "_top"),
    ]
    cells = " | ".join(f'<a href="{h}" target="{t}">{escape(text)}</a>' for h, text, t in links)
    body = f"""<table width="100%" bgcolor="#DDDDDD" cellpadding="4"><tr>
<td><b>{TITLE}</b> &nbsp; {cells}</td>
<td align="right">User: {escape(user)}</td></tr></table>"""
    return page("Menu", body)


def welcome(user: str) -> str:
    return page("Welcome", heading("Welcome") + f"<p>Good day, {escape(user)}. Choose from the menu above.</p>")  # fmt: skip


# ------------------------------------------------------------ order form
def order_form(token: str, names: dict[str, str], values: dict[str, str], errors: list[str]) -> str:
    """``names`` maps each field (and ``customer_number``) to its generated name."""
    number_id = new_id()
    customer_extra = (
        f' autocomplete="off" onkeyup="ac_keyup(event, this, \'{number_id}\')"'
        f" onkeydown=\"return ac_keydown(event, this, '{number_id}')\""
        ' onblur="ac_hide_later()"'
    )
    rows = []
    for key, label in FIELDS:
        extra = customer_extra if key == "customer" else ""
        rows.append(text_row(label, names[key], values.get(key, ""), extra=extra))
    body = f"""{heading("New order")}
{errors_block(errors)}
<form method="post" action="/order/save" onsubmit="return confirm('Save order?')">
<input type="hidden" name="__FORM" value="{token}">
<input type="hidden" id="{number_id}" name="{names["customer_number"]}" value="{escape(values.get("customer_number", ""))}">
<table border="0" cellpadding="3">
{"".join(rows)}
<tr><td></td><td><font size="1">Postal code: 5 digits. Amount in EUR, e.g. 1234,50</font></td></tr>
<tr><td></td><td><input type="submit" value="Save"> <input type="reset" value="Clear"></td></tr>
</table>
</form>"""
    head = '<script type="text/javascript" src="/static/autocomplete.js"></script>'
    return page("New order", body, head=head)


def saved(number: int, reference: str) -> str:
    body = f"""{heading("Order saved")}
<p><b>Order {number} saved.</b></p>
<p>Reference: <b>{escape(reference)}</b></p>
<p><a href="/order/new">New order</a></p>"""
    return page("Order saved", body)


def busy() -> str:
    body = f"""{heading("System busy")}
<p><font color="#CC0000"><b>System busy, try again later.</b></font></p>
<p>The host system did not answer in time. Your order was not saved.</p>"""
    return page("System busy", body)


def form_expired() -> str:
    body = heading("New order") + errors_block(
        ["This form has expired. Please open New order again."]
    )
    return page("New order", body + '<p><a href="/order/new">New order</a></p>')


# -------------------------------------------------------------- customers
def customers(rows: list[Customer], page_no: int, pages: int, total: int) -> str:
    lines = "".join(
        f"<tr><td>{c.number}</td><td>{escape(c.name)}</td><td>{c.postal_code}</td>"
        f"<td>{escape(c.city)}</td></tr>"
        for c in rows
    )
    nav = []
    if page_no > 1:
        nav.append(f'<a href="/customers?page={page_no - 1}">&lt; Previous</a>')
    nav.append(f"Page {page_no} of {pages} ({total} customers)")
    if page_no < pages:
        nav.append(f'<a href="/customers?page={page_no + 1}">Next &gt;</a>')
    body = f"""{heading("Customers")}
<table border="1" cellpadding="3" cellspacing="0" id="{new_id()}">
<tr bgcolor="#CCCCCC"><th>Customer no.</th><th>Name</th><th>Postal code</th><th>City</th></tr>
{lines}
</table>
<p>{" &nbsp; ".join(nav)}</p>"""
    return page("Customers", body)


# ------------------------------------------------------------------ search
def find(reference: str, orders: list | None) -> str:
    """``orders`` is ``None`` before a search, else the orders found."""
    result = ""
    if orders is not None and not orders:
        result = f"<p>No order found for reference <b>{escape(reference)}</b>.</p>"
    elif orders:
        lines = "".join(
            f"<tr><td>{o.number}</td><td>{escape(o.reference)}</td><td>{escape(o.customer)}</td>"
            f"<td>{o.postal_code}</td><td>{o.amount.replace('.', ',')}</td><td>{o.created_at}</td></tr>"
            for o in orders
        )
        result = f"""<p>{len(orders)} order(s) found.</p>
<table border="1" cellpadding="3" cellspacing="0">
<tr bgcolor="#CCCCCC"><th>Order no.</th><th>Reference</th><th>Customer</th><th>Postal code</th><th>Amount</th><th>Created</th></tr>
{lines}
</table>"""
    body = f"""{heading("Find order")}
<form method="get" action="/order/find">
<table border="0" cellpadding="3">
{text_row("Reference", "reference", reference)}
<tr><td></td><td><input type="submit" value="Search"></td></tr>
</table>
</form>
{result}"""
    return page("Find order", body)


def not_found(path: str) -> str:
    return page("Not found", heading("Error 404") + f"<p>No page at {escape(path)}.</p>")
