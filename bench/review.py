"""Review queue benchmark: server time of the queue, the item page and actions on PostgreSQL.

    .venv/bin/python bench/review.py [--reuse] [--samples 300] [--only dashboard] [--explain]

It (re)creates its own database ``hub_bench_review`` on 127.0.0.1:5432
(``--pg-url`` names the server's admin database, ``--db`` another name),
builds the schema with the hub's migrations, and loads 100,000 review items
and 1,000,000 step rows with COPY (``bench/review_data.py`` says what the
rows are; the flows are ``bench/review_flows.py``). With ``--reuse`` a
database that already holds the same data is used as it is, so a rerun
skips the load.

The web app (``hub.web.app.create_app``) runs in this process and is called
through Starlette's TestClient, one request at a time. Server time is
measured around the app (from the request entering it to the last byte of
its response, authentication included) with ``time.perf_counter``; every
case is warmed up first. ``sql`` is the mean time per request spent in the
database driver, ``stmts`` the mean number of statements.

Cases:

- queue: ``GET /api/reviews`` as ``rita`` (a reviewer in two of the five
  teams) and as ``otto`` (an operator, who sees everything): newest and
  urgent first, by flow, overdue, ``assignee=me``, closed items, and pages
  2-10 through the cursor; ``GET /reviews`` (the queue page) too when the
  app has that route, with a session cookie as a browser sends;
- item: ``GET /api/reviews/{id}`` (and the page ``/reviews/{id}`` when
  present) over random items each user may see;
- dashboard: ``GET /dashboard`` (when the app has that route) as ``otto``
  with a session cookie, for each window (``1h``, ``24h``, ``7d``) and for
  the week of one flow;
- action: ``POST /api/reviews/{id}/claim``, ``/comment`` and ``/retry`` with
  ``rita``'s bearer token, each on items no other sample touched. The engine's
  publish is recorded, not sent: no broker time is included. The rows the
  actions change are copied aside first and put back afterwards, so a rerun
  finds the same queue.

Targets (figures only; nothing is asserted): p95 under 100 ms for the queue,
the item page and the dashboard, under 50 ms for an action, each the worst
of its cases.
The last line of output is one JSON object of the figures. ``--explain``
prints EXPLAIN (ANALYZE, BUFFERS) of the statements of each case that took
longer than ``--explain-ms``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import review_data as data  # noqa: E402
from bench.review_flows import FLOWS, registry  # noqa: E402
from bench.review_snapshot import Snapshot  # noqa: E402

TARGET_QUEUE_MS = 100.0
TARGET_ITEM_MS = 100.0
TARGET_DASHBOARD_MS = 100.0
TARGET_ACTION_MS = 50.0
PAGES = 10  # cursor pages walked per paged case
ACTIONS = ("claim", "comment", "retry")
KINDS = ("queue", "item", "dashboard", "action")  # the kinds of case, in the order timed
WINDOWS = ("1h", "24h", "7d")  # the dashboard's windows


def log(text: str = "") -> None:
    print(text, flush=True)


def pct(values: Sequence[float], p: float) -> float | None:
    """Percentile ``p`` (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# ------------------------------------------------------------------ timing
class Timed:
    """ASGI wrapper: the time from a request entering the app to its last body byte."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last_ms = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()

        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last_ms = (time.perf_counter() - start) * 1000

        await self.app(scope, receive, timed_send)


class SqlMeter:
    """Time and count of the statements the app's engine runs; optionally keeps them."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.ms = 0.0
        self.count = 0
        self.keep: list[tuple[str, Any, float]] | None = None
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(
        self, conn: Any, _cur: Any, _stmt: str, _params: Any, _ctx: Any, _many: bool
    ) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    def _after(self, conn: Any, _cur: Any, stmt: str, params: Any, _ctx: Any, _many: bool) -> None:
        ms = (time.perf_counter() - conn.info.pop("bench_t0", time.perf_counter())) * 1000
        self.ms += ms
        self.count += 1
        if self.keep is not None:
            self.keep.append((stmt, params, ms))

    def reset(self) -> None:
        self.ms, self.count = 0.0, 0


# ------------------------------------------------------------------- cases
Request = tuple[str, str, dict[str, Any] | None]  # method, path, JSON body


@dataclass
class Case:
    group: str  # queue, item or action
    name: str
    client: Any
    requests: Callable[[int], Request]  # the i-th request
    times: list[float] = field(default_factory=list)
    sql_ms: list[float] = field(default_factory=list)
    stmts: list[int] = field(default_factory=list)
    errors: dict[int, int] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 2)

        n = len(self.sql_ms) or 1
        return {
            "n": len(self.times),
            "p50_ms": r(pct(self.times, 50)),
            "p95_ms": r(pct(self.times, 95)),
            "p99_ms": r(pct(self.times, 99)),
            "max_ms": r(max(self.times, default=None)),
            "sql_ms": r(sum(self.sql_ms) / n),
            "stmts": r(sum(self.stmts) / n),
            "errors": {str(k): v for k, v in self.errors.items()},
        }


class Bench:
    """The app around a hub on the bench's database, its clients and the cases."""

    def __init__(self, url: str, args: argparse.Namespace) -> None:
        from starlette.exceptions import StarletteDeprecationWarning

        from hub.runtime import Hub
        from hub.settings import Settings
        from hub.web.app import create_app

        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from fastapi.testclient import TestClient

        self.args = args
        self.rng = random.Random(args.seed)
        self.home = tempfile.TemporaryDirectory(prefix="hub-bench-review-")
        sa_url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        settings = Settings(home=Path(self.home.name), database_url=sa_url, broker_url=None)
        self.hub = Hub(settings, registry=registry())
        self.published: list[tuple[str, str, float | None]] = []
        self.hub.engine.publish = lambda step_id, queue, countdown=None: self.published.append(
            (step_id, queue, countdown)
        )
        self.app = create_app(self.hub)
        self.timed = Timed(self.app)
        self.sql = SqlMeter(self.hub.store.engine)
        self.client_of = lambda: TestClient(self.timed, raise_server_exceptions=False)
        self.pages = page_routes(self.app)

    # -- clients ----------------------------------------------------------
    def bearer(self, name: str) -> Any:
        from hub import auth

        token = self.hub.store.run(
            lambda s: auth.create_token(s, auth.find_user(s, name), "bench-review")
        )
        client = self.client_of()
        client.headers["Authorization"] = f"Bearer {token}"
        return client

    def browser(self, name: str) -> Any:
        """A client logged in through the login form, as a browser is."""
        client = self.client_of()
        form = client.get("/login").text
        found = re.search(r'name="csrf_token" value="([^"]+)"', form)
        if found is None:
            raise SystemExit("the login page has no csrf_token field")
        answer = client.post(
            "/login",
            data={"name": name, "password": data.PASSWORD, "csrf_token": found.group(1)},
            follow_redirects=False,
        )
        if answer.status_code != 303:
            raise SystemExit(f"login as {name} failed: {answer.status_code} {answer.text[:200]}")
        return client

    # -- running ----------------------------------------------------------
    def call(self, case: Case, i: int) -> tuple[int, float]:
        method, path, body = case.requests(i)
        self.sql.reset()
        if method == "GET":
            answer = case.client.get(path)
        else:
            answer = case.client.post(path, json=body or {})
        return answer.status_code, self.timed.last_ms

    def measure(self, case: Case, warmup: int, samples: int) -> None:
        for i in range(warmup):
            self.call(case, i)
        for i in range(warmup, warmup + samples):
            status, ms = self.call(case, i)
            if status >= 400:
                case.errors[status] = case.errors.get(status, 0) + 1
            case.times.append(ms)
            case.sql_ms.append(self.sql.ms)
            case.stmts.append(self.sql.count)

    def explain(self, case: Case, i: int, over_ms: float) -> None:
        """EXPLAIN (ANALYZE, BUFFERS) each statement of one request that took over ``over_ms``."""
        self.sql.keep = []
        self.call(case, i)
        kept, self.sql.keep = self.sql.keep, None
        slow = [(stmt, params, ms) for stmt, params, ms in kept if ms >= over_ms]
        log(f"\n== {case.group}/{case.name}: {len(kept)} statements, {len(slow)} over {over_ms} ms")
        if not slow:
            return
        raw = self.hub.store.engine.raw_connection()
        try:
            cur = raw.cursor()
            for stmt, params, ms in slow:
                log(f"-- {ms:.1f} ms:\n{stmt}\n-- params: {params}")
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + stmt, params)
                for (line,) in cur.fetchall():
                    log("   " + line)
            raw.rollback()
        finally:
            raw.close()

    def close(self) -> None:
        self.hub.close()
        self.home.cleanup()


def get_paths(routes: Sequence[Any], prefix: str = "") -> list[str]:
    """The paths of every GET route, also inside included routers (FastAPI may keep
    those as one route holding the router and its include prefix)."""
    out: list[str] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            out += get_paths(inner.routes, prefix + getattr(context, "prefix", ""))
        elif "GET" in (getattr(route, "methods", None) or ()):
            out.append(prefix + route.path)
    return out


def page_routes(app: Any) -> dict[str, str | None]:
    """The paths of the queue page, the item page and the dashboard, when the app has them."""
    found: dict[str, str | None] = {"queue": None, "item": None, "dashboard": None}
    for path in get_paths(app.routes):
        if path == "/dashboard":
            found["dashboard"] = path
        elif path == "/reviews":
            found["queue"] = path
        elif re.fullmatch(r"/reviews/\{[A-Za-z_]+\}", path):
            found["item"] = path
    return found


# ---------------------------------------------------------------- the data
@dataclass
class Ids:
    """Item ids each part of the bench works on, read from the database."""

    reviewer_items: list[str]
    all_items: list[str]
    actions: dict[str, list[str]]
    reviewer_flows: list[str]


def pick_ids(url: str, rng: random.Random, need: int) -> Ids:
    """Random items to show, and disjoint sets of open items for each action."""
    import psycopg

    visible = "(team IS NULL OR team = ANY(%(teams)s))"
    args = {"teams": list(data.REVIEWER_TEAMS), "me": data.REVIEWER}
    with psycopg.connect(url) as conn:

        def ids(sql: str) -> list[str]:
            return [r[0] for r in conn.execute(sql, args).fetchall()]

        reviewer_items = ids(f"SELECT id FROM review_items WHERE {visible}")
        all_items = ids("SELECT id FROM review_items")
        free = ids(
            f"SELECT id FROM review_items WHERE status = 'open' AND {visible} AND "
            "(assignee_id IS NULL OR assignee_id = (SELECT id FROM users WHERE name = %(me)s)) "
            "ORDER BY id"
        )
    rng.shuffle(free)
    if len(free) < need * len(ACTIONS):
        raise SystemExit(
            f"only {len(free)} open items {data.REVIEWER} may act on; "
            f"{need * len(ACTIONS)} are needed (lower --samples)"
        )
    actions = {a: free[n * need : (n + 1) * need] for n, a in enumerate(ACTIONS)}
    flows = [name for name, team, _ in FLOWS if team is None or team in data.REVIEWER_TEAMS]
    return Ids(
        rng.sample(reviewer_items, min(5000, len(reviewer_items))),
        rng.sample(all_items, min(5000, len(all_items))),
        actions,
        flows,
    )


def cursors(client: Any, query: str, pages: int) -> list[str]:
    """The cursors of pages 2..``pages`` of ``/api/reviews?{query}``."""
    out: list[str] = []
    cursor = None
    for _ in range(pages - 1):
        path = f"/api/reviews?{query}&counts=false" + (f"&cursor={cursor}" if cursor else "")
        answer = client.get(path)
        answer.raise_for_status()
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            break
        out.append(cursor)
    return out


def fixed(path: str) -> Callable[[int], Request]:
    """The same GET for every sample."""
    return lambda i: ("GET", path, None)


def queue_cases(bench: Bench, ids: Ids) -> list[Case]:
    rita, otto = bench.bearer(data.REVIEWER), bench.bearer(data.OPERATOR)
    all_flows = [name for name, _, _ in FLOWS]

    def by_flow(base: str, flows: list[str]) -> Callable[[int], Request]:
        return lambda i: ("GET", f"{base}?flow={flows[i % len(flows)]}", None)

    def paged(client: Any, query: str) -> Callable[[int], Request]:
        pages = cursors(client, query, PAGES) or [""]
        return lambda i: ("GET", f"/api/reviews?{query}&cursor={pages[i % len(pages)]}", None)

    api = "/api/reviews"
    cases = [
        Case("queue", "api reviewer newest", rita, fixed(api)),
        Case("queue", "api reviewer urgent", rita, fixed(f"{api}?sort=urgent")),
        Case("queue", "api reviewer by flow", rita, by_flow(api, ids.reviewer_flows)),
        Case("queue", "api reviewer overdue", rita, fixed(f"{api}?overdue=true&sort=urgent")),
        Case("queue", "api reviewer mine", rita, fixed(f"{api}?assignee=me")),
        Case("queue", "api reviewer newest p2-10", rita, paged(rita, "sort=newest")),
        Case("queue", "api reviewer urgent p2-10", rita, paged(rita, "sort=urgent")),
        Case("queue", "api operator newest", otto, fixed(api)),
        Case("queue", "api operator urgent", otto, fixed(f"{api}?sort=urgent")),
        Case("queue", "api operator by flow", otto, by_flow(api, all_flows)),
        Case("queue", "api operator overdue", otto, fixed(f"{api}?overdue=true&sort=urgent")),
        Case("queue", "api operator closed", otto, fixed(f"{api}?status=closed")),
        Case("queue", "api operator newest p2-10", otto, paged(otto, "sort=newest")),
    ]
    page = bench.pages["queue"]
    if page:
        rita_b, otto_b = bench.browser(data.REVIEWER), bench.browser(data.OPERATOR)
        cases += [
            Case("queue", "page reviewer newest", rita_b, fixed(page)),
            Case("queue", "page reviewer urgent", rita_b, fixed(f"{page}?sort=urgent")),
            Case("queue", "page reviewer by flow", rita_b, by_flow(page, ids.reviewer_flows)),
            Case("queue", "page reviewer rows (poll)", rita_b, fixed(f"{page}?fragment=1")),
            Case("queue", "page operator newest", otto_b, fixed(page)),
            Case(
                "queue", "page operator overdue", otto_b, fixed(f"{page}?overdue=yes&sort=urgent")
            ),
        ]
    return cases


def item_cases(bench: Bench, ids: Ids) -> list[Case]:
    rita, otto = bench.bearer(data.REVIEWER), bench.bearer(data.OPERATOR)

    def over(base: str, items: list[str]) -> Callable[[int], Request]:
        return lambda i: ("GET", f"{base}/{items[i % len(items)]}", None)

    cases = [
        Case("item", "api reviewer", rita, over("/api/reviews", ids.reviewer_items)),
        Case("item", "api operator", otto, over("/api/reviews", ids.all_items)),
    ]
    page = bench.pages["item"]
    if page:
        base = page.rsplit("/", 1)[0]
        rita_b, otto_b = bench.browser(data.REVIEWER), bench.browser(data.OPERATOR)
        cases += [
            Case("item", "page reviewer", rita_b, over(base, ids.reviewer_items)),
            Case("item", "page operator", otto_b, over(base, ids.all_items)),
        ]
    return cases


def dashboard_cases(bench: Bench, _ids: Ids) -> list[Case]:
    page = bench.pages["dashboard"]
    if not page:
        return []
    otto_b = bench.browser(data.OPERATOR)
    flows = [name for name, _, _ in FLOWS]

    def by_flow(i: int) -> Request:
        return ("GET", f"{page}?window=7d&flow={flows[i % len(flows)]}", None)

    cases = [Case("dashboard", f"page {w}", otto_b, fixed(f"{page}?window={w}")) for w in WINDOWS]
    return [*cases, Case("dashboard", "page 7d one flow", otto_b, by_flow)]


def action_cases(bench: Bench, ids: Ids) -> list[Case]:
    rita = bench.bearer(data.REVIEWER)
    bodies: dict[str, dict[str, Any]] = {
        "claim": {},
        "comment": {"text": "Asked the customer for the VAT id; waiting for an answer."},
        "retry": {},
    }

    def act(action: str) -> Callable[[int], Request]:
        items = ids.actions[action]
        return lambda i: ("POST", f"/api/reviews/{items[i]}/{action}", bodies[action])

    return [Case("action", f"api {a}", rita, act(a)) for a in ACTIONS]


# -------------------------------------------------------------------- main
def prepare(args: argparse.Namespace) -> str:
    """The bench's database, loaded (or reused as it is); returns its URL."""
    spec = data.Spec(items=args.items, step_rows=args.step_rows, seed=args.seed)
    url = data.db_url(args.pg_url, args.db)
    marker = data.read_marker(args.pg_url, args.db)
    wanted = spec.marker()
    if args.reuse and marker and {k: marker.get(k) for k in wanted} == wanted:
        if Snapshot(url).restore():
            log("put back the rows a previous run's actions changed")
        log(f"reusing database {args.db} (loaded {marker.get('loaded_at')})")
        return url
    if args.reuse:
        log(f"database {args.db} does not hold this data; loading it")
    started = time.monotonic()
    url = data.recreate(args.pg_url, args.db)
    people = data.add_users(url)
    log(f"database {args.db}: schema by migrations, users; loading with COPY ...")
    counts = data.load(url, spec, people, log)
    took = time.monotonic() - started
    log(f"loaded in {took:.1f} s: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
    from hub.models import utcnow

    data.write_marker(
        url,
        args.db,
        {**wanted, "loaded_at": utcnow().isoformat(timespec="seconds"), "load_s": round(took, 1)},
    )
    return url


def table_counts(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        return {
            t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
            for t in ("review_items", "steps", "runs", "attempts", "review_comments", "audit_log")
        }


def report(cases: list[Case]) -> None:
    log("")
    head = (
        f"{'case':<34} {'n':>5} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8} {'sql':>8} {'stmts':>6}"
    )
    log(head + "   (server time, ms)")
    group = None
    for c in cases:
        if c.group != group:
            group = c.group
            log(f"-- {group}")
        f = c.figures()
        errors = f" errors {f['errors']}" if f["errors"] else ""
        log(
            f"{c.name:<34} {f['n']:>5} {f['p50_ms']:>8.1f} {f['p95_ms']:>8.1f} "
            f"{f['p99_ms']:>8.1f} {f['max_ms']:>8.1f} {f['sql_ms']:>8.1f} {f['stmts']:>6.1f}{errors}"
        )


def summarize(
    cases: list[Case], counts: dict[str, int], pages: dict[str, str | None], wall: float
) -> dict[str, Any]:
    out: dict[str, Any] = {"review_items": counts["review_items"], "step_rows": counts["steps"]}
    targets = {
        "queue": TARGET_QUEUE_MS,
        "item": TARGET_ITEM_MS,
        "dashboard": TARGET_DASHBOARD_MS,
        "action": TARGET_ACTION_MS,
    }
    met: dict[str, bool | None] = {}
    log("")
    log("targets (p95 of the worst case of each kind; figures only, nothing asserted):")
    for group, target in targets.items():
        mine = [c for c in cases if c.group == group and c.times]
        worst = max(mine, key=lambda c: pct(c.times, 95) or 0.0, default=None)
        p95 = None if worst is None else round(pct(worst.times, 95) or 0.0, 2)
        errors = sum(sum(c.errors.values()) for c in mine)
        ok = None if p95 is None else p95 < target and errors == 0
        out[f"{group}_p95_ms"] = p95
        out[f"{group}_worst_case"] = worst.name if worst else None
        met[group] = ok
        verdict = {None: "n/a", True: "met", False: "MISSED"}[ok]
        where = f" ({worst.name})" if worst else ""
        failed = f", {errors} error answers" if errors else ""
        log(f"  {group} p95 < {target:.0f} ms: {p95} ms{where}{failed} -> {verdict}")
    met["all"] = all(v is True for v in met.values())
    out["targets_met"] = met
    out["html_pages"] = {k: (v or "not present") for k, v in pages.items()}
    out["cases"] = {f"{c.group}/{c.name}": c.figures() for c in cases}
    out["rows"] = counts
    out["cpus"] = os.cpu_count()
    out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    out["wall_s"] = round(wall, 1)
    return out


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--db", default="hub_bench_review", help="the bench's own database (recreated)")
    p.add_argument("--reuse", action="store_true", help="keep the database if it holds the data")
    p.add_argument("--items", type=int, default=100_000, help="review items (one per run)")
    p.add_argument("--step-rows", type=int, default=1_000_000, help="step rows in all")
    p.add_argument("--samples", type=int, default=300, help="timed requests per case")
    p.add_argument("--warmup", type=int, default=20, help="untimed requests per case first")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--only",
        choices=KINDS,
        action="append",
        help="time only these kinds of case (repeatable; default all)",
    )
    p.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE slow statements")
    p.add_argument("--explain-ms", type=float, default=5.0, help="what --explain calls slow")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    started = time.monotonic()
    log(
        f"bench/review.py: {args.items:,} review items, {args.step_rows:,} step rows, "
        f"{args.samples} samples per case after {args.warmup} warm-up requests, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    url = prepare(args)
    counts = table_counts(url)
    log("rows: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
    bench = Bench(url, args)
    snapshot = Snapshot(url)
    try:
        for kind, path in bench.pages.items():
            log(f"{kind} page: {'GET ' + path if path else 'not present'}")
        ids = pick_ids(url, bench.rng, args.samples + args.warmup + 1)  # +1: --explain
        wanted = set(args.only or KINDS)
        makers = {"queue": queue_cases, "item": item_cases, "dashboard": dashboard_cases}
        cases = [c for kind, make in makers.items() if kind in wanted for c in make(bench, ids)]
        for case in cases:
            bench.measure(case, args.warmup, args.samples)
        actions = action_cases(bench, ids) if "action" in wanted else []
        if actions:
            snapshot.take([i for items in ids.actions.values() for i in items])
        try:
            for case in actions:
                bench.measure(case, args.warmup, args.samples)
            if args.explain:
                for case in cases:
                    bench.explain(case, 0, args.explain_ms)
                for case in actions:
                    bench.explain(case, args.warmup + args.samples, args.explain_ms)
        finally:
            snapshot.restore()
        cases += actions
    finally:
        bench.close()
    report(cases)
    figures = summarize(cases, counts, bench.pages, time.monotonic() - started)
    log(json.dumps(figures))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
