"""Escalation of overdue review items (``hub.escalation``) on SQLite and PostgreSQL.

Webhooks reach a real HTTP server on 127.0.0.1 and emails a real SMTP server
on loopback; every other assertion reads stored rows (the item, the audit log).
The clock is frozen: time passes only when a test moves it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from pydantic import BaseModel
from sqlalchemy import create_engine, text

from hub import BusinessError, Escalate, Flow, auth, escalation, reviews, step
from hub import models as m
from hub.errors import FlowDefinitionError, ReviewConflict
from hub.escalation import escalate_due
from hub.registry import Registry
from hub.scheduler import serve
from hub.settings import Settings
from hub.testing import LocalHub
from tests.hub.rows import LocalHubFactory, reviews_of, rows

SIGNING_KEY = "sig-key-7f3a9c"
SMTP_PASSWORD = "smtp-pw-41d2e8"
HOOK_TOKEN = "tok-b0c5e1"
DUE = 3600


class Order(BaseModel):
    order_id: str
    amount: int


@step(retries=0)
def check(data: Order) -> Order:
    if data.amount > 100:
        raise BusinessError(f"amount {data.amount} is over the limit of 100")
    return data


@step(retries=0)
def book(data: Order) -> Order:
    return data


# ------------------------------------------------------------ test servers
class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps every POST it gets."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.posts.append((self.path, headers, body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, _, body in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class Mailbox:
    """What the loopback SMTP server accepted, and the logins it saw."""

    def __init__(self) -> None:
        self.mails: list[tuple[str, list[str], EmailMessage]] = []
        self.logins: list[tuple[bytes, bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        self.logins.append((data.login, data.password))
        return AuthResult(success=data.password == SMTP_PASSWORD.encode(), handled=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        authenticator=box.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    yield box, port
    controller.stop()


def settings(smtp_port: int, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "base_url": "https://hub.example/",
        "escalation_secret": SIGNING_KEY,
        "escalation_timeout": 5,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "smtp_user": "hub",
        "smtp_password": SMTP_PASSWORD,
        "smtp_from": "hub@example.com",
        "smtp_starttls": False,
    }
    return Settings(**{**values, **kw})


def flows(hook: str) -> list[Flow]:
    return [
        Flow(
            "billing",
            [check, book],
            team="billing",
            review_due=DUE,
            escalate=Escalate(
                notify=[f"{hook}/hooks/reviews", "mailto:lead@example.com"], assign="lead"
            ),
        ),
        Flow(
            "nagging",
            [check, book],
            team="billing",
            review_due=timedelta(seconds=DUE),
            escalate=Escalate(notify=["env:HUB_TEST_HOOK"], repeat=timedelta(hours=1)),
        ),
        Flow("quiet", [check, book], team="billing", review_due=DUE),
    ]


@pytest.fixture
def hub(local_hub: LocalHubFactory, receiver: Receiver, mailbox: tuple[Mailbox, int]) -> LocalHub:
    made = local_hub(flows(receiver.url), settings=settings(mailbox[1]))
    made.freeze()
    add_user(made, "lead", "reviewer", "billing")
    return made


# ----------------------------------------------------------------- helpers
def add_user(hub: LocalHub, name: str, role: str, team: str) -> None:
    hub.store.run(lambda s: auth.create_user(s, name, role=role, password="x" * 12, teams=(team,)))


def paused(hub: LocalHub, flow: str, order: str = "A-1") -> str:
    """Start ``flow`` with a too-big order; return its open review item's id."""
    run_id = hub.start(flow, {"order_id": order, "amount": 500})
    hub.drain()
    (item,) = reviews_of(hub, run_id)
    return item.id


def item_row(hub: LocalHub, item_id: str) -> m.ReviewItem:
    (row,) = rows(hub, m.ReviewItem, id=item_id)
    return row


def trail(hub: LocalHub, item_id: str, action: str | None = None) -> list[m.AuditEntry]:
    found = sorted(rows(hub, m.AuditEntry, object_id=item_id), key=lambda a: a.id)
    return [a for a in found if action is None or a.action == action]


def principal(hub: LocalHub, name: str) -> auth.Principal:
    def load(s: Any) -> auth.Principal:
        (user,) = [u for u in s.query(m.User).all() if u.name == name]
        return auth.principal(s, user)

    return hub.store.run(load)


def signed(key: str, body: bytes, header: str) -> bool:
    """The receiver's check, written apart from the hub's code."""
    expected = "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


# -------------------------------------------------------------- declaring
@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda: Flow("f", [check], escalate=Escalate(assign="lead")), "needs review_due"),
        (
            lambda: Flow("f", [check], review_due=60, escalate={"assign": "x"}),  # type: ignore[arg-type]
            "must be Escalate",
        ),
        (lambda: Escalate(notify=["ftp://ops.example/x"]), "scheme 'ftp'"),
        (lambda: Escalate(notify=["ops.example/hook"]), "no scheme"),
        (lambda: Escalate(notify=["https:///nohost"]), "with a host"),
        (lambda: Escalate(notify=["https://u:pw@ops.example/h"]), "env:VARIABLE"),
        (lambda: Escalate(notify=["mailto:nobody"]), "one email address"),
        (lambda: Escalate(notify=["mailto:a@x.example,b@x.example"]), "one address per"),
        (lambda: Escalate(notify=["env:1BAD"]), "environment variable name"),
        (lambda: Escalate(notify=[]), "names no one"),
        (lambda: Escalate(notify=[""]), "not a target"),
        (lambda: Escalate(notify=[7]), "not a target"),  # type: ignore[list-item]
        (lambda: Escalate(notify={"a": 1}), "list of targets"),  # type: ignore[arg-type]
        (lambda: Escalate(notify=["env:A", "env:A"]), "twice"),
        (lambda: Escalate(), "does nothing"),
        (lambda: Escalate(assign=""), "user name"),
        (lambda: Escalate(notify=["env:A"], repeat=0), "positive"),
        (lambda: Escalate(notify=["env:A"], repeat=-60), "positive"),
        (lambda: Escalate(notify=["env:A"], repeat="1h"), "positive"),  # type: ignore[arg-type]
        (lambda: Escalate(notify=["env:A"], repeat=True), "positive"),
        (lambda: Escalate(notify=["env:A"], repeat=30), "under a minute"),
        (lambda: Escalate(assign="lead", repeat=3600), "needs notify"),
    ],
)
def test_a_bad_escalation_policy_is_refused_when_the_flow_is_declared(
    make: Any, needle: str
) -> None:
    with pytest.raises(FlowDefinitionError, match=needle):
        make()


def test_a_good_policy_reads_as_declared() -> None:
    policy = Escalate(notify="mailto:lead@example.com", repeat=7200)
    assert policy.targets == ("mailto:lead@example.com",)
    assert policy.repeat == timedelta(hours=2)
    flow = Flow("f", [check], review_due=60, escalate=policy)
    assert flow.escalate is policy


# ------------------------------------------------------------ escalating
def test_nothing_is_escalated_before_the_due_time(
    hub: LocalHub, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    item_id = paused(hub, "billing")
    assert escalate_due(hub, hub.now) == 0
    hub.advance(DUE)  # due, not yet past due
    assert escalate_due(hub, hub.now) == 0
    row = item_row(hub, item_id)
    assert (row.escalations, row.escalated_at, row.assignee_id, row.version) == (0, None, None, 1)
    assert receiver.posts == [] and mailbox[0].mails == []
    assert trail(hub, item_id) == []


def test_an_overdue_item_is_reassigned_signed_posted_and_mailed_once(
    hub: LocalHub, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    item_id = paused(hub, "billing")
    item = item_row(hub, item_id)
    hub.advance(DUE + 90)
    assert escalate_due(hub, hub.now) == 1
    assert escalate_due(hub, hub.now) == 0
    hub.advance(7 * 24 * 3600)
    assert escalate_due(hub, hub.now) == 0  # no repeat: once, however long it waits

    ((path, headers, body),) = receiver.posts
    assert path == "/hooks/reviews"
    assert headers["content-type"] == "application/json"
    assert signed(SIGNING_KEY, body, headers["x-hub-signature-256"])
    assert not signed("another-key", body, headers["x-hub-signature-256"])
    assert json.loads(body) == {
        "event": "review.escalated",
        "id": item_id,
        "run_id": item.run_id,
        "flow": "billing",
        "step": "check",
        "reason": item.reason,
        "message": "amount 500 is over the limit of 100",
        "team": "billing",
        "assignee": "lead",
        "due_at": reviews.iso(item.due_at),
        "overdue_seconds": 90,
        "escalation": 1,
        "link": f"https://hub.example/reviews/{item_id}",
    }

    box = mailbox[0]
    ((sender, to, mail),) = box.mails
    assert (sender, to) == ("hub@example.com", ["lead@example.com"])
    assert mail["Subject"] == "[hub] Review overdue by 1 min: billing / check"
    content = mail.get_content()
    assert f"https://hub.example/reviews/{item_id}" in content
    assert "amount 500 is over the limit of 100" in content
    assert box.logins == [(b"hub", SMTP_PASSWORD.encode())]

    row = item_row(hub, item_id)
    lead = principal(hub, "lead")
    assert (row.escalations, row.escalated_at) == (1, hub.now - timedelta(days=7))
    assert (row.assignee_id, row.version) == (lead.user_id, 2)
    (escalated,) = trail(hub, item_id, "review.escalate")
    assert escalated.actor == "hub"
    assert escalated.before == {"assignee": None, "version": 1, "escalations": 0}
    assert escalated.after["assignee"] == "lead"
    assert (escalated.after["version"], escalated.after["escalations"]) == (2, 1)
    told = [(a.after["target"], a.after["sent"]) for a in trail(hub, item_id, "review.notify")]
    assert told == [(f"{receiver.url}/hooks/reviews", True), ("mailto:lead@example.com", True)]


def test_a_reassignment_makes_a_reviewer_acting_on_what_they_read_conflict(
    hub: LocalHub,
) -> None:
    add_user(hub, "rita", "reviewer", "billing")
    item_id = paused(hub, "billing")
    hub.advance(DUE + 1)
    escalate_due(hub, hub.now)
    with pytest.raises(ReviewConflict, match="changed since you read it"):
        reviews.act(hub.engine, principal(hub, "rita"), item_id, "skip", version=1, reason="r")
    assert item_row(hub, item_id).status == "open"


@pytest.mark.parametrize(
    ("who", "why"),
    [
        ("nobody", "no active user named 'nobody'"),
        ("vic", "vic is a viewer"),
        ("sam", "not in team 'billing'"),
    ],
)
def test_an_assignee_who_does_not_qualify_is_recorded_and_the_item_still_escalates(
    local_hub: LocalHubFactory,
    receiver: Receiver,
    mailbox: tuple[Mailbox, int],
    who: str,
    why: str,
) -> None:
    hub = local_hub(
        [
            Flow(
                "billing",
                [check, book],
                team="billing",
                review_due=DUE,
                escalate=Escalate(notify=[receiver.url], assign=who),
            )
        ],
        settings=settings(mailbox[1]),
    )
    hub.freeze()
    if who != "nobody":
        add_user(hub, who, *{"vic": ("viewer", "billing"), "sam": ("reviewer", "shipping")}[who])
    item_id = paused(hub, "billing")
    hub.advance(DUE + 1)
    assert escalate_due(hub, hub.now) == 1
    row = item_row(hub, item_id)
    assert (row.assignee_id, row.version, row.escalations) == (None, 1, 1)
    (escalated,) = trail(hub, item_id, "review.escalate")
    assert why in escalated.after["not_reassigned"]
    assert escalated.after["assignee"] is None
    assert [b["assignee"] for b in receiver.bodies()] == [None]


def test_a_closed_item_is_never_escalated(
    hub: LocalHub, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    add_user(hub, "rita", "reviewer", "billing")
    item_id = paused(hub, "billing")
    hub.advance(DUE + 1)  # overdue, and a reviewer acts before the tick
    reviews.act(hub.engine, principal(hub, "rita"), item_id, "skip", reason="booked by hand")
    assert escalate_due(hub, hub.now) == 0
    hub.advance(DUE)
    assert escalate_due(hub, hub.now) == 0
    row = item_row(hub, item_id)
    assert (row.status, row.escalations) == ("closed", 0)
    assert receiver.posts == [] and mailbox[0].mails == []
    assert trail(hub, item_id, "review.escalate") == []


def test_a_flow_without_a_policy_is_left_alone(hub: LocalHub, receiver: Receiver) -> None:
    item_id = paused(hub, "quiet")
    hub.advance(DUE * 10)
    assert escalate_due(hub, hub.now) == 0
    assert item_row(hub, item_id).escalations == 0
    assert receiver.posts == []


def test_repeat_tells_the_targets_again_after_the_interval(
    hub: LocalHub, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUB_TEST_HOOK", f"{receiver.url}/nag")
    item_id = paused(hub, "nagging")
    hub.advance(DUE + 1)
    assert escalate_due(hub, hub.now) == 1
    hub.advance(3599)
    assert escalate_due(hub, hub.now) == 0
    hub.advance(1)
    assert escalate_due(hub, hub.now) == 1
    assert escalate_due(hub, hub.now) == 0
    assert [b["escalation"] for b in receiver.bodies()] == [1, 2]
    assert [h["x-hub-delivery"] for _, h, _ in receiver.posts] == [
        f"{item_id}.1",
        f"{item_id}.2",
    ]
    assert {p for p, _, _ in receiver.posts} == {"/nag"}
    row = item_row(hub, item_id)
    assert (row.escalations, row.escalated_at, row.version) == (2, hub.now, 1)  # no reassign
    assert len(trail(hub, item_id, "review.escalate")) == 2


def test_an_unset_environment_target_is_a_recorded_skip(
    hub: LocalHub,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("HUB_TEST_HOOK", raising=False)
    item_id = paused(hub, "nagging")
    hub.advance(DUE + 1)
    with caplog.at_level(logging.WARNING, logger="hub.escalation"):
        assert escalate_due(hub, hub.now) == 1
    (told,) = trail(hub, item_id, "review.notify")
    assert told.after == {
        "escalation": 1,
        "target": "env:HUB_TEST_HOOK",
        "sent": False,
        "skipped": "environment variable HUB_TEST_HOOK is not set",
    }
    assert "HUB_TEST_HOOK is not set" in caplog.text
    assert receiver.posts == []


def test_a_receiver_that_is_down_is_recorded_and_the_tick_goes_on(
    local_hub: LocalHubFactory, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    hub = local_hub(
        [
            Flow(
                "billing",
                [check, book],
                review_due=DUE,
                escalate=Escalate(notify=[dead, receiver.url, "mailto:lead@example.com"]),
            )
        ],
        settings=settings(mailbox[1]),
    )
    hub.freeze()
    receiver.status = 500
    first, second = paused(hub, "billing", "A-1"), paused(hub, "billing", "A-2")
    hub.advance(DUE + 1)
    assert escalate_due(hub, hub.now) == 2
    outcomes = {
        item: [a.after for a in trail(hub, item, "review.notify")] for item in (first, second)
    }
    tried, skipped = outcomes[first][0], outcomes[second][0]
    assert (tried["target"], tried["sent"]) == (dead, False)
    assert "ConnectError" in tried["error"]
    assert skipped["skipped"].startswith("not tried: ConnectError")
    assert [o[1]["error"] for o in outcomes.values()] == ["the receiver answered HTTP 500"] * 2
    assert [o[2]["sent"] for o in outcomes.values()] == [True, True]
    assert len(receiver.posts) == 2 and len(mailbox[0].mails) == 2
    assert [item_row(hub, i).escalations for i in (first, second)] == [1, 1]
    assert escalate_due(hub, hub.now) == 0  # recorded, not retried


def test_no_secret_reaches_the_logs_or_the_audit(
    local_hub: LocalHubFactory,
    receiver: Receiver,
    mailbox: tuple[Mailbox, int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("HUB_TEST_HOOK", f"{receiver.url}/h/{HOOK_TOKEN}")
    monkeypatch.setenv("HUB_TEST_DEAD", f"http://127.0.0.1:{free_port()}/h/{HOOK_TOKEN}x")
    hub = local_hub(
        [
            Flow(
                "billing",
                [check, book],
                review_due=DUE,
                escalate=Escalate(
                    notify=["env:HUB_TEST_HOOK", "env:HUB_TEST_DEAD", "mailto:lead@example.com"]
                ),
            )
        ],
        settings=settings(mailbox[1], smtp_password=SMTP_PASSWORD + "-wrong"),
    )
    hub.freeze()
    item_id = paused(hub, "billing")
    hub.advance(DUE + 1)
    with caplog.at_level(logging.DEBUG):
        assert escalate_due(hub, hub.now) == 1
    sent = [(a.after["target"], a.after["sent"]) for a in trail(hub, item_id, "review.notify")]
    assert sent == [
        ("env:HUB_TEST_HOOK", True),
        ("env:HUB_TEST_DEAD", False),
        ("mailto:lead@example.com", False),  # the SMTP server refused the login
    ]
    assert len(receiver.posts) == 1
    hub_lines = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("mail.")
    )  # mail.* is the stand-in SMTP server's own log
    audit = json.dumps([(a.before, a.after) for a in trail(hub, item_id)])
    assert "SMTPAuthenticationError" in audit and "ConnectError" in audit
    assert "HUB_TEST_DEAD" in hub_lines and "HTTP Request" in hub_lines
    for secret in (SMTP_PASSWORD, SIGNING_KEY, HOOK_TOKEN):
        assert secret not in hub_lines
        assert secret not in audit


# ------------------------------------------------------------- concurrency
def test_escalators_racing_in_threads_escalate_each_item_once(
    hub: LocalHub, receiver: Receiver, mailbox: tuple[Mailbox, int]
) -> None:
    items = [paused(hub, "billing", f"A-{n}") for n in range(4)]
    hub.advance(DUE + 1)
    start = threading.Barrier(3)
    counts: list[int] = []

    def race() -> None:
        start.wait()
        counts.append(escalate_due(hub, hub.now))

    threads = [threading.Thread(target=race) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 4
    assert sorted(b["id"] for b in receiver.bodies()) == sorted(items)
    assert len(mailbox[0].mails) == 4
    for item_id in items:
        assert item_row(hub, item_id).escalations == 1
        assert len(trail(hub, item_id, "review.escalate")) == 1


def test_an_escalator_that_read_before_another_committed_changes_nothing(
    pg_url: str,
    receiver: Receiver,
    mailbox: tuple[Mailbox, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On PostgreSQL: B reads the item while A's claim is uncommitted, then waits on
    A's row lock; when A commits, B's conditional UPDATE matches no row. (No
    reassignment here: the escalation count alone must stop B.)"""
    monkeypatch.setenv("HUB_TEST_HOOK", receiver.url)
    hub = LocalHub(flows(receiver.url), database_url=pg_url, settings=settings(mailbox[1]))
    try:
        hub.freeze()
        item_id = paused(hub, "nagging")
        hub.advance(DUE + 1)
        claimed, release = threading.Event(), threading.Event()
        real_audit = escalation.reviews.audit

        def held_audit(*args: Any) -> None:
            real_audit(*args)
            if threading.current_thread().name == "A":
                claimed.set()
                assert release.wait(30), "the test never released A"

        monkeypatch.setattr(escalation.reviews, "audit", held_audit)
        counts: dict[str, int] = {}

        def escalator(name: str) -> None:
            counts[name] = escalate_due(hub, hub.now)

        a = threading.Thread(target=escalator, args=("A",), name="A")
        a.start()
        assert claimed.wait(30)
        b = threading.Thread(target=escalator, args=("B",), name="B")
        b.start()
        wait_for_a_lock_wait(pg_url)
        release.set()
        a.join()
        b.join()
        assert counts == {"A": 1, "B": 0}
        assert len(receiver.posts) == 1
        assert len(trail(hub, item_id, "review.escalate")) == 1
        assert item_row(hub, item_id).escalations == 1
    finally:
        hub.close()


def wait_for_a_lock_wait(url: str) -> None:
    """Block until some session of this database waits for a row lock (B, on A's row)."""
    engine = create_engine(url)
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    try:
        for _ in range(3000):
            with engine.connect() as conn:
                if conn.scalar(query):
                    return
            threading.Event().wait(0.01)
        raise AssertionError("B never waited for A's row lock")
    finally:
        engine.dispose()


# --------------------------------------------------------------- scheduler
def test_the_scheduler_tick_escalates(hub: LocalHub, receiver: Receiver) -> None:
    item_id = paused(hub, "billing")
    hub.advance(DUE + 1)
    process = SimpleNamespace(engine=hub.engine, settings=hub.engine.settings)
    ticker = threading.Thread(target=serve, args=(process,), kwargs={"once": True})
    ticker.start()
    ticker.join()
    assert item_row(hub, item_id).escalations == 1
    assert [b["id"] for b in receiver.bodies()] == [item_id]


def test_the_example_flow_escalates_with_nothing_set_as_recorded_skips(
    local_hub: LocalHubFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("INVOICES_HOOK_URL", "INVOICES_LEAD_EMAIL"):
        monkeypatch.delenv(name, raising=False)
    hub = local_hub(Registry.load(["flows"]), settings=Settings(smtp_host=None))
    hub.freeze()
    run_id = hub.start(
        "invoice_batch",
        {"batch": "B-8", "invoices": [{"number": "I-3", "customer": "ACME", "amount": 20000}]},
    )
    hub.drain()
    (item,) = reviews_of(hub, run_id)
    hub.advance(4 * 3600 + 1)
    assert escalate_due(hub, hub.now) == 1
    skipped = [a.after["skipped"] for a in trail(hub, item.id, "review.notify")]
    assert skipped == [
        "environment variable INVOICES_HOOK_URL is not set",
        "environment variable INVOICES_LEAD_EMAIL is not set",
    ]
