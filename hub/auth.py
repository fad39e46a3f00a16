"""Accounts, web sessions and API tokens: who is asking, and what they may do.

Passwords are hashed with Argon2id. Session ids and API tokens are 256 random
bits; the database keeps only their SHA-256, so a copy of the tables logs no
one in. Every function takes the SQLAlchemy session it works in, and the
current time where time matters, so tests can move the clock.

Roles, weakest first: viewer < reviewer < operator < admin. A role may do
everything the roles before it may.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from hub import models as m
from hub.errors import AccountError
from hub.models import ROLES, utcnow

#: Touch ``last_seen_at`` / ``last_used_at`` at most this often (a read stays a read).
TOUCH_EVERY = timedelta(seconds=30)
MIN_PASSWORD = 10
TOKEN_PREFIX = "hub_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
_hasher = PasswordHasher()
# verified against when the user does not exist, so both cases take as long
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: built from a web session or an API token."""

    user_id: str
    name: str
    role: str
    teams: tuple[str, ...] = ()

    def can(self, role: str) -> bool:
        """True when this principal's role is ``role`` or stronger."""
        return rank(self.role) >= rank(role)


def rank(role: str) -> int:
    try:
        return ROLES.index(role)
    except ValueError:
        raise AccountError(f"unknown role {role!r}; roles are {', '.join(ROLES)}") from None


def digest(secret: str) -> str:
    """The SHA-256 (hex) under which a session id or token is stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_password() -> str:
    return secrets.token_urlsafe(15)


# ------------------------------------------------------------------- users
def create_user(
    s: Session, name: str, *, role: str, password: str, teams: tuple[str, ...] = ()
) -> m.User:
    """Add a user with ``password`` (hashed here) in ``teams`` (created when new).

    Raises :class:`AccountError` for a taken or malformed name, an unknown
    role or a password shorter than ``MIN_PASSWORD``.
    """
    rank(role)
    if not _NAME.match(name):
        raise AccountError(
            f"user name {name!r}: use letters, digits and _.@- (up to 100), starting with a letter or digit"
        )
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password too short: use at least {MIN_PASSWORD} characters")
    if s.scalar(select(m.User.id).where(m.User.name == name)) is not None:
        raise AccountError(f"user {name!r} already exists")
    user = m.User(name=name, role=role, password_hash=_hasher.hash(password), active=True)
    s.add(user)
    s.flush()
    for team in teams:
        found = s.scalar(select(m.Team).where(m.Team.name == team))
        if found is None:
            if not _NAME.match(team):
                raise AccountError(f"team name {team!r}: use letters, digits and _.@-")
            found = m.Team(name=team)
            s.add(found)
            s.flush()
        s.add(m.UserTeam(user_id=user.id, team_id=found.id))
    return user


def principal(s: Session, user: m.User) -> Principal:
    teams = s.scalars(
        select(m.Team.name)
        .join(m.UserTeam, m.UserTeam.team_id == m.Team.id)
        .where(m.UserTeam.user_id == user.id)
        .order_by(m.Team.name)
    ).all()
    return Principal(user.id, user.name, user.role, tuple(teams))


def find_user(s: Session, name: str) -> m.User:
    user = s.scalar(select(m.User).where(m.User.name == name))
    if user is None:
        raise AccountError(f"no user named {name!r} (see `hub users list`)")
    return user


def check_password(s: Session, name: str, password: str) -> m.User | None:
    """The active user ``name`` if ``password`` is theirs, else None (same time either way)."""
    user = s.scalar(select(m.User).where(m.User.name == name))
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


# ------------------------------------------------------------ login throttle
#: Failed logins for one user name, then that name is refused until the window passes.
LOGIN_FAILURES_PER_NAME = 5
#: Failed logins from one address, then that address is refused until the window passes.
LOGIN_FAILURES_PER_ADDRESS = 50
LOGIN_WINDOW = timedelta(minutes=15)


def login_wait(
    s: Session,
    name: str,
    address: str | None,
    *,
    now: datetime,
    per_name: int | None = None,
    per_address: int | None = None,
    window: timedelta | None = None,
) -> float | None:
    """Seconds until ``name`` (or ``address``) may try to log in again, or None if now.

    Failed logins are rows of the audit log (``auth.login_failed``), so every
    web process of the hub counts the same ones and an operator can see them.
    A name that does not exist is throttled like one that does, so the answer
    tells nothing about which names exist.
    """
    per_name = per_name or LOGIN_FAILURES_PER_NAME
    per_address = per_address or LOGIN_FAILURES_PER_ADDRESS
    window = window or LOGIN_WINDOW
    since = now - window
    waits: list[float] = []
    checks = [("login", _login_key(name), per_name)]
    if address:
        checks.append(("login_address", address[:64], per_address))
    for kind, key, limit in checks:
        times = s.scalars(
            select(m.AuditEntry.at)
            .where(
                m.AuditEntry.object_kind == kind,
                m.AuditEntry.object_id == key,
                m.AuditEntry.at > since,
            )
            .order_by(m.AuditEntry.id.desc())
            .limit(limit)
        ).all()
        if len(times) >= limit:
            oldest = min(times)
            waits.append(max(1.0, (oldest + window - now).total_seconds()))
    return max(waits) if waits else None


def login_failed(s: Session, name: str, address: str | None, *, now: datetime) -> None:
    """Record a failed login (the name as typed, and where it came from) in the audit log."""
    rows = [("login", _login_key(name))]
    if address:
        rows.append(("login_address", address[:64]))
    for kind, key in rows:
        s.add(
            m.AuditEntry(
                at=now,
                actor=None,
                action="auth.login_failed",
                object_kind=kind,
                object_id=key,
                before=None,
                after={"name": name[:100], "address": address},
            )
        )


def _login_key(name: str) -> str:
    return name.strip().lower()[:64] or "(empty)"


def ensure_admin(s: Session) -> str | None:
    """Create ``admin`` with a random password when there is no user; return that password.

    Returns None when a user exists already, so the password is shown once.
    """
    if s.scalar(select(m.User.id).limit(1)) is not None:
        return None
    password = new_password()
    create_user(s, "admin", role="admin", password=password)
    return password


# ---------------------------------------------------------------- sessions
@dataclass(frozen=True)
class Login:
    """Who a request acts as, and how it proved it.

    ``via`` is ``"session"`` (a browser cookie: writes need ``csrf_token``) or
    ``"token"`` (a bearer token: no CSRF). ``key`` is the stored digest;
    ``stale`` says its last-use time is due a :func:`touch`.
    """

    principal: Principal
    via: str
    key: str
    csrf_token: str | None
    stale: bool


def start_session(
    s: Session,
    user: m.User,
    *,
    now: datetime,
    lifetime: timedelta,
    idle: timedelta,
    replaces: str | None = None,
) -> str:
    """Open a session for ``user``; return its id (the cookie value), new every login.

    ``replaces`` is the cookie of a session the browser held before: it ends,
    so an id planted before login (session fixation) is worth nothing after.
    Sessions dead by age or idleness are swept out here.
    """
    if replaces:
        end_session(s, replaces)
    s.execute(
        delete(m.WebSession).where(
            (m.WebSession.expires_at <= now) | (m.WebSession.last_seen_at <= now - idle)
        )
    )
    session_id = secrets.token_urlsafe(32)
    s.add(
        m.WebSession(
            id=digest(session_id),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
            expires_at=now + lifetime,
        )
    )
    return session_id


def find_session(s: Session, session_id: str, *, now: datetime, idle: timedelta) -> Login | None:
    """The live session with this id, or None (unknown, ended, idle too long, expired, user off).

    Reads only; when ``stale``, the caller moves ``last_seen_at`` with :func:`touch`.
    """
    key = digest(session_id)
    row = s.get(m.WebSession, key)
    if row is None or now >= row.expires_at or now - row.last_seen_at >= idle:
        return None
    user = s.get(m.User, row.user_id)
    if user is None or not user.active:
        return None
    stale = now - row.last_seen_at >= TOUCH_EVERY
    return Login(principal(s, user), "session", key, row.csrf_token, stale)


def end_session(s: Session, session_id: str) -> None:
    s.execute(delete(m.WebSession).where(m.WebSession.id == digest(session_id)))


def touch(s: Session, login: Login, *, now: datetime) -> None:
    """Record that ``login`` was used at ``now`` (session ``last_seen_at``, token ``last_used_at``)."""
    if login.via == "session":
        s.execute(update(m.WebSession).where(m.WebSession.id == login.key).values(last_seen_at=now))
    else:
        s.execute(
            update(m.ApiToken).where(m.ApiToken.token_hash == login.key).values(last_used_at=now)
        )


# ------------------------------------------------------------------ tokens
def create_token(s: Session, user: m.User, name: str, *, now: datetime | None = None) -> str:
    """A new API token for ``user``; the value is returned once and stored only hashed."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    s.add(
        m.ApiToken(user_id=user.id, name=name, token_hash=digest(token), created_at=now or utcnow())
    )
    return token


def find_token(s: Session, token: str, *, now: datetime) -> Login | None:
    """The login of a valid token (known, unrevoked, its user active), else None. Reads only."""
    key = digest(token)
    row = s.scalar(select(m.ApiToken).where(m.ApiToken.token_hash == key))
    if row is None or row.revoked_at is not None:
        return None
    user = s.get(m.User, row.user_id)
    if user is None or not user.active:
        return None
    stale = row.last_used_at is None or now - row.last_used_at >= TOUCH_EVERY
    return Login(principal(s, user), "token", key, None, stale)


def revoke_tokens(s: Session, user: m.User, name: str, *, now: datetime | None = None) -> int:
    """Revoke ``user``'s live tokens called ``name``; return how many."""
    done = s.execute(
        update(m.ApiToken)
        .where(
            m.ApiToken.user_id == user.id,
            m.ApiToken.name == name,
            m.ApiToken.revoked_at.is_(None),
        )
        .values(revoked_at=now or utcnow())
    )
    return int(getattr(done, "rowcount", 0) or 0)
