"""The legacy order-entry app behaves as its docstring says, in a real Chromium and over HTTP.

The browser tests drive it as a bot will: log in, find the frames, fill
fields by their labels, type into the slow autocomplete and pick from its
list, accept the confirm dialog, and read the answer page.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.sandbox.legacy_web import CUSTOMERS, LegacyWebApp
from tests.sandbox.legacy_web.fixtures import PASSWORD, USER, legacy_web  # noqa: F401
from tests.web.browser import OUTPUT

browser = pytest.mark.browser


# ------------------------------------------------------------------ helpers
def log_in(tab: Any, app: LegacyWebApp) -> None:
    tab.goto(app.url + "/")
    tab.get_by_label("User name").fill(USER)
    tab.get_by_label("Password").fill(PASSWORD)
    tab.get_by_role("button", name="Log in").click()
    tab.wait_for_url("**/frames")


def menu(tab: Any) -> Any:
    return tab.frame_locator('frame[name="menu"]')


def main(tab: Any) -> Any:
    return tab.frame_locator('frame[name="main"]')


def fill_order(tab: Any, reference: str, postal_code: str = "10115", amount: str = "99,50") -> Any:
    """Open "New order" and fill it as a person would; returns the main frame."""
    menu(tab).get_by_role("link", name="New order").click()
    form = main(tab)
    form.get_by_label("Reference").fill(reference)
    form.get_by_label("Customer").press_sequentially("Albr", delay=30)
    form.locator(".ac-item", has_text="Albrecht Metallbau GmbH").click()
    form.get_by_label("Postal code").fill(postal_code)
    form.get_by_label("Amount").fill(amount)
    return form


def save(tab: Any, form: Any, *, accept: bool = True) -> list[str]:
    """Click Save and answer the confirm dialog; returns the dialogs' messages."""
    messages: list[str] = []

    def on_dialog(dialog: Any) -> None:
        messages.append(f"{dialog.type}: {dialog.message}")
        dialog.accept() if accept else dialog.dismiss()

    tab.once("dialog", on_dialog)
    form.get_by_role("button", name="Save").click()
    return messages


@pytest.fixture
def session(legacy_web: LegacyWebApp) -> Iterator[httpx.Client]:  # noqa: F811
    """An HTTP client logged in to the app (no redirects followed)."""
    with httpx.Client(base_url=legacy_web.url) as client:
        reply = client.post("/j_security_check", data={"j_username": USER, "j_password": PASSWORD})
        assert reply.status_code == 302, reply.text
        yield client


# ------------------------------------------------------------ in a browser
@browser
def test_an_order_is_saved_through_login_frames_labels_autocomplete_and_confirm(
    page: Any,
    legacy_web: LegacyWebApp,  # noqa: F811
) -> None:
    log_in(page, legacy_web)
    assert [f.name for f in page.frames] == ["", "menu", "main"]
    form = fill_order(page, "REF-1001")
    assert form.get_by_label("Customer").input_value() == "Albrecht Metallbau GmbH"
    page.screenshot(path=OUTPUT / "legacy-web-order-form.png")

    dialogs = save(page, form)

    form.get_by_text("Order 1 saved.").wait_for()
    assert dialogs == ["confirm: Save order?"]
    [order] = legacy_web.orders
    assert (order.number, order.reference, order.customer_number, order.customer) == (
        1,
        "REF-1001",
        "K-1020",
        "Albrecht Metallbau GmbH",
    )
    assert (order.postal_code, order.amount, order.user) == ("10115", "99.50", USER)
    assert legacy_web.counts.save_attempts == 1
    assert legacy_web.counts.created == 1


@browser
def test_dismissing_the_confirm_dialog_sends_nothing(page: Any, legacy_web: LegacyWebApp) -> None:  # noqa: F811
    log_in(page, legacy_web)
    form = fill_order(page, "REF-NO")

    dialogs = save(page, form, accept=False)

    assert dialogs == ["confirm: Save order?"]
    assert form.get_by_label("Reference").input_value() == "REF-NO"  # still on the form
    assert legacy_web.orders == []
    assert legacy_web.counts.save_attempts == 0


@browser
def test_the_slow_autocomplete_answers_typing_only_and_is_picked_by_keyboard(
    page: Any,
    legacy_web: LegacyWebApp,  # noqa: F811
) -> None:
    legacy_web.suggest_delay = 2.0  # time enough to see it searching
    log_in(page, legacy_web)
    menu(page).get_by_role("link", name="New order").click()
    form = main(page)
    customer = form.get_by_label("Customer")

    customer.fill("Otto & Söhne KG")  # no key presses: the old script never hears of it
    form.get_by_label("Reference").fill("REF-KEYS")
    assert form.locator(".ac-list").count() == 0
    customer.fill("")
    customer.press_sequentially("Otto")
    form.get_by_text("Searching...").wait_for()  # the answer takes suggest_delay seconds
    form.locator(".ac-item").first.wait_for()
    page.screenshot(path=OUTPUT / "legacy-web-autocomplete.png")
    assert form.locator(".ac-item").all_inner_texts() == [
        "Bäckerei Otto",
        "Otto Metallbau GmbH",
        "Otto & Söhne KG",
    ]
    customer.press("ArrowDown")
    customer.press("ArrowDown")
    customer.press("Enter")  # picks; does not send the form

    assert customer.input_value() == "Otto Metallbau GmbH"
    assert form.locator(".ac-list").is_hidden()
    assert legacy_web.counts.save_attempts == 0


@browser
def test_a_bad_postal_code_shows_a_red_message_and_saves_nothing(
    page: Any,
    legacy_web: LegacyWebApp,  # noqa: F811
) -> None:
    log_in(page, legacy_web)
    form = fill_order(page, "REF-PLZ", postal_code="1234")

    save(page, form)

    message = form.get_by_text("Postal code 1234 is not valid")
    message.wait_for()
    page.screenshot(path=OUTPUT / "legacy-web-bad-postal-code.png")
    assert message.evaluate("e => getComputedStyle(e).color") == "rgb(204, 0, 0)"
    assert form.get_by_label("Postal code").input_value() == "1234"  # kept for correction
    assert legacy_web.orders == []
    assert (legacy_web.counts.save_attempts, legacy_web.counts.rejected) == (1, 1)


@browser
def test_a_busy_host_answers_a_page_to_read_and_the_next_try_saves(
    page: Any,
    legacy_web: LegacyWebApp,  # noqa: F811
) -> None:
    log_in(page, legacy_web)
    legacy_web.busy_next(1)
    with page.expect_response("**/order/save") as busy:
        save(page, fill_order(page, "REF-BUSY"))
    main(page).get_by_text("System busy, try again later.").wait_for()
    assert busy.value.status == 200  # only the page's text tells
    assert legacy_web.orders == []

    save(page, fill_order(page, "REF-BUSY"))

    main(page).get_by_text("Order 1 saved.").wait_for()
    assert [o.reference for o in legacy_web.orders] == ["REF-BUSY"]
    assert (legacy_web.counts.save_attempts, legacy_web.counts.busy) == (2, 1)


@browser
def test_an_expired_session_lands_on_the_login_page_with_a_message(
    page: Any,
    legacy_web: LegacyWebApp,  # noqa: F811
) -> None:
    log_in(page, legacy_web)
    legacy_web.expire_sessions()

    menu(page).get_by_role("link", name="New order").click()

    page.wait_for_url("**/login?expired=1")  # the login page left the frames
    page.get_by_text("Your session has expired. Please log in again.").wait_for()
    assert len(page.frames) == 1
    log_in(page, legacy_web)
    menu(page).get_by_role("link", name="New order").click()
    main(page).get_by_label("Reference").wait_for()


@browser
def test_the_customer_table_pages_through_all_57_customers(
    page: Any,
    legacy_web: LegacyWebApp,  # noqa: F811
) -> None:
    log_in(page, legacy_web)
    menu(page).get_by_role("link", name="Customers").click()
    table = main(page)
    seen: list[str] = []
    pages = 0
    while True:
        table.get_by_text(f"Page {pages + 1} of 6").wait_for()
        pages += 1
        rows = table.locator("table").filter(has_text="Customer no.").locator("td:nth-child(1)")
        seen += rows.all_inner_texts()
        following = table.get_by_role("link", name="Next >")
        if following.count() == 0:
            break
        following.click()

    assert pages == 6
    assert seen == [c.number for c in CUSTOMERS]
    assert len(seen) == 57


@browser
def test_an_order_is_found_by_its_reference(page: Any, legacy_web: LegacyWebApp) -> None:  # noqa: F811
    log_in(page, legacy_web)
    save(page, fill_order(page, "REF-FIND"))
    main(page).get_by_text("Order 1 saved.").wait_for()
    menu(page).get_by_role("link", name="Find order").click()
    search = main(page)

    search.get_by_label("Reference").fill("REF-MISSING")
    search.get_by_role("button", name="Search").click()
    search.get_by_text("No order found for reference REF-MISSING.").wait_for()
    search.get_by_label("Reference").fill("REF-FIND")
    search.get_by_role("button", name="Search").click()

    search.get_by_text("1 order(s) found.").wait_for()
    row = search.locator("tr", has_text="REF-FIND")
    assert row.locator("td").all_inner_texts()[:5] == [
        "1",
        "REF-FIND",
        "Albrecht Metallbau GmbH",
        "10115",
        "99,50",
    ]


@browser
def test_the_orders_download_as_a_csv_file(page: Any, legacy_web: LegacyWebApp) -> None:  # noqa: F811
    log_in(page, legacy_web)
    save(page, fill_order(page, "REF-CSV", amount="1234,5"))
    main(page).get_by_text("Order 1 saved.").wait_for()

    with page.expect_download() as download:
        menu(page).get_by_role("link", name="Export orders (CSV)").click()

    assert download.value.suggested_filename == "orders.csv"
    with open(download.value.path(), encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file, delimiter=";"))
    assert rows[0][:2] == ["Order no.", "Reference"]
    assert rows[1][:6] == ["1", "REF-CSV", "K-1020", "Albrecht Metallbau GmbH", "10115", "1234,50"]


# --------------------------------------------------------------- over HTTP
def ids_and_names(html: str) -> tuple[set[str], set[str]]:
    ids = set(re.findall(r'id="(f_[0-9a-f]+)"', html))
    names = set(re.findall(r'name="(n_[0-9a-f]+)"', html))
    return ids, names


def test_element_ids_and_field_names_change_on_every_load_but_labels_do_not(
    session: httpx.Client,
) -> None:
    first, second = session.get("/order/new").text, session.get("/order/new").text

    first_ids, first_names = ids_and_names(first)
    second_ids, second_names = ids_and_names(second)
    assert len(first_ids) == 5 and len(first_names) == 5  # four fields and the customer number
    assert not first_ids & second_ids
    assert not first_names & second_names
    labels = re.compile(r"<label for=\"f_[0-9a-f]+\">([^<]+)</label>")
    assert labels.findall(first) == labels.findall(second)
    assert labels.findall(first) == ["Reference", "Customer", "Postal code", "Amount"]


def test_a_form_posted_directly_is_validated_and_saved_like_one_from_the_browser(
    session: httpx.Client,
    legacy_web: LegacyWebApp,  # noqa: F811
) -> None:
    form = session.get("/order/new").text
    token = re.search(r'name="__FORM" value="([0-9a-f]+)"', form)
    names = re.findall(r'name="(n_[0-9a-f]+)"', form)  # customer number first, then the four
    assert token is not None
    number, reference, customer, postal, amount = names
    data = {"__FORM": token[1], reference: "R-9", customer: "Otto & Söhne KG"}
    data |= {number: "K-1053", postal: "80331", amount: "12"}

    first = session.post("/order/save", data=data)
    again = session.post("/order/save", data=data)  # the app has no unique check

    assert "Order 1 saved." in first.text and "Order 2 saved." in again.text
    assert [o.reference for o in legacy_web.find("R-9")] == ["R-9", "R-9"]
    assert legacy_web.by_reference() == {"R-9": legacy_web.orders}
    bad = session.post("/order/save", data=data | {number: ""})
    assert "Please choose a customer from the list" in bad.text
    assert legacy_web.counts.created == 2


def test_the_busy_page_can_answer_503(session: httpx.Client, legacy_web: LegacyWebApp) -> None:  # noqa: F811
    legacy_web.busy_next(2, status=503)

    replies = [session.post("/order/save", data={}) for _ in range(3)]

    assert [r.status_code for r in replies] == [503, 503, 200]
    assert "System busy, try again later." in replies[0].text
    assert "This form has expired" in replies[2].text  # no form token sent
    assert legacy_web.counts.busy == 2


def test_a_session_expires_after_its_idle_seconds() -> None:
    now = [1000.0]
    with LegacyWebApp(USER, PASSWORD, session_seconds=60, clock=lambda: now[0]) as app:
        client = httpx.Client(base_url=app.url)
        client.post("/j_security_check", data={"j_username": USER, "j_password": PASSWORD})
        now[0] += 59
        assert client.get("/welcome").status_code == 200  # and the idle time starts again
        now[0] += 59
        assert client.get("/welcome").status_code == 200
        now[0] += 61
        gone = client.get("/welcome")
        suggest = client.get("/customers/suggest", params={"q": "Al"})
        client.close()

    assert gone.status_code == 302
    assert gone.headers["Location"] == "/login?expired=1"
    assert suggest.status_code == 401  # the session was dropped: not even "expired" now


def test_wrong_credentials_are_refused(legacy_web: LegacyWebApp) -> None:  # noqa: F811
    with httpx.Client(base_url=legacy_web.url) as client:
        reply = client.post("/j_security_check", data={"j_username": USER, "j_password": "nope"})
        assert client.get("/frames").headers["Location"] == "/login"

    assert reply.status_code == 200
    assert "Invalid user name or password." in reply.text
    assert (legacy_web.counts.logins, legacy_web.counts.failed_logins) == (0, 1)


def test_the_autocomplete_answers_name_lines_and_reset_forgets_everything(
    session: httpx.Client,
    legacy_web: LegacyWebApp,  # noqa: F811
) -> None:
    legacy_web.suggest_delay = 0
    lines = session.get("/customers/suggest", params={"q": "söhne"}).text.splitlines()
    script = session.get("/static/autocomplete.js")

    assert len(lines) == 10  # at most ten of the 19
    assert lines[0] == "K-1039|Albrecht & Söhne KG"
    assert "function ac_lookup" in script.text
    legacy_web.busy_next(1)
    legacy_web.reset()
    assert legacy_web.counts.suggestions == 0
    assert session.get("/welcome").headers["Location"] == "/login"
    assert session.get("/static/../app.py").status_code == 404
