"""The review queue's pages (``/reviews``, ``/reviews/{id}``) and their forms, on SQLite and PostgreSQL.

Everything goes through the HTML a browser gets and the forms it posts: the
CSRF token and the item's version are read from the page, as a browser
sends them. RELIABILITY items 34-37 for the pages: hostile text shows as
text, a form without its token (or from another site) changes nothing and a
GET on an action is 405, another team's item and its files are 404, a
viewer's action is 403, and of two reviewers the second gets 409.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape
from sqlalchemy import select

from hub import Flow
from hub import models as m
from hub.models import utcnow
from hub.registry import Registry
from hub.runtime import Hub
from hub.web import create_app
from hub.web import review_view as view
from hub.web.security import CSP
from tests.web.apps import (
    BIG,
    ERP_PAGE,
    LATE_INVOICE,
    TestClient,
    book,
    check,
    form_token,
    invoice_entry,
    log_in,
    question,
    review_hub,
    work,
)
from tests.web.hostile import MESSAGE, SCRIPT, scraper
from tests.web.test_reviews_api import Clock, audit_rows, paused, run_status, snapshot

FLOWS = Registry(
    [
        Flow("approval", [check, book]),
        Flow("billing", [check, book], team="billing", review_due=3600),
        Flow("shipping", [check, book], team="shipping", review_due=7200),
        question,
        invoice_entry,
        scraper,
    ]
)
HTML = {"Accept": "text/html"}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hub(db_url: str, tmp_path: Path, clock: Clock) -> Iterator[Hub]:
    made = review_hub(db_url, tmp_path / "home", clock, FLOWS)
    yield made
    made.store.engine.dispose()


@pytest.fixture
def as_user(hub: Hub, clock: Clock) -> Iterator[Callable[[str], TestClient]]:
    """``as_user(name)``: a browser-like client logged in through the login form."""
    made: list[TestClient] = []

    def make(name: str) -> TestClient:
        client = TestClient(create_app(hub, clock=clock))
        client.__enter__()
        made.append(client)
        assert log_in(client, name).status_code == 303
        client.headers.update(HTML)
        return client

    yield make
    for c in made:
        c.__exit__(None, None, None)


def version_of(html: str) -> str:
    found = re.search(r'name="version" value="(\d+)"', html)
    assert found, "the page has no action form"
    return found.group(1)


def post(
    client: TestClient, item_id: str, action: str, *, version: str | None = None, **fields: Any
) -> Any:
    """Post an action's form as the item's page has it (token and version from the page)."""
    page = client.get(f"/reviews/{item_id}").text
    data = {"csrf_token": form_token(page), "version": version or version_of(page)}
    data.update({k.replace("__", "."): v for k, v in fields.items()})
    return client.post(f"/reviews/{item_id}/{action}", data=data, follow_redirects=False)


def field_error(html: str, field_id: str) -> str:
    found = re.search(rf'<p class="field-error" id="{re.escape(field_id)}-error">([^<]*)</p>', html)
    assert found, f"no error beside {field_id}"
    return found.group(1)


def queue_ids(html: str) -> list[str]:
    return re.findall(r'<tr class="queue-row[^"]*" data-id="([^"]+)"', html)


def step_row(hub: Hub, run_id: str, key: str) -> m.Step:
    with hub.store.read() as s:
        return s.scalars(select(m.Step).where(m.Step.run_id == run_id, m.Step.key == key)).one()


def item_row(hub: Hub, item_id: str) -> m.ReviewItem:
    with hub.store.read() as s:
        item = s.get(m.ReviewItem, item_id)
        assert item is not None
        return item


# ------------------------------------------------------------------- queue
def test_the_queue_lists_the_teams_open_items_with_counts_and_a_nav_link(
    hub: Hub, as_user: Any
) -> None:
    _, billing = paused(hub, "billing")
    _, shipping = paused(hub, "shipping")
    _, free = paused(hub, "approval")
    page = as_user("anna").get("/reviews")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    assert set(queue_ids(page.text)) == {billing, free}
    assert shipping not in page.text
    assert re.search(r'Open <span class="count" data-count="open">2</span>', page.text)
    assert re.search(r'data-count="unassigned">2<', page.text)
    assert re.search(r'data-count="closed">0<', page.text)
    nav = re.search(r'<nav aria-label="Main">\s*<a href="([^"]+)"[^>]*>([^<]+)</a>', page.text)
    assert nav and nav.groups() == ("/reviews", "Review queue")
    assert '<script src="/static/hub.js" defer></script>' in page.text
    assert " style=" not in page.text and "<script>" not in page.text
    everyone = as_user("olga").get("/reviews").text
    assert set(queue_ids(everyone)) == {billing, shipping, free}


def test_the_queue_filters_by_flow_status_assignee_and_age(
    hub: Hub, as_user: Any, clock: Clock
) -> None:
    _, first = paused(hub, "billing")
    clock.now += timedelta(hours=3)
    _, second = paused(hub, "approval")
    anna = as_user("anna")
    assert queue_ids(anna.get("/reviews?flow=billing").text) == [first]
    assert queue_ids(anna.get("/reviews?step=check&reason=business").text) == [second, first]
    assert queue_ids(anna.get("/reviews?reason=question").text) == []
    assert queue_ids(anna.get("/reviews?older_than=2").text) == [first]
    assert queue_ids(anna.get("/reviews?newer_than=1").text) == [second]
    assert queue_ids(anna.get("/reviews?sort=oldest").text) == [first, second]
    assert post(anna, first, "claim").status_code == 303
    mine = anna.get("/reviews?assignee=me")
    assert queue_ids(mine.text) == [first]
    assert re.search(r'class="chip chip-mine" href="[^"]+" aria-current="true"', mine.text)
    assert queue_ids(anna.get("/reviews?assignee=none").text) == [second]
    assert queue_ids(anna.get("/reviews?assignee=anna").text) == [first]
    assert post(anna, second, "retry").status_code == 303
    closed = anna.get("/reviews?status=closed").text
    assert queue_ids(closed) == [second]
    assert "retried" in closed
    assert set(queue_ids(anna.get("/reviews?status=all").text)) == {first, second}


def test_bad_filters_answer_422_and_say_what_to_fix(hub: Hub, as_user: Any) -> None:
    anna = as_user("anna")
    for query, text in [
        ("status=pending", "status: &#39;pending&#39; is not one of open, closed, all"),
        ("older_than=soon", "older than: give a number of hours"),
        ("cursor=garbage", "not a cursor this queue gave out"),
        ("overdue=maybe", "overdue: choose yes, no or any"),
    ]:
        page = anna.get(f"/reviews?{query}")
        assert page.status_code == 422, query
        assert text in page.text, query
        assert '<form class="filters card" method="get"' in page.text  # to fix it


def test_overdue_items_are_flagged_in_words_and_sort_first_when_urgent(
    hub: Hub, as_user: Any, clock: Clock
) -> None:
    _, shipping = paused(hub, "shipping")
    _, billing = paused(hub, "billing")
    _, free = paused(hub, "approval")
    olga = as_user("olga")
    calm = olga.get("/reviews").text
    assert "Overdue</span>" not in calm
    assert "due in 1 h" in calm and "due in 2 h" in calm and "no due time" in calm
    clock.now += timedelta(minutes=90)
    olga = as_user("olga")  # the first session went idle meanwhile
    page = olga.get("/reviews?sort=urgent").text
    assert queue_ids(page) == [billing, shipping, free]
    row = re.search(rf'<tr class="queue-row overdue" data-id="{billing}">(.*?)</tr>', page, re.S)
    assert row, "the overdue row is not marked"
    assert '<span class="flag">Overdue</span>' in row.group(1)
    assert "overdue by 30 min" in row.group(1)
    assert f'<tr class="queue-row" data-id="{shipping}">' in page
    assert re.search(r'data-count="overdue">1<', page)
    assert queue_ids(olga.get("/reviews?overdue=yes").text) == [billing]
    assert set(queue_ids(olga.get("/reviews?overdue=no").text)) == {shipping, free}
    item = olga.get(f"/reviews/{billing}").text
    assert '<span class="flag">Overdue</span>' in item and "overdue by 30 min" in item


def test_the_queue_pages_with_a_next_page_link(hub: Hub, as_user: Any) -> None:
    run_id, first = paused(hub, "billing")
    row = step_row(hub, run_id, "check")

    def many(s: Any) -> None:
        base = utcnow()
        for n in range(59):
            s.add(
                m.ReviewItem(
                    id=m.new_id(),
                    run_id=run_id,
                    step_id=row.id,
                    flow="billing",
                    step_key="check",
                    reason="business",
                    team="billing",
                    created_at=base - timedelta(seconds=n + 1),
                )
            )

    hub.store.run(many)
    anna = as_user("anna")
    page = anna.get("/reviews?flow=billing").text
    assert len(queue_ids(page)) == 50
    found = re.search(r'<a href="([^"]+)" rel="next">Next page</a>', page)
    assert found, "no next page link"
    link = found.group(1).replace("&amp;", "&")
    assert "flow=billing" in link and "cursor=" in link
    second = anna.get(link).text
    assert len(queue_ids(second)) == 10
    assert 'rel="next"' not in second
    assert 'href="/reviews?flow=billing">First page</a>' in second
    assert len(set(queue_ids(page) + queue_ids(second))) == 60
    assert first in queue_ids(page)


def test_the_fragment_has_the_rows_and_counts_alone(hub: Hub, as_user: Any) -> None:
    _, item_id = paused(hub, "billing")
    anna = as_user("anna")
    part = anna.get("/reviews?flow=billing&fragment=1")
    assert part.status_code == 200
    assert queue_ids(part.text) == [item_id]
    assert 'id="queue-live"' in part.text and 'data-count="open">1<' in part.text
    assert "<form" not in part.text and "<html" not in part.text
    page = anna.get("/reviews?flow=billing").text
    assert 'data-poll="/reviews?flow=billing&amp;fragment=1"' in page


def test_the_queue_needs_a_login(hub: Hub) -> None:
    with TestClient(create_app(hub)) as anonymous:
        page = anonymous.get("/reviews?flow=billing", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"] == "/login?next=%2Freviews%3Fflow%3Dbilling"


# --------------------------------------------------------------- item page
def test_the_item_page_shows_the_failure_the_run_and_the_forms(hub: Hub, as_user: Any) -> None:
    run_id, item_id = paused(hub, "billing")
    page = as_user("anna").get(f"/reviews/{item_id}")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    text = page.text
    assert f'<a class="mono" href="/runs/{run_id}">{run_id}</a>' in text
    assert "hub.errors.BusinessError" in text
    assert "amount 500 is over the limit of 100" in text
    assert '<tr class="current" aria-current="step">' in text
    assert f'data-state="/reviews/{item_id}/state" data-version="1"' in text
    # the edit form is generated from Order, prefilled with the step's input
    assert 'name="input.order_id" value="A-1"' in text
    assert re.search(
        r'type="number" id="f-input-amount" name="input.amount" value="500" step="1"', text
    )
    # the complete form from Checked, with a checkbox and its hidden "unchecked" marker
    assert '<input type="hidden" name="output.approved" value="false">' in text
    assert 'type="checkbox" id="f-output-approved" name="output.approved" value="true"' in text
    for action in ("claim", "retry", "edit", "complete", "skip", "abort", "comment"):
        assert f'action="/reviews/{item_id}/{action}"' in text, action
    assert f'action="/reviews/{item_id}/assign"' not in text  # operators only
    assert text.count('name="csrf_token"') == text.count("<form ")
    assert " style=" not in text and "<script>" not in text
    state = as_user("anna").get(f"/reviews/{item_id}/state")
    assert state.json() == {"version": 1, "status": "open"}


def test_hostile_text_and_page_html_show_as_text(hub: Hub, as_user: Any) -> None:
    """RELIABILITY 34 on the item page (the real-browser half is in test_review_browser.py)."""
    run_id = hub.engine.start_run("scraper", {"number": "4711"}).run_id
    work(hub)
    _, entry = paused(hub, "invoice_entry", LATE_INVOICE)
    olga = as_user("olga")
    queue = olga.get("/reviews").text
    assert SCRIPT not in queue and str(escape(SCRIPT)) in queue
    with hub.store.read() as s:
        item_id = s.scalars(select(m.ReviewItem.id).where(m.ReviewItem.run_id == run_id)).one()
    text = olga.get(f"/reviews/{item_id}").text
    assert SCRIPT not in text and "<img src=x" not in text
    assert str(escape(MESSAGE)) in text
    page = olga.get(f"/reviews/{entry}").text
    assert "<script>alert" not in page and 'onerror="alert' not in page
    assert str(escape(ERP_PAGE)) in page  # the page's HTML, as text in a <pre>
    assert "<b>amount over the limit</b>" not in page
    assert "https://erp.example/invoices/new" in page
    assert 'href="https://erp.example' not in page  # an untrusted address is text, not a link


def test_the_evidence_shows_the_screenshot_files_actions_notes_and_log(
    hub: Hub, as_user: Any
) -> None:
    _, item_id = paused(hub, "invoice_entry", LATE_INVOICE)
    anna = as_user("anna")
    detail = anna.get(f"/api/reviews/{item_id}").json()
    shot, html = sorted(detail["artifacts"], key=lambda a: a["kind"] != "screenshot")
    text = anna.get(f"/reviews/{item_id}").text
    href = f"/reviews/{item_id}/artifacts/{shot['id']}"
    assert f'<img src="{href}" alt="Screenshot screen.png taken when the step failed">' in text
    assert "typed invoice INV-7 for ACME" in text and "clicked Save" in text  # actions
    assert "keying invoice INV-7" in text and "the ERP refused invoice INV-7" in text  # log
    assert "<dt>invoice</dt><dd>INV-7</dd>" in text  # a note
    assert "<dd>New invoice</dd>" in text  # the page's title
    image = anna.get(href)
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
    assert image.headers["content-disposition"].startswith("inline")
    assert image.content.startswith(b"\x89PNG")
    assert "sandbox" in image.headers["content-security-policy"]
    assert "default-src 'none'" in image.headers["content-security-policy"]
    raw = anna.get(f"/reviews/{item_id}/artifacts/{html['id']}")
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "text/plain; charset=utf-8"
    assert raw.headers["content-disposition"].startswith("attachment")
    assert raw.headers["x-content-type-options"] == "nosniff"
    assert raw.text == ERP_PAGE


def test_a_long_page_is_cut_on_the_item_page_with_a_download_link(hub: Hub, as_user: Any) -> None:
    _, item_id = paused(hub, "invoice_entry", LATE_INVOICE)

    def grow(s: Any) -> None:
        row = s.scalars(
            select(m.Artifact).where(m.Artifact.item_id == item_id, m.Artifact.kind == "html")
        ).one()
        row.data = ("x" + "é" * 150_000).encode()  # 300 KB; 200 KB ends inside an é
        row.size = len(row.data)

    hub.store.run(grow)
    text = as_user("anna").get(f"/reviews/{item_id}").text
    assert "Truncated:" in text and "download the whole file" in text
    shown = re.search(r'<pre class="text page-html">([^<]*)</pre>', text)
    assert shown and shown.group(1) == "x" + "é" * (100 * 1024 - 1) + "\ufffd"


# ------------------------------------------------------------------ access
def test_another_teams_item_and_its_files_are_not_found(hub: Hub, as_user: Any) -> None:
    """RELIABILITY 36: a reviewer of team A reaching team B's item or artifact gets 404."""
    _, item_id = paused(hub, "invoice_entry", LATE_INVOICE)
    artifacts = as_user("olga").get(f"/api/reviews/{item_id}").json()["artifacts"]
    assert artifacts
    sam = as_user("sam")
    before = snapshot(hub)
    page = sam.get(f"/reviews/{item_id}")
    assert page.status_code == 404
    assert "There is no review item with this id in your teams&#39; queue." in page.text
    assert "LATE" not in page.text and "INV-7" not in page.text
    assert sam.get(f"/reviews/{item_id}/state").status_code == 404
    for a in artifacts:
        file = sam.get(f"/reviews/{item_id}/artifacts/{a['id']}")
        assert file.status_code == 404, a["kind"]
        assert b"PNG" not in file.content and b"New invoice" not in file.content
    token = form_token(sam.get("/reviews").text)
    for action in ("retry", "claim", "comment", "skip"):
        refused = sam.post(
            f"/reviews/{item_id}/{action}",
            data={"csrf_token": token, "version": "1", "reason": "x", "text": "y"},
            follow_redirects=False,
        )
        assert refused.status_code == 404, action
    assert snapshot(hub) == before
    _, own = paused(hub, "invoice_entry", LATE_INVOICE)
    other = as_user("olga").get(f"/api/reviews/{own}").json()["artifacts"][0]["id"]
    # a file of another item, asked for through an item the reader may see
    assert as_user("anna").get(f"/reviews/{item_id}/artifacts/{other}").status_code == 404
    assert as_user("anna").get(f"/reviews/{own}/artifacts/{artifacts[0]['id']}").status_code == 404


def test_a_viewer_sees_no_action_forms_and_a_viewer_post_is_403(hub: Hub, as_user: Any) -> None:
    """RELIABILITY 36: a viewer reads the item; an action is refused and changes nothing."""
    _, item_id = paused(hub, "billing")
    vera = as_user("vera")
    page = vera.get(f"/reviews/{item_id}").text
    assert "amount 500 is over the limit of 100" in page
    assert f'action="/reviews/{item_id}/' not in page
    assert "acting on it needs the reviewer role" in page
    token = form_token(page)  # the session's token, from the logout form
    before = snapshot(hub)
    for action in ("retry", "edit", "complete", "skip", "abort", "claim", "comment", "assign"):
        refused = vera.post(
            f"/reviews/{item_id}/{action}",
            data={"csrf_token": token, "version": "1", "reason": "x", "text": "y"},
            follow_redirects=False,
        )
        assert refused.status_code == 403, action
        assert (
            "needs the reviewer role" in refused.text or "needs the operator role" in refused.text
        )
    assert snapshot(hub) == before


def test_a_form_without_its_token_or_from_another_site_is_403_and_changes_nothing(
    hub: Hub, as_user: Any
) -> None:
    """RELIABILITY 35: CSRF on the action forms."""
    _, item_id = paused(hub, "billing")
    anna = as_user("anna")
    page = anna.get(f"/reviews/{item_id}").text
    token, version = form_token(page), version_of(page)
    before = snapshot(hub)
    url = f"/reviews/{item_id}/retry"
    assert anna.post(url, data={"version": version}).status_code == 403
    assert anna.post(url, data={"version": version, "csrf_token": "forged"}).status_code == 403
    cross = {"csrf_token": token, "version": version}
    assert anna.post(url, data=cross, headers={"Origin": "https://evil.example"}).status_code == 403
    assert anna.post(url, data=cross, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    with TestClient(create_app(hub)) as stranger:  # another browser, no session: to the login
        assert stranger.post(url, data=cross, follow_redirects=False).status_code == 303
    assert snapshot(hub) == before


def test_a_get_on_an_action_url_is_405(hub: Hub, as_user: Any) -> None:
    """RELIABILITY 35: an action never happens by following a link."""
    _, item_id = paused(hub, "billing")
    anna = as_user("anna")
    before = snapshot(hub)
    for action in ("retry", "skip", "claim"):
        got = anna.get(f"/reviews/{item_id}/{action}")
        assert got.status_code == 405, action
        assert "Method Not Allowed" in got.text
        assert got.headers["allow"] == "POST"
    assert snapshot(hub) == before


def test_an_unknown_item_or_action_is_404(hub: Hub, as_user: Any) -> None:
    _, item_id = paused(hub, "billing")
    anna = as_user("anna")
    assert anna.get("/reviews/nope").status_code == 404
    assert post(anna, item_id, "approve").status_code == 404


# ----------------------------------------------------------------- actions
def test_claim_then_another_reviewer_is_told_who_holds_it(hub: Hub, as_user: Any) -> None:
    _, item_id = paused(hub, "billing")
    anna, bert = as_user("anna"), as_user("bert")
    done = post(anna, item_id, "claim")
    assert done.status_code == 303
    assert done.headers["location"] == f"/reviews/{item_id}?done=claim"
    page = anna.get(done.headers["location"]).text
    assert "You claimed this item." in page
    assert f'action="/reviews/{item_id}/unclaim"' in page
    seen = bert.get(f"/reviews/{item_id}").text
    assert "Claimed by anna: only they or an operator can act on it." in seen
    assert f'action="/reviews/{item_id}/retry"' not in seen
    before = snapshot(hub)
    refused = bert.post(
        f"/reviews/{item_id}/retry",
        data={"csrf_token": form_token(seen), "version": "2"},
        follow_redirects=False,
    )
    assert refused.status_code == 409
    assert "is claimed by anna" in refused.text
    assert snapshot(hub) == before
    assert post(anna, item_id, "unclaim").status_code == 303
    assert item_row(hub, item_id).assignee_id is None


def test_an_operator_assigns_from_a_list_of_the_teams_reviewers(hub: Hub, as_user: Any) -> None:
    _, item_id = paused(hub, "billing")
    olga = as_user("olga")
    page = olga.get(f"/reviews/{item_id}").text
    names = re.findall(
        r'<option value="([^"]+)"', page.split('id="assign-to"')[1].split("</select>")[0]
    )
    assert names == ["anna", "bert", "olga"]  # billing's reviewers and the operators
    assert post(olga, item_id, "assign", assignee="bert").status_code == 303
    assert "bert" in as_user("bert").get("/reviews?assignee=me").text
    wrong = post(olga, item_id, "assign", assignee="sam")
    assert wrong.status_code == 422
    assert "not in team" in field_error(wrong.text, "assign-assignee")
    refused = post(as_user("anna"), item_id, "assign", assignee="anna")
    assert refused.status_code == 403


def test_a_comment_is_listed_as_text_and_an_empty_one_is_refused_beside_the_field(
    hub: Hub, as_user: Any
) -> None:
    _, item_id = paused(hub, "billing")
    anna = as_user("anna")
    empty = post(anna, item_id, "comment", text="   ")
    assert empty.status_code == 422
    assert "required" in field_error(empty.text, "comment-text")
    assert post(anna, item_id, "comment", text="<b>called them</b>").status_code == 303
    page = anna.get(f"/reviews/{item_id}").text
    assert '<p class="body">&lt;b&gt;called them&lt;/b&gt;</p>' in page
    assert "No comments yet." not in page


def test_retry_closes_the_item_and_the_run_goes_on(hub: Hub, as_user: Any) -> None:
    _, item_id = paused(hub, "billing")
    anna = as_user("anna")
    sent = len(hub.published)  # type: ignore[attr-defined]
    done = post(anna, item_id, "retry")
    assert done.status_code == 303
    assert len(hub.published) == sent + 1  # type: ignore[attr-defined]
    page = anna.get(done.headers["location"]).text
    assert "Retried: the step runs again." in page
    assert "The run is now <strong>running</strong>" in page
    assert "This item is closed: retried by anna." in page
    assert f'action="/reviews/{item_id}/retry"' not in page
    assert [a.action for a in audit_rows(hub, item_id)] == ["review.retry"]


def test_edit_with_valid_input_retries_and_the_run_finishes(hub: Hub, as_user: Any) -> None:
    run_id, item_id = paused(hub, "billing")
    anna = as_user("anna")
    done = post(anna, item_id, "edit", input__order_id="A-1", input__amount="50")
    assert done.status_code == 303, done.text
    assert step_row(hub, run_id, "check").input == {"order_id": "A-1", "amount": 50}
    work(hub)
    assert run_status(hub, run_id) == "succeeded"
    page = anna.get(done.headers["location"]).text
    assert "Input saved: the step runs again with it." in page
    assert "The run is now <strong>succeeded</strong>" in page
    diff = page.split("<caption>Edited input</caption>")[1].split("</table>")[0]
    assert re.search(
        r'<td class="mono">amount</td><td><pre class="text">500</pre></td>'
        r'<td><pre class="text">50</pre></td>',
        diff,
    )
    assert "order_id" not in diff  # only what changed


def test_edit_with_malformed_input_is_422_beside_the_fields_and_changes_nothing(
    hub: Hub, as_user: Any
) -> None:
    run_id, item_id = paused(hub, "billing")
    anna = as_user("anna")
    before = snapshot(hub)
    refused = post(anna, item_id, "edit", input__order_id="", input__amount="-1")
    assert refused.status_code == 422
    text = refused.text
    assert "Nothing was changed: the input needs fixing" in text
    assert field_error(text, "f-input-order_id") == "String should have at least 1 character"
    assert field_error(text, "f-input-amount") == "Input should be greater than or equal to 0"
    assert 'name="input.amount" value="-1"' in text  # what the reviewer typed, kept
    assert 'name="input.order_id" value=""' in text
    assert '<details class="act" open id="edit">' in text
    assert 'aria-invalid="true"' in text
    not_a_number = post(anna, item_id, "edit", input__order_id="A-1", input__amount="12x")
    assert not_a_number.status_code == 422
    assert field_error(not_a_number.text, "f-input-amount") == "not a whole number: &#39;12x&#39;"
    assert snapshot(hub) == before
    assert item_row(hub, item_id).version == 1
    assert step_row(hub, run_id, "check").input == BIG


def test_complete_by_hand_through_the_output_form(hub: Hub, as_user: Any) -> None:
    run_id, item_id = paused(hub, "billing")
    anna = as_user("anna")
    before = snapshot(hub)
    missing = post(anna, item_id, "complete", output__order_id="A-1", output__amount="")
    assert missing.status_code == 422
    assert field_error(missing.text, "f-output-amount") == "Field required"
    assert snapshot(hub) == before
    done = post(
        anna,
        item_id,
        "complete",
        output__order_id="A-1",
        output__amount="500",
        output__approved=["false", "true"],  # the hidden marker, then the ticked box
    )
    assert done.status_code == 303, done.text
    assert step_row(hub, run_id, "check").output == {
        "order_id": "A-1",
        "amount": 500,
        "approved": True,
    }
    work(hub)
    assert run_status(hub, run_id) == "succeeded"


def test_an_unticked_box_is_false(hub: Hub, as_user: Any) -> None:
    run_id, item_id = paused(hub, "billing")
    anna = as_user("anna")
    done = post(
        anna,
        item_id,
        "complete",
        output__order_id="A-1",
        output__amount="5",
        output__approved="false",
    )
    assert done.status_code == 303
    assert step_row(hub, run_id, "check").output["approved"] is False


def test_a_question_is_answered_with_its_own_form(hub: Hub, as_user: Any) -> None:
    run_id, item_id = paused(hub, "question")
    anna = as_user("anna")
    page = anna.get(f"/reviews/{item_id}").text
    assert "Answer the question" in page and "Approve order A-1 of 500?" in page
    assert 'name="output.approver"' in page
    assert re.search(r'<select id="f-output-level" name="output.level"', page)
    bad = post(
        anna,
        item_id,
        "complete",
        output__approved="false",
        output__approver="",
        output__level="mid",
    )
    assert bad.status_code == 422
    assert "choose one of: low, high" in field_error(bad.text, "f-output-level")
    empty = post(anna, item_id, "complete", output__approved="false", output__approver="")
    assert empty.status_code == 422
    assert "at least 1 character" in field_error(empty.text, "f-output-approver")
    done = post(
        anna,
        item_id,
        "complete",
        output__approved=["false", "true"],
        output__approver="rita",
        output__level="high",
    )
    assert done.status_code == 303, done.text
    assert run_status(hub, run_id) == "succeeded"
    assert step_row(hub, run_id, "ask").output == {
        "approved": True,
        "approver": "rita",
        "level": "high",
    }


def test_skip_needs_a_reason_and_the_run_goes_on(hub: Hub, as_user: Any) -> None:
    run_id, item_id = paused(hub, "billing")
    anna = as_user("anna")
    before = snapshot(hub)
    empty = post(anna, item_id, "skip", reason=" ")
    assert empty.status_code == 422
    assert "required" in field_error(empty.text, "skip-reason")
    assert '<details class="act" open id="skip">' in empty.text
    assert snapshot(hub) == before
    done = post(anna, item_id, "skip", reason="booked by phone")
    assert done.status_code == 303
    work(hub)
    assert run_status(hub, run_id) == "succeeded"
    assert "Skipped: the run goes on from the next step." in anna.get(done.headers["location"]).text


def test_abort_needs_a_reason_and_fails_the_run(hub: Hub, as_user: Any) -> None:
    run_id, item_id = paused(hub, "billing")
    anna = as_user("anna")
    empty = post(anna, item_id, "abort", reason="")
    assert empty.status_code == 422
    assert "required" in field_error(empty.text, "abort-reason")
    assert run_status(hub, run_id) == "needs_review"
    done = post(anna, item_id, "abort", reason="fraud")
    assert done.status_code == 303
    assert run_status(hub, run_id) == "failed"
    page = anna.get(done.headers["location"]).text
    assert "Aborted: the run has failed." in page
    assert '<td class="mono">reason</td>' in page and "fraud" in page  # in the audit trail


# ------------------------------------------------------------- conflicts
def test_two_reviewers_on_one_page_version_the_second_gets_409(hub: Hub, as_user: Any) -> None:
    """RELIABILITY 37 through the forms: both read version 1; the first wins."""
    _, item_id = paused(hub, "billing")
    anna, bert = as_user("anna"), as_user("bert")
    anna_page, bert_page = (
        anna.get(f"/reviews/{item_id}").text,
        bert.get(f"/reviews/{item_id}").text,
    )
    assert version_of(anna_page) == version_of(bert_page) == "1"
    won = anna.post(
        f"/reviews/{item_id}/retry",
        data={"csrf_token": form_token(anna_page), "version": "1"},
        follow_redirects=False,
    )
    assert won.status_code == 303
    before = snapshot(hub)
    lost = bert.post(
        f"/reviews/{item_id}/skip",
        data={"csrf_token": form_token(bert_page), "version": "1", "reason": "not needed"},
        follow_redirects=False,
    )
    assert lost.status_code == 409
    assert "is closed (retried by anna" in lost.text
    assert f'<a href="/reviews/{item_id}">Reload the item</a>' in lost.text
    assert snapshot(hub) == before


def test_a_page_gone_stale_is_refused_with_409_and_a_reload_link(hub: Hub, as_user: Any) -> None:
    run_id, item_id = paused(hub, "billing")
    anna, bert = as_user("anna"), as_user("bert")
    stale = bert.get(f"/reviews/{item_id}").text
    assert post(anna, item_id, "claim").status_code == 303
    assert post(anna, item_id, "unclaim").status_code == 303
    before = snapshot(hub)
    lost = bert.post(
        f"/reviews/{item_id}/edit",
        data={
            "csrf_token": form_token(stale),
            "version": version_of(stale),
            "input.order_id": "A-1",
            "input.amount": "5",
        },
        follow_redirects=False,
    )
    assert lost.status_code == 409
    assert "changed since you read it (version 1, now 3)" in lost.text
    assert "Reload the item" in lost.text
    assert snapshot(hub) == before
    assert step_row(hub, run_id, "check").input == BIG
    assert bert.get(f"/reviews/{item_id}/state").json()["version"] == 3


def test_a_closed_item_offers_no_actions_and_refuses_them_clearly(hub: Hub, as_user: Any) -> None:
    _, item_id = paused(hub, "billing")
    anna = as_user("anna")
    page = anna.get(f"/reviews/{item_id}").text
    assert post(anna, item_id, "retry").status_code == 303
    closed = anna.get(f"/reviews/{item_id}").text
    assert "This item is closed: retried by anna." in closed
    for action in ("retry", "edit", "complete", "skip", "abort", "claim"):
        assert f'action="/reviews/{item_id}/{action}"' not in closed
    before = snapshot(hub)
    again = anna.post(
        f"/reviews/{item_id}/abort",
        data={"csrf_token": form_token(page), "version": "2", "reason": "late"},
        follow_redirects=False,
    )
    assert again.status_code == 409
    assert "is closed (retried by anna" in again.text and "nothing changed" in again.text
    assert snapshot(hub) == before


# FastAPI silences a pydantic warning with warnings.catch_warnings(), which is not
# thread-safe (see the same test of the JSON API); a test-harness artefact.
@pytest.mark.filterwarnings("ignore::pydantic.warnings.UnsupportedFieldAttributeWarning")
def test_two_reviewers_posting_at_the_same_moment_one_applies_the_other_gets_409(
    hub: Hub, as_user: Any
) -> None:
    """RELIABILITY 37: two form posts released together; one resume is published."""
    run_id, item_id = paused(hub, "billing")
    clients = [as_user("anna"), as_user("bert")]
    forms_seen = [form_token(c.get(f"/reviews/{item_id}").text) for c in clients]
    step_id = step_row(hub, run_id, "check").id
    sent = len(hub.published)  # type: ignore[attr-defined]
    gate = threading.Barrier(2)
    codes: list[Any] = []

    def act(client: TestClient, token: str) -> None:
        gate.wait()
        try:
            response = client.post(
                f"/reviews/{item_id}/retry",
                data={"csrf_token": token, "version": "1"},
                follow_redirects=False,
            )
            codes.append((response.status_code, response.text))
        except Exception as exc:  # shown by the assertion below
            codes.append((repr(exc), ""))

    threads = [
        threading.Thread(target=act, args=pair) for pair in zip(clients, forms_seen, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(str(code) for code, _ in codes) == ["303", "409"], codes
    lost = next(text for code, text in codes if code == 409)
    assert "Reload the item" in lost
    assert "changed" in lost or "closed" in lost
    resumes = [p for p in hub.published[sent:] if p[0] == step_id]  # type: ignore[attr-defined]
    assert len(resumes) == 1
    assert [a.action for a in audit_rows(hub, item_id)] == ["review.retry"]


# ------------------------------------------------------------ review_view.py
@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (59.9, "59 s"), (61, "1 min"), (3599.4, "1 h"), (7199.2, "2 h"),
     (3 * 3600 + 300, "3 h 5 min"), (50 * 3600, "2 d 2 h"), (-90, "2 min")],
)  # fmt: skip
def test_a_duration_reads_at_a_glance(seconds: float, text: str) -> None:
    assert view.span(seconds) == text


def test_the_diff_of_an_edited_input_names_each_changed_field() -> None:
    before = {"id": "A-1", "customer": {"name": "ACME", "vat": None}, "lines": [1, 2], "old": 1}
    after = {"id": "A-1", "customer": {"name": "Acme AG", "vat": "DE1"}, "lines": [1], "new": True}
    assert view.changes(before, after) == [
        {"path": "customer.name", "before": "ACME", "after": "Acme AG"},
        {"path": "customer.vat", "before": "(none)", "after": "DE1"},
        {"path": "lines", "before": "[\n  1,\n  2\n]", "after": "[\n  1\n]"},
        {"path": "old", "before": "1", "after": "(removed)"},
        {"path": "new", "before": "(none)", "after": "true"},
    ]
    assert view.changes(5, 6) == [{"path": "(whole value)", "before": "5", "after": "6"}]
    assert view.changes(before, before) == []


def test_the_last_http_exchange_shows_as_text_with_secrets_redacted(hub: Hub, as_user: Any) -> None:
    _, item_id = paused(hub, "invoice_entry", LATE_INVOICE)
    text = as_user("anna").get(f"/reviews/{item_id}").text
    request = re.search(r"<h3>Request</h3><pre class=\"text\">([^<]*)</pre>", text)
    response = re.search(r"<h3>Response</h3><pre class=\"text\">([^<]*)</pre>", text)
    assert request and response
    assert request.group(1) == (
        "POST https://erp.example/api/invoices\n"
        "Authorization: [redacted]\nContent-Type: text/plain\n\ninvoice INV-7"
    )
    assert response.group(1) == "status 422\n\n&lt;b&gt;amount over the limit&lt;/b&gt;"
    assert "s3cret" not in text
