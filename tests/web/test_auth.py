"""Logins, sessions, CSRF, roles and API tokens, over a real store (SQLite and PostgreSQL).

RELIABILITY items 35 (CSRF: no token or cross-site is 403 and changes
nothing; GET on an action URL is 405) and 38 (cookie HttpOnly and SameSite,
id rotated at login, dead after logout, idle timeout) are checked here.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from http.cookies import SimpleCookie

import pytest
from sqlalchemy import func, select, update

from hub import auth
from hub import models as m
from hub.runtime import Hub
from hub.web import create_app
from hub.web.security import CSP, SESSION_COOKIE
from tests.web.apps import (
    PASSWORD,
    Clock,
    TestClient,
    add_user,
    bearer,
    form_token,
    log_in,
    paused_run,
    token_for,
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(hub: Hub, clock: Clock) -> Iterator[TestClient]:
    add_user(hub, "vic", "viewer")
    add_user(hub, "rita", "reviewer", "finance")
    add_user(hub, "otto", "operator")
    with TestClient(create_app(hub, clock=clock)) as c:
        yield c


def session_cookie(response: object) -> SimpleCookie:
    header = [v for k, v in response.headers.multi_items() if k == "set-cookie"]  # type: ignore[attr-defined]
    jar: SimpleCookie = SimpleCookie()
    for value in header:
        jar.load(value)
    assert SESSION_COOKIE in jar, header
    return jar


def csrf(client: TestClient) -> str:
    return str(client.get("/api/me").json()["csrf_token"])


def run_status(hub: Hub, run_id: str) -> str:
    with hub.store.read() as s:
        return s.get(m.Run, run_id).status  # type: ignore[union-attr]


def count(hub: Hub, model: type[m.Base]) -> int:
    with hub.store.read() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


# ------------------------------------------------------------------ log in
def test_logging_in_sets_an_httponly_samesite_cookie_whose_hash_alone_is_stored(
    client: TestClient, hub: Hub
) -> None:
    response = log_in(client, "otto")
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    morsel = session_cookie(response)[SESSION_COOKIE]
    assert morsel["httponly"] is True
    assert morsel["samesite"].lower() == "lax"
    assert morsel["path"] == "/"
    assert not morsel["secure"]
    with hub.store.read() as s:
        ids = s.scalars(select(m.WebSession.id)).all()
    assert ids == [auth.digest(morsel.value)]
    assert client.get("/api/me").json()["name"] == "otto"


def test_the_cookie_is_secure_when_configured(hub: Hub, clock: Clock) -> None:
    add_user(hub, "otto", "operator")
    hub.settings.cookie_secure = True
    with TestClient(create_app(hub, clock=clock), base_url="https://testserver") as c:
        morsel = session_cookie(log_in(c, "otto"))[SESSION_COOKIE]
    assert morsel["secure"] is True


def test_a_wrong_password_says_so_and_opens_no_session(client: TestClient, hub: Hub) -> None:
    for name, password in [("otto", "not the password"), ("nobody", PASSWORD)]:
        response = log_in(client, name, password)
        assert response.status_code == 401
        assert "Wrong user name or password." in response.text
        assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    assert count(hub, m.WebSession) == 0
    assert client.get("/api/me").status_code == 401


def test_too_many_failed_logins_lock_the_name_for_a_while_then_it_works_again(
    client: TestClient, hub: Hub, clock: Clock
) -> None:
    for _ in range(auth.LOGIN_FAILURES_PER_NAME):
        assert log_in(client, "otto", "guess").status_code == 401
    locked = log_in(client, "Otto", PASSWORD)  # the right password, and any spelling
    assert locked.status_code == 429
    assert "Too many failed logins. Try again in 15 minutes." in locked.text
    assert 890 <= int(locked.headers["retry-after"]) <= 900
    assert SESSION_COOKIE not in locked.headers.get("set-cookie", "")
    assert count(hub, m.WebSession) == 0
    # a locked name costs no password check and records nothing more
    failures = count(hub, m.AuditEntry)
    assert log_in(client, "otto", "guess").status_code == 429
    assert count(hub, m.AuditEntry) == failures
    # others log in meanwhile; a name that does not exist locks the same way
    assert log_in(client, "rita").status_code == 303
    for _ in range(auth.LOGIN_FAILURES_PER_NAME):
        assert log_in(client, "nobody", "guess").status_code == 401
    assert log_in(client, "nobody", "guess").status_code == 429
    clock.now += auth.LOGIN_WINDOW
    assert log_in(client, "otto").status_code == 303


def test_failed_logins_are_in_the_audit_log_by_name_and_address(
    client: TestClient, hub: Hub
) -> None:
    log_in(client, "otto", "guess")
    with hub.store.read() as s:
        rows = s.scalars(
            select(m.AuditEntry).where(m.AuditEntry.action == "auth.login_failed")
        ).all()
        assert sorted((r.object_kind, r.object_id) for r in rows) == [
            ("login", "otto"),
            ("login_address", "testclient"),
        ]
        assert all(r.after == {"name": "otto", "address": "testclient"} for r in rows)
        assert "guess" not in str([(r.before, r.after) for r in rows])


def test_one_address_failing_on_many_names_is_locked_out(client: TestClient, hub: Hub) -> None:
    hub.settings.login_failures_per_address = 3
    for name in ("a1", "a2", "a3"):
        assert log_in(client, name, "guess").status_code == 401
    assert log_in(client, "otto").status_code == 429


def test_an_inactive_user_cannot_log_in(client: TestClient, hub: Hub) -> None:
    with hub.store.transaction() as s:
        s.execute(update(m.User).where(m.User.name == "otto").values(active=False))
    assert log_in(client, "otto").status_code == 401


def test_the_session_id_is_new_at_every_login_and_the_old_one_dies(
    client: TestClient, hub: Hub
) -> None:
    first = session_cookie(log_in(client, "otto"))[SESSION_COOKIE].value
    second = session_cookie(log_in(client, "otto"))[SESSION_COOKIE].value
    assert first != second
    assert count(hub, m.WebSession) == 1
    with TestClient(client.app, cookies={SESSION_COOKIE: first}) as old:
        assert old.get("/api/me").status_code == 401


def test_a_planted_session_id_is_worth_nothing_after_login(client: TestClient) -> None:
    client.cookies.set(SESSION_COOKIE, "chosen-by-the-attacker")
    issued = session_cookie(log_in(client, "otto"))[SESSION_COOKIE].value
    assert issued != "chosen-by-the-attacker"


def test_login_goes_back_to_the_page_asked_for_but_never_off_site(client: TestClient) -> None:
    page = client.get("/?status=failed", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2F%3Fstatus%3Dfailed"
    for target, expected in [("/?status=failed", "/?status=failed"), ("//evil.example", "/")]:
        token = form_token(client.get("/login").text)
        response = client.post(
            "/login",
            data={"name": "otto", "password": PASSWORD, "csrf_token": token, "next": target},
            follow_redirects=False,
        )
        assert response.headers["location"] == expected


def test_a_login_form_without_its_token_or_from_another_site_is_403(
    client: TestClient, hub: Hub
) -> None:
    client.get("/login")
    data = {"name": "otto", "password": PASSWORD}
    assert client.post("/login", data=data).status_code == 403
    token = form_token(client.get("/login").text)
    cross = client.post(
        "/login", data={**data, "csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert count(hub, m.WebSession) == 0


# ---------------------------------------------------------- end of sessions
def test_logging_out_kills_the_session(client: TestClient, hub: Hub) -> None:
    cookie = session_cookie(log_in(client, "otto"))[SESSION_COOKIE].value
    page = client.get("/")
    response = client.post(
        "/logout", data={"csrf_token": form_token(page.text)}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert count(hub, m.WebSession) == 0
    with TestClient(client.app, cookies={SESSION_COOKIE: cookie}) as replay:
        assert replay.get("/api/me").status_code == 401
        assert replay.get("/", follow_redirects=False).headers["location"].startswith("/login")


def test_a_session_idle_too_long_is_dead(client: TestClient, hub: Hub, clock: Clock) -> None:
    log_in(client, "otto")
    assert client.get("/api/me").status_code == 200
    idle = timedelta(minutes=hub.settings.session_idle_minutes)
    last_seen = clock.now - idle - timedelta(seconds=1)  # the app's now, not the wall clock
    with hub.store.transaction() as s:
        s.execute(update(m.WebSession).values(last_seen_at=last_seen))
    assert client.get("/api/me").status_code == 401
    assert client.get("/", follow_redirects=False).status_code == 303


def test_use_keeps_a_session_alive_until_its_absolute_expiry(
    client: TestClient, hub: Hub, clock: Clock
) -> None:
    log_in(client, "otto")
    step = timedelta(minutes=hub.settings.session_idle_minutes - 1)
    lifetime = timedelta(hours=hub.settings.session_max_hours)
    start = clock.now
    while clock.now + step < start + lifetime:
        clock.now += step
        assert client.get("/api/me").status_code == 200, clock.now - start
    clock.now = start + lifetime
    assert client.get("/api/me").status_code == 401


# -------------------------------------------------------------- CSRF (35)
def test_a_json_write_by_cookie_without_the_csrf_header_is_403_and_changes_nothing(
    client: TestClient, hub: Hub
) -> None:
    run_id = paused_run(hub)
    log_in(client, "otto")
    for headers in ({}, {"X-CSRF-Token": "wrong"}):
        response = client.post(f"/api/runs/{run_id}/abort", json={"reason": "x"}, headers=headers)
        assert response.status_code == 403
        assert "X-CSRF-Token" in response.json()["detail"]
        started = client.post("/api/flows/hello/runs", json={"name": "Ada"}, headers=headers)
        assert started.status_code == 403
    assert run_status(hub, run_id) == "needs_review"
    assert count(hub, m.Run) == 1
    ok = client.post(
        f"/api/runs/{run_id}/abort", json={"reason": "x"}, headers={"X-CSRF-Token": csrf(client)}
    )
    assert ok.status_code == 200
    assert run_status(hub, run_id) == "failed"


def test_a_cross_site_write_is_403_even_with_the_token_and_changes_nothing(
    client: TestClient, hub: Hub
) -> None:
    run_id = paused_run(hub)
    log_in(client, "otto")
    token = csrf(client)
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
        {"Sec-Fetch-Site": "cross-site"},
    ):
        response = client.post(
            f"/api/runs/{run_id}/abort", json={}, headers={"X-CSRF-Token": token, **headers}
        )
        assert response.status_code == 403, headers
        assert response.json()["detail"] == "cross-site request refused"
    assert run_status(hub, run_id) == "needs_review"
    same_site = client.post(
        f"/api/runs/{run_id}/abort",
        json={},
        headers={"X-CSRF-Token": token, "Origin": "http://testserver"},
    )
    assert same_site.status_code == 200


def test_a_form_post_without_the_token_or_cross_site_is_403_and_changes_nothing(
    client: TestClient, hub: Hub
) -> None:
    log_in(client, "otto")
    token = csrf(client)
    assert client.post("/logout", data={}).status_code == 403
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 403
    cross = client.post(
        "/logout", data={"csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert cross.status_code == 403
    assert count(hub, m.WebSession) == 1
    assert client.get("/api/me").status_code == 200


@pytest.mark.parametrize(
    "url",
    ["/logout", "/api/runs/some-run/abort", "/api/runs/some-run/cancel", "/api/flows/hello/runs"],
)
def test_get_on_an_action_url_is_405(client: TestClient, url: str) -> None:
    log_in(client, "otto")
    response = client.get(url)
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]


# ------------------------------------------------------------------- roles
def test_without_a_login_the_api_is_401_and_pages_redirect_to_login(
    client: TestClient, hub: Hub
) -> None:
    run_id = paused_run(hub)
    for method, url in [
        ("GET", "/api/runs"),
        ("GET", f"/api/runs/{run_id}"),
        ("GET", "/api/flows"),
        ("POST", "/api/flows/hello/runs"),
        ("POST", f"/api/runs/{run_id}/abort"),
    ]:
        response = client.request(method, url, json={})
        assert response.status_code == 401, url
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"] == "Unauthorized"
    page = client.get("/", follow_redirects=False)
    assert (page.status_code, page.headers["location"]) == (303, "/login?next=%2F")
    assert run_status(hub, run_id) == "needs_review"
    assert client.get("/healthz").status_code == 200


def test_a_viewer_reads_but_cannot_start_or_act(client: TestClient, hub: Hub) -> None:
    run_id = paused_run(hub)
    log_in(client, "vic")
    headers = {"X-CSRF-Token": csrf(client)}
    assert client.get("/api/runs").json()[0]["id"] == run_id
    assert client.get(f"/api/runs/{run_id}").status_code == 200
    assert client.get("/").status_code == 200
    started = client.post("/api/flows/hello/runs", json={"name": "Ada"}, headers=headers)
    assert started.status_code == 403
    assert started.json()["detail"] == "needs the operator role; vic is viewer"
    for action in ("resume", "skip", "complete", "abort", "cancel"):
        response = client.post(f"/api/runs/{run_id}/{action}", json={}, headers=headers)
        assert response.status_code == 403, action
    assert run_status(hub, run_id) == "needs_review"
    assert count(hub, m.Run) == 1


def test_a_reviewer_acts_on_paused_runs_but_cannot_start_or_cancel(
    client: TestClient, hub: Hub
) -> None:
    run_id = paused_run(hub)
    log_in(client, "rita")
    me = client.get("/api/me").json()
    assert (me["role"], me["teams"]) == ("reviewer", ["finance"])
    headers = {"X-CSRF-Token": me["csrf_token"]}
    assert client.post("/api/flows/hello/runs", json={}, headers=headers).status_code == 403
    assert client.post(f"/api/runs/{run_id}/cancel", json={}, headers=headers).status_code == 403
    skipped = client.post(f"/api/runs/{run_id}/skip", json={"reason": "ok"}, headers=headers)
    assert skipped.status_code == 200
    assert skipped.json()["reviews"][0]["resolved_by"] == "rita"


def test_a_reviewer_cannot_act_on_another_teams_run_through_the_run_api(
    client: TestClient, hub: Hub
) -> None:
    run_id = paused_run(hub)
    with hub.store.transaction() as s:
        s.execute(update(m.ReviewItem).where(m.ReviewItem.run_id == run_id).values(team="payroll"))
    log_in(client, "rita")  # finance only
    headers = {"X-CSRF-Token": csrf(client)}
    for action in ("resume", "skip", "complete", "abort"):
        response = client.post(
            f"/api/runs/{run_id}/{action}", json={"reason": "x"}, headers=headers
        )
        assert response.status_code == 404, action
    assert run_status(hub, run_id) == "needs_review"
    assert client.get(f"/runs/{run_id}").status_code == 404
    with hub.store.transaction() as s:
        s.execute(update(m.ReviewItem).where(m.ReviewItem.run_id == run_id).values(team="finance"))
    assert client.get(f"/runs/{run_id}").status_code == 200


def test_roles_are_ordered() -> None:
    p = auth.Principal("id", "x", "reviewer")
    assert [p.can(r) for r in m.ROLES] == [True, True, False, False]
    assert auth.Principal("id", "x", "admin").can("operator")


# -------------------------------------------------------------- API tokens
def test_a_valid_token_reads_and_writes_without_csrf(client: TestClient, hub: Hub) -> None:
    token = token_for(hub, "otto", "ci")
    bearer(client, token)
    assert client.get("/api/me").json() == {
        "name": "otto",
        "role": "operator",
        "teams": [],
        "via": "token",
    }
    started = client.post("/api/flows/hello/runs", json={"name": "Ada"})
    assert started.status_code == 201
    with hub.store.read() as s:
        row = s.scalars(select(m.ApiToken)).one()
    assert row.token_hash == auth.digest(token) != token
    assert row.last_used_at is not None


def test_a_revoked_or_wrong_token_is_401(client: TestClient, hub: Hub) -> None:
    token = token_for(hub, "otto", "ci")
    hub.store.run(lambda s: auth.revoke_tokens(s, auth.find_user(s, "otto"), "ci"))
    log_in(client, "otto")  # a live cookie does not rescue a bad bearer token
    for header in (f"Bearer {token}", "Bearer hub_wrong", f"Basic {token}", "Bearer "):
        response = client.get("/api/runs", headers={"Authorization": header})
        assert response.status_code == 401, header
    assert count(hub, m.Run) == 0


# ------------------------------------------------------------------- pages
def test_pages_carry_the_csp_and_no_inline_script_or_style(client: TestClient) -> None:
    login_page = client.get("/login")
    log_in(client, "otto")
    runs_page = client.get("/")
    for page in (login_page, runs_page):
        assert page.headers["content-security-policy"] == CSP
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "<script" not in page.text
        assert "style=" not in page.text
        assert "<style" not in page.text
    assert "'unsafe-inline'" not in CSP
    assert client.get("/static/hub.css").status_code == 200


def test_user_text_on_pages_is_escaped(client: TestClient, hub: Hub) -> None:
    response = log_in(client, "<b>x</b>", "wrong password!")
    assert "&lt;b&gt;x&lt;/b&gt;" in response.text
    assert "<b>x</b>" not in response.text
