"""The review queue bench's database: built by the hub's migrations, filled by COPY.

What is loaded (``Spec`` sets the sizes; the defaults are the ones below):

- 100,000 review items, one per run, 20% open, over the ten flows of
  ``bench/review_flows.py`` (five teams, two team-less flows). Closed items
  were retried, edited, completed, skipped or aborted by a reviewer of their
  team; open ones are a fortnight old at most (most of them recent), a third
  claimed, with due times (from their flow) in the past and the future.
- Runs of ten steps: a run stops at its open item's step, and an aborted one
  at its failed step; succeeded runs without items fill up to 1,000,000 step rows.
  Rows go in in the order of their runs' start, as a live hub writes them.
- The attempts of each step that went to review (one to three, plus the
  retry's), comments on a quarter of the items, and the audit rows of every
  claim, comment and resolution.
- Users: ``rita`` (reviewer in finance and billing), ``otto`` (operator), and
  four reviewers per team who hold the other claims and resolutions.

The database's COMMENT holds what was loaded (a JSON marker), so a rerun with
``--reuse`` skips the load when it matches (``bench/review_snapshot.py``
undoes what the bench's actions changed).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from bench.review_flows import FLOWS, STEPS, TEAMS
from hub import auth
from hub.models import utcnow
from hub.store import Store, head_revision

PASSWORD = "bench-review-password"
REVIEWER, OPERATOR = "rita", "otto"
REVIEWER_TEAMS = ("finance", "billing")
FORMAT = 2  # bump when the generated rows change shape
BATCH = 5_000  # items per round of COPYs

REASONS = (  # (kind, error class, share)
    ("business", "hub.errors.BusinessError", 0.40),
    ("error", "httpx.HTTPStatusError", 0.25),
    ("transient", "httpx.ConnectTimeout", 0.20),
    ("question", "hub.errors.NeedsReview", 0.10),
    ("policy", "hub.errors.PolicyViolation", 0.05),
)
RESOLUTIONS = (("retried", 0.5), ("edited", 0.15), ("completed", 0.15), ("skipped", 0.1))
ABORTED = "failed"  # the rest: aborted runs
ACTION_OF = {"retried": "retry", "edited": "edit", "completed": "complete", "skipped": "skip"}
ACTION_OF[ABORTED] = "abort"

COLUMNS = {
    "runs": "id flow status input output error trigger created_at started_at finished_at",
    "steps": (
        "id run_id key node kind queue status input output attempts budget losses "
        "error_kind error completed_by created_at started_at finished_at"
    ),
    "attempts": (
        "id step_id run_id number status worker idempotency_key error_kind error "
        "started_at finished_at"
    ),
    "review_items": (
        "id run_id step_id flow step_key status reason error_class message input form_schema "
        "resolution resolved_by note team assignee_id claimed_at due_at escalated_at "
        "escalations version created_at updated_at resolved_at"
    ),
    "review_comments": "id item_id user_id author body created_at",
    "audit_log": "at actor action object_kind object_id before after",
}


@dataclass(frozen=True)
class Spec:
    items: int = 100_000
    step_rows: int = 1_000_000
    open_share: float = 0.2
    seed: int = 7

    def marker(self) -> dict[str, Any]:
        return {"format": FORMAT, "revision": head_revision(), **asdict(self)}


# ------------------------------------------------------------------ database
def admin_connect(admin_url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(admin_url.replace("+psycopg", ""), autocommit=True)


def db_url(admin_url: str, name: str) -> str:
    """``admin_url`` pointing at database ``name`` (libpq form, no driver suffix)."""
    return admin_url.replace("+psycopg", "").rsplit("/", 1)[0] + f"/{name}"


def read_marker(admin_url: str, name: str) -> dict[str, Any] | None:
    """The JSON the database's COMMENT holds, or None (no database, or no marker)."""
    with admin_connect(admin_url) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (name,),
        ).fetchone()
    if row is None or not row[0]:
        return None
    try:
        found = json.loads(row[0])
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def write_marker(url: str, name: str, marker: dict[str, Any]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        text = json.dumps(marker).replace("'", "''")
        conn.execute(f"COMMENT ON DATABASE \"{name}\" IS '{text}'")


def recreate(admin_url: str, name: str) -> str:
    """Drop and create the bench's own database; build the schema with the migrations."""
    with admin_connect(admin_url) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = db_url(admin_url, name)
    store = Store(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        store.migrate()
    finally:
        store.engine.dispose()
    return url


# --------------------------------------------------------------------- users
@dataclass
class People:
    """Who the rows name: user ids by name, and the reviewers of each team."""

    ids: dict[str, str] = field(default_factory=dict)
    by_team: dict[str | None, list[str]] = field(default_factory=dict)


def add_users(url: str) -> People:
    store = Store(url.replace("postgresql://", "postgresql+psycopg://", 1))
    people = People()
    plan = [(REVIEWER, "reviewer", REVIEWER_TEAMS), (OPERATOR, "operator", ())]
    plan += [(f"{team}{n}", "reviewer", (team,)) for team in TEAMS for n in range(1, 5)]

    def work(s: Any) -> None:
        for name, role, teams in plan:
            user = auth.create_user(s, name, role=role, password=PASSWORD, teams=teams)
            people.ids[name] = user.id

    try:
        store.run(work)
    finally:
        store.engine.dispose()
    for name, _, teams in plan[:1] + plan[2:]:
        for team in teams:
            people.by_team.setdefault(team, []).append(name)
    people.by_team[None] = [n for n, role, _ in plan if role == "reviewer"]
    return people


# ---------------------------------------------------------------------- rows
def _ts(value: datetime | None) -> str:
    return "\\N" if value is None else value.isoformat(sep=" ")


def _text(value: str | None) -> str:
    if value is None:
        return "\\N"
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def _json(value: Any) -> str:
    return "\\N" if value is None else _text(json.dumps(value))


class Rows:
    """COPY text lines, by table, for one batch of runs."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {table: [] for table in COLUMNS}

    def add(self, table: str, *values: str | int) -> None:
        self.lines[table].append("\t".join(map(str, values)))


class Maker:
    """Generates the runs, steps, attempts, items, comments and audit rows."""

    def __init__(self, spec: Spec, people: People, now: datetime) -> None:
        self.spec, self.people, self.now = spec, people, now
        self.rng = random.Random(spec.seed)
        self.flows = FLOWS

    def new_id(self, at: datetime) -> str:
        ms = int((at - datetime(1970, 1, 1)).total_seconds() * 1000)
        return f"{ms:012x}{self.rng.getrandbits(80):020x}"

    def pick(self, table: tuple[tuple[Any, ...], ...]) -> tuple[Any, ...]:
        x, acc = self.rng.random(), 0.0
        for row in table:
            acc += row[-1]
            if x < acc:
                return row
        return table[-1]

    def order(self, n: int) -> dict[str, Any]:
        rng = self.rng
        return {
            "order_id": f"SO-{n:07d}",
            "customer": f"C-{rng.randrange(5000):05d}",
            "amount": rng.randrange(10, 250_000),
            "currency": "EUR",
            "lines": rng.randrange(1, 40),
        }

    # -- one run -----------------------------------------------------------
    def run(
        self, rows: Rows, n: int, created: datetime, flow: tuple[Any, ...], plan: dict[str, Any]
    ) -> None:
        """One run of ``flow``; ``plan`` says where it stopped and how its item ended."""
        name = flow[0]
        run_id = self.new_id(created)
        data = self.order(n)
        paused, n_steps, outcome = plan["at"], plan["steps"], plan["outcome"]
        status = {"open": "needs_review", ABORTED: "failed", None: "succeeded"}.get(
            outcome, "succeeded"
        )
        finish = created + timedelta(seconds=2 * n_steps + plan.get("wait", 0))
        rows.add(
            "runs",
            run_id,
            name,
            status,
            _json(data),
            _json(data) if status == "succeeded" else "\\N",
            "aborted by reviewer" if status == "failed" else "\\N",
            "manual",
            _ts(created),
            _ts(created),
            _ts(None if status == "needs_review" else finish),
        )
        for i in range(n_steps):
            at = created + timedelta(seconds=2 * i)
            if i == paused:
                self.reviewed(rows, run_id, flow, at, data, plan)
                continue
            if paused is not None and i > paused:
                at += timedelta(seconds=plan.get("wait", 0) + 3)
            rows.add(
                "steps",
                self.new_id(at),
                run_id,
                f"s{i}",
                f"s{i}",
                "step",
                "default",
                "succeeded",
                _json(data),
                _json(data),
                1,
                3,
                0,
                "\\N",
                "\\N",
                "\\N",
                _ts(at),
                _ts(at),
                _ts(at + timedelta(milliseconds=self.rng.randrange(20, 1500))),
            )

    def reviewed(
        self,
        rows: Rows,
        run_id: str,
        flow: tuple[Any, ...],
        at: datetime,
        data: dict[str, Any],
        plan: dict[str, Any],
    ) -> None:
        """The step that went to review, its attempts, its item, comments and audit rows."""
        rng = self.rng
        name, team, due = flow
        key = f"s{plan['at']}"
        step_id = self.new_id(at)
        kind, error_class, _ = self.pick(REASONS)
        tries = 1 if kind in ("business", "question", "policy") else 3
        message = self.message(kind, data)
        opened = at + timedelta(seconds=tries)
        outcome = plan["outcome"]
        for number in range(1, tries + 1):
            last = number == tries
            rows.add(
                "attempts",
                self.new_id(at),
                step_id,
                run_id,
                number,
                "failed",
                "worker-1:4711:ab12cd",
                f"{run_id}:{key}",
                kind if last else "transient",
                _text(f"Traceback (most recent call last):\n  ...\n{error_class}: {message}\n"),
                _ts(at + timedelta(seconds=number - 1)),
                _ts(at + timedelta(seconds=number - 0.5)),
            )
        item_id = self.new_id(opened)
        team_people = self.people.by_team[team]
        resolver = rng.choice(team_people)
        claimed = rng.random() < (0.33 if outcome == "open" else 0.5)
        holder = rng.choice(team_people) if claimed else None
        claimed_at = opened + timedelta(minutes=rng.randrange(1, 240)) if claimed else None
        resolved_at = opened + timedelta(seconds=plan.get("wait", 0))
        if claimed_at is not None:
            claimed_at = min(claimed_at, self.now if outcome == "open" else resolved_at)
        due_at = opened + timedelta(seconds=due) if due else None
        escalated = (
            outcome == "open" and due_at is not None and due_at < self.now and rng.random() < 0.3
        )
        version = 1 + (1 if claimed else 0) + (0 if outcome == "open" else 1)
        step_status, step_input, output, completed_by = "needs_review", data, None, None
        attempts_count = tries
        note = None
        if outcome in ("retried", "edited"):
            step_status, output, attempts_count = "succeeded", data, tries + 1
            if outcome == "edited":
                step_input = {**data, "customer": f"C-{rng.randrange(5000):05d}"}
                output = step_input
            rows.add(
                "attempts",
                self.new_id(resolved_at),
                step_id,
                run_id,
                tries + 1,
                "succeeded",
                "worker-2:4712:cd34ef",
                f"{run_id}:{key}",
                "\\N",
                "\\N",
                _ts(resolved_at),
                _ts(resolved_at + timedelta(milliseconds=300)),
            )
        elif outcome == "completed":
            step_status, output, completed_by = "succeeded", data, resolver
        elif outcome == "skipped":
            step_status, output, completed_by = "skipped", data, resolver
            note = "done by hand in the ERP"
        elif outcome == ABORTED:
            step_status, note = "failed", "customer cancelled the order"
        closed = outcome != "open"
        rows.add(
            "steps",
            step_id,
            run_id,
            key,
            key,
            "step",
            "default",
            step_status,
            _json(step_input),
            _json(output),
            attempts_count,
            tries if not closed else attempts_count + 2,
            0,
            kind,
            _text(message),
            _text(completed_by),
            _ts(at),
            _ts(at),
            _ts(resolved_at if closed else None),
        )
        rows.add(
            "review_items",
            item_id,
            run_id,
            step_id,
            name,
            key,
            "closed" if closed else "open",
            kind,
            error_class,
            _text(message),
            _json(data),
            _json(self.form() if kind == "question" else None),
            outcome if closed else "\\N",
            resolver if closed else "\\N",
            _text(note),
            _text(team),
            self.people.ids[holder] if holder else "\\N",
            _ts(claimed_at),
            _ts(due_at),
            _ts(due_at + timedelta(hours=1) if escalated and due_at else None),
            1 if escalated else 0,
            version,
            _ts(opened),
            _ts(resolved_at if closed else claimed_at),
            _ts(resolved_at if closed else None),
        )
        self.trail(rows, item_id, opened, holder, claimed_at, resolver if closed else None)
        if closed:
            after = {"status": "closed", "version": version, "resolution": outcome, "note": note}
            rows.add(
                "audit_log",
                _ts(resolved_at),
                resolver,
                f"review.{ACTION_OF[outcome]}",
                "review_item",
                item_id,
                _json({"status": "open", "version": version - 1}),
                _json(after),
            )

    def trail(
        self,
        rows: Rows,
        item_id: str,
        opened: datetime,
        holder: str | None,
        claimed_at: datetime | None,
        resolver: str | None,
    ) -> None:
        rng = self.rng
        if holder and claimed_at:
            rows.add(
                "audit_log",
                _ts(claimed_at),
                holder,
                "review.claim",
                "review_item",
                item_id,
                _json({"status": "open", "version": 1, "assignee": None}),
                _json({"status": "open", "version": 2, "assignee": holder}),
            )
        if rng.random() < 0.25:
            for c in range(rng.randrange(1, 4)):
                author = holder or resolver or REVIEWER
                at = min(opened + timedelta(minutes=10 * (c + 1)), self.now)
                body = rng.choice(COMMENTS)
                rows.add(
                    "review_comments",
                    self.new_id(at),
                    item_id,
                    self.people.ids[author],
                    author,
                    body,
                    _ts(at),
                )
                rows.add(
                    "audit_log",
                    _ts(at),
                    author,
                    "review.comment",
                    "review_item",
                    item_id,
                    "\\N",
                    _json({"text": body}),
                )

    def message(self, kind: str, data: dict[str, Any]) -> str:
        if kind == "business":
            return f"customer {data['customer']} is blocked for orders over {data['amount'] // 2}"
        if kind == "question":
            return f"approve order {data['order_id']} of {data['amount']} {data['currency']}?"
        if kind == "policy":
            return "target erp-test.internal is not on the allow-list"
        if kind == "transient":
            return "timed out connecting to erp.example.com:443 (3 attempts)"
        return f"ERP answered 422: order {data['order_id']}: field 'vat_id' is invalid"

    @staticmethod
    def form() -> dict[str, Any]:
        return {
            "title": "Approval",
            "type": "object",
            "properties": {"approved": {"type": "boolean"}, "approver": {"type": "string"}},
            "required": ["approved"],
        }

    # -- the plan ----------------------------------------------------------
    def plans(self) -> list[dict[str, Any]]:
        """Where each run stopped and how its item ended; filler runs have no item."""
        spec, rng = self.spec, self.rng
        n_open = round(spec.items * spec.open_share)
        plans: list[dict[str, Any]] = []
        for i in range(spec.items):
            at = rng.randrange(STEPS)
            if i < n_open:
                plans.append({"at": at, "steps": at + 1, "outcome": "open"})
                continue
            outcome = self.pick((*RESOLUTIONS, (ABORTED, 0.1)))[0]
            steps = at + 1 if outcome == ABORTED else STEPS
            plans.append({"at": at, "steps": steps, "outcome": outcome})
        short = spec.step_rows - sum(p["steps"] for p in plans)
        if short < 0:
            raise SystemExit(f"{spec.items} items need more than {spec.step_rows} step rows")
        fillers, rest = divmod(short, STEPS)
        # the remainder: open runs that stopped one step later
        for p in plans[:n_open]:
            if rest and p["at"] < STEPS - 1:
                p["at"] += 1
                p["steps"] += 1
                rest -= 1
        plans += [{"at": None, "steps": STEPS, "outcome": None} for _ in range(fillers)]
        for plan in plans:
            self.timing(plan)
        plans.sort(key=lambda p: p["created"])  # rows go in in time order, as they would
        return plans

    def timing(self, plan: dict[str, Any]) -> None:
        """When the run started (open items within a fortnight, mostly recent; the rest
        within 180 days) and how long a closed item waited for its reviewer."""
        rng = self.rng
        if plan["outcome"] == "open":
            age = 14 * 86400 * rng.random() ** 2
        else:
            age = 180 * 86400 * rng.random()
        plan["created"] = self.now - timedelta(seconds=age + 4 * STEPS)
        if plan["outcome"] not in ("open", None):
            plan["wait"] = min(rng.randrange(300, 4 * 24 * 3600), int(age * 0.9))

    def batches(self) -> Iterator[Rows]:
        plans = self.plans()
        for start in range(0, len(plans), BATCH):
            rows = Rows()
            for n, plan in enumerate(plans[start : start + BATCH], start):
                flow = self.flows[self.rng.randrange(len(self.flows))]
                self.run(rows, n, plan["created"], flow, plan)
            yield rows


COMMENTS = (
    "Called the customer; they will send the corrected VAT id tomorrow.",
    "ERP was down for maintenance, retrying after 14:00.",
    "Checked with finance: the credit limit was raised.",
    "Duplicate of an earlier order, aborting.",
    "Not ours - belongs to the shipping team.",
)


# ---------------------------------------------------------------------- load
def load(url: str, spec: Spec, people: People, log: Callable[[str], None]) -> dict[str, int]:
    """COPY every batch in one transaction; returns the rows written per table."""
    maker = Maker(spec, people, utcnow())
    counts = dict.fromkeys(COLUMNS, 0)
    started = time.monotonic()
    with psycopg.connect(url) as conn:
        conn.execute("SET synchronous_commit = off")
        try:  # the rows are consistent by construction: skip the per-row foreign key checks
            with conn.transaction():
                conn.execute("SET session_replication_role = replica")
        except psycopg.Error:
            pass
        with conn.transaction():
            for n, rows in enumerate(maker.batches(), 1):
                for table, lines in rows.lines.items():
                    if not lines:
                        continue
                    cols = ", ".join(COLUMNS[table].split())
                    with conn.cursor().copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                        copy.write("\n".join(lines) + "\n")
                    counts[table] += len(lines)
                if n % 5 == 0:
                    log(
                        f"  {counts['steps']:>9,} step rows, {counts['review_items']:>7,} items "
                        f"({time.monotonic() - started:.0f} s)"
                    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    return counts
