"""Escalation of overdue review items: hand them on and tell someone.

A flow declares what happens when one of its review items passes its due
time (:class:`hub.flow.Escalate`). The scheduler's tick calls
:func:`escalate_due`, which reads the open items that are due for an
escalation (one indexed query, at most ``limit`` rows) and, for each:

1. claims it in one transaction holding ONE conditional UPDATE::

       UPDATE review_items SET escalations = :seen + 1, escalated_at = :now [, assignee]
        WHERE id = :id AND status = 'open' AND escalations = :seen AND version = :version

   together with an ``audit_log`` row (``review.escalate``, actor ``hub``).
   Of two schedulers at once, one matches the row; the other changes
   nothing and sends nothing. Reassigning bumps the item's ``version``, as
   a reviewer's action does, so a reviewer acting on what they read before
   is told the item changed;
2. after the commit, tells each target: a webhook gets a JSON POST (signed
   when ``HUB_ESCALATION_SECRET`` is set), an email goes through the SMTP
   settings. Each outcome is one ``review.notify`` audit row (sent, failed
   and why, or skipped and why) and a log line; neither names a secret.

Notices go out at most once per escalation: a failed one is recorded and
not retried (the claim is already committed). The flow's ``repeat`` tells
the targets again later while the item stays open. Every exchange has a
short timeout (``HUB_ESCALATION_TIMEOUT``), and a target that cannot be
reached is not tried again in the same tick, so a receiver that is down
holds the tick up for one timeout, not one per item.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import smtplib
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import httpx
from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from hub import models as m
from hub import reviews
from hub.errors import InvalidInput
from hub.flow import Escalate, parse_target
from hub.models import ReviewItem
from hub.settings import Settings

log = logging.getLogger("hub.escalation")


class _Masked(logging.Filter):
    """Masks the values of ``env:`` targets in httpx's request log lines.

    httpx logs every request's full URL at INFO; a webhook URL read from the
    environment often carries its token in the path, so it is masked there too.
    """

    def __init__(self) -> None:
        super().__init__()
        self.values: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.values:
            text = record.getMessage()
            masked = _mask(text, self.values)
            if masked != text:
                record.msg, record.args = masked, None
        return True


_masked = _Masked()
logging.getLogger("httpx").addFilter(_masked)

ACTOR = "hub"
#: items escalated in one tick at most; the rest wait for the next tick
LIMIT = 50
MESSAGE_MAX = 2000


@dataclass
class Notice:
    """One escalation of one item, as its targets are told about it."""

    item_id: str
    run_id: str
    flow: str
    step: str
    reason: str
    message: str
    team: str | None
    assignee: str | None
    due_at: datetime
    escalation: int
    at: datetime
    link: str | None
    targets: tuple[str, ...]

    @property
    def overdue(self) -> timedelta:
        return self.at - self.due_at

    def payload(self) -> dict[str, Any]:
        """The JSON body of the webhook."""
        return {
            "event": "review.escalated",
            "id": self.item_id,
            "run_id": self.run_id,
            "flow": self.flow,
            "step": self.step,
            "reason": self.reason,
            "message": self.message,
            "team": self.team,
            "assignee": self.assignee,
            "due_at": reviews.iso(self.due_at),
            "overdue_seconds": int(self.overdue.total_seconds()),
            "escalation": self.escalation,
            "link": self.link,
        }

    def email(self, sender: str, to: str) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = f"[hub] Review overdue by {_span(self.overdue)}: {self.flow} / {self.step}"
        msg["From"] = sender
        msg["To"] = to
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
        lines = [
            f"A review item of flow {self.flow} has been waiting past its due time.",
            "",
            f"Step:      {self.step}",
            f"Reason:    {self.reason}",
            f"Team:      {self.team or '(none)'}",
            f"Assignee:  {self.assignee or '(nobody)'}",
            f"Due:       {self.due_at:%Y-%m-%d %H:%M} UTC (overdue by {_span(self.overdue)})",
            f"Run:       {self.run_id}",
            f"Item:      {self.item_id} (escalation {self.escalation})",
            "",
            self.message,
            "",
            f"Open it: {self.link}" if self.link else "(Set HUB_BASE_URL to get a link here.)",
        ]
        msg.set_content("\n".join(lines) + "\n")
        return msg


def _span(delta: timedelta) -> str:
    """``1 d 2 h 5 min``, to the minute."""
    days, minutes = divmod(max(0, int(delta.total_seconds()) // 60), 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else ""]
    parts.append(f"{minutes} min" if minutes or not (days or hours) else "")
    return " ".join(p for p in parts if p)


# ----------------------------------------------------------------- the tick
def escalate_due(
    hub: Any, now: datetime, *, http: httpx.Client | None = None, limit: int = LIMIT
) -> int:
    """Escalate the open review items whose flow's policy is due at ``now``.

    ``hub`` is an :class:`~hub.engine.Engine` or anything with an ``engine``
    (the runtime hub, a ``LocalHub``). ``http`` is the client webhooks are
    posted with (default: a fresh one with ``HUB_ESCALATION_TIMEOUT``).
    Returns how many items this call escalated. Database errors propagate
    (the scheduler logs them and ticks again); notification failures do not.
    """
    engine = getattr(hub, "engine", hub)
    policies = {f.name: f.escalate for f in engine.registry if f.escalate is not None}
    if not policies:
        return 0
    with engine.store.read() as s:
        due = s.execute(
            select(ReviewItem.id, ReviewItem.escalations, ReviewItem.version)
            .where(
                ReviewItem.status == reviews.OPEN, ReviewItem.due_at < now, _again(policies, now)
            )
            .order_by(ReviewItem.due_at)
            .limit(limit)
        ).all()
    if not due:
        return 0
    sender = Sender(engine.settings, http=http)
    done = 0
    try:
        for item_id, seen, version in due:
            notice = engine.store.run(
                lambda s, i=item_id, n=seen, v=version: _claim(s, engine, policies, i, n, v, now)
            )
            if notice is None:
                continue
            done += 1
            outcomes = [sender.send(notice, target) for target in notice.targets]
            if outcomes:
                engine.store.run(lambda s, n=notice, o=outcomes: _record(s, n, o))
    finally:
        sender.close()
    return done


def _again(policies: dict[str, Escalate], now: datetime) -> ColumnElement[bool]:
    """Items never escalated, or escalated longer ago than their flow's ``repeat``."""
    by_repeat: dict[timedelta | None, list[str]] = {}
    for name, policy in policies.items():
        repeat = policy.repeat if isinstance(policy.repeat, timedelta) else None
        by_repeat.setdefault(repeat, []).append(name)
    conditions = []
    for repeat, names in by_repeat.items():
        again: ColumnElement[bool] = ReviewItem.escalations == 0
        if repeat is not None:
            again = or_(again, ReviewItem.escalated_at <= now - repeat)
        conditions.append(and_(ReviewItem.flow.in_(names), again))
    return or_(*conditions)


def _claim(
    s: Session,
    engine: Any,
    policies: dict[str, Escalate],
    item_id: str,
    seen: int,
    version: int,
    now: datetime,
) -> Notice | None:
    """Escalate one item if no one did since it was read; None when someone did."""
    item = s.get(ReviewItem, item_id, populate_existing=True)
    if item is None or item.status != reviews.OPEN or item.escalations != seen:
        return None
    if item.version != version or item.due_at is None:
        return None
    policy = policies[item.flow]
    holder = s.get(m.User, item.assignee_id) if item.assignee_id else None
    assignee = holder.name if holder is not None else None
    before = {"assignee": assignee, "version": version, "escalations": seen}
    values: dict[str, Any] = {"escalations": seen + 1, "escalated_at": now}
    refused = None
    if policy.assign:
        try:
            user_id = reviews.assignee_id(s, item, policy.assign)
        except InvalidInput as exc:
            refused = str(exc).removeprefix("assignee: ")
        else:
            if user_id != item.assignee_id:
                assignee = policy.assign
                values.update(
                    assignee_id=user_id,
                    claimed_at=now,
                    version=ReviewItem.version + 1,
                    updated_at=now,
                )
    won = s.execute(
        update(ReviewItem)
        .where(
            ReviewItem.id == item.id,
            ReviewItem.status == reviews.OPEN,
            ReviewItem.escalations == seen,
            ReviewItem.version == version,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if won.rowcount != 1:  # type: ignore[attr-defined]
        return None
    overdue = int((now - item.due_at).total_seconds())
    after: dict[str, Any] = {
        "assignee": assignee,
        "version": version + 1 if "assignee_id" in values else version,
        "escalations": seen + 1,
        "overdue_seconds": overdue,
        "notify": list(policy.targets),
    }
    if refused:
        after["not_reassigned"] = refused
        log.warning(
            "review item %s (flow %s) not reassigned to %s: %s",
            item.id,
            item.flow,
            policy.assign,
            refused,
        )
    reviews.audit(s, ACTOR, "review.escalate", "review_item", item.id, before, after, now)
    base = engine.settings.base_url
    return Notice(
        item_id=item.id,
        run_id=item.run_id,
        flow=item.flow,
        step=item.step_key,
        reason=item.reason,
        message=(item.message or "")[:MESSAGE_MAX],
        team=item.team,
        assignee=assignee,
        due_at=item.due_at,
        escalation=seen + 1,
        at=now,
        link=f"{base}/reviews/{item.id}" if base else None,
        targets=policy.targets,
    )


def _record(s: Session, notice: Notice, outcomes: list[dict[str, Any]]) -> None:
    for outcome in outcomes:
        after = {"escalation": notice.escalation, **outcome}
        reviews.audit(
            s, ACTOR, "review.notify", "review_item", notice.item_id, None, after, notice.at
        )


# ------------------------------------------------------------------ sending
class Skipped(Exception):
    """The target was not tried (unset, not configured, or down earlier this tick)."""


class Failed(Exception):
    """The target was tried and did not take the notice; ``down``: nor will it this tick."""

    def __init__(self, why: str, *, down: bool = False) -> None:
        super().__init__(why)
        self.down = down


class Sender:
    """Tells targets about escalations during one tick; remembers who is down.

    Nothing it reports (log lines, audit rows) holds a secret: resolved
    ``env:`` values, the SMTP password and the signing key are masked in
    every error text.
    """

    def __init__(self, settings: Settings, *, http: httpx.Client | None = None) -> None:
        self.settings = settings
        self._http = http
        self._own = http is None
        self._down: dict[str, str] = {}
        self._secrets = {
            v.get_secret_value()
            for v in (settings.smtp_password, settings.escalation_secret)
            if v is not None and v.get_secret_value()
        }

    def close(self) -> None:
        if self._own and self._http is not None:
            self._http.close()

    def send(self, notice: Notice, target: str) -> dict[str, Any]:
        """Tell one target; return what happened, as recorded in the audit log."""
        try:
            kind, address = self._resolve(target)
            key = address if kind == "webhook" else "smtp"
            if key in self._down:
                raise Skipped(f"not tried: {self._down[key]} earlier in this tick")
            try:
                if kind == "webhook":
                    self._post(notice, address)
                else:
                    self._mail(notice, address)
            except Failed as exc:
                if exc.down:
                    self._down[key] = str(exc)
                raise
        except Skipped as exc:
            why = self._mask(str(exc))
            log.warning("escalation of review item %s: %s skipped: %s", notice.item_id, target, why)
            return {"target": target, "sent": False, "skipped": why}
        except Failed as exc:
            why = self._mask(str(exc))
            log.warning("escalation of review item %s: %s failed: %s", notice.item_id, target, why)
            return {"target": target, "sent": False, "error": why}
        log.info("escalation of review item %s: told %s", notice.item_id, target)
        return {"target": target, "sent": True}

    def _resolve(self, target: str) -> tuple[str, str]:
        kind, address = parse_target(target)
        if kind != "env":
            return kind, address
        value = os.environ.get(address, "").strip()
        if not value:
            raise Skipped(f"environment variable {address} is not set")
        self._secrets.add(value)
        _masked.values.add(value)
        try:
            return parse_target(value, env=False)
        except ValueError:
            raise Failed(
                f"environment variable {address} holds neither an http(s) URL nor a mailto: address"
            ) from None

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(
                timeout=self.settings.escalation_timeout, follow_redirects=False
            )
        return self._http

    def _post(self, notice: Notice, url: str) -> None:
        body = json.dumps(notice.payload(), separators=(",", ":"), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "hub-escalation",
            "X-Hub-Event": "review.escalated",
            "X-Hub-Delivery": f"{notice.item_id}.{notice.escalation}",
        }
        if self.settings.escalation_secret is not None:
            key = self.settings.escalation_secret.get_secret_value().encode()
            digest = hmac.new(key, body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature-256"] = f"sha256={digest}"
        try:
            answer = self._client().post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise Failed(
                f"no answer within {self.settings.escalation_timeout:g} s", down=True
            ) from None
        except httpx.HTTPError as exc:
            raise Failed(f"{type(exc).__name__}: {exc}", down=True) from None
        if not answer.is_success:
            raise Failed(f"the receiver answered HTTP {answer.status_code}")

    def _mail(self, notice: Notice, to: str) -> None:
        st = self.settings
        if not st.smtp_host:
            raise Skipped("HUB_SMTP_HOST is not set")
        message = notice.email(st.smtp_from, to)
        try:
            with smtplib.SMTP(st.smtp_host, st.smtp_port, timeout=st.escalation_timeout) as smtp:
                if st.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if st.smtp_user:
                    password = st.smtp_password.get_secret_value() if st.smtp_password else ""
                    smtp.login(st.smtp_user, password)
                smtp.send_message(message)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as exc:
            raise Failed(f"the SMTP server refused it: {type(exc).__name__}: {exc}") from None
        except (smtplib.SMTPException, OSError) as exc:
            where = f"SMTP {st.smtp_host}:{st.smtp_port}"
            raise Failed(f"{where}: {type(exc).__name__}: {exc}", down=True) from None

    def _mask(self, text: str) -> str:
        return _mask(text, self._secrets)


def _mask(text: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
