"""Rate limits per connection: a token bucket, shared by every worker through Redis.

``rate_limit = "10/s"`` lets calls through at 10 a second on average, with
bursts of up to 10 (one second's worth). With a Redis broker the bucket lives
in Redis (one Lua script, Redis's own clock), so ten workers on five machines
share the 10 a second; on the embedded default the bucket is in the process.
:meth:`Limiter.acquire` waits for a token; a wait longer than the
connection's ``max_wait`` is a :class:`~hub.errors.TransientError` with
``retry_after``, so the engine retries the step later instead of holding a worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from hub.errors import TransientError

if TYPE_CHECKING:
    from hub.connections import ConnectionConfig
    from hub.settings import Settings

#: KEYS[1] the bucket; ARGV rate (tokens/s), burst. Returns the seconds to wait (0: go).
_SCRIPT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(state[1]), tonumber(state[2])
if tokens == nil then tokens, at = burst, t end
tokens = math.min(burst, tokens + math.max(0, t - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(t))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst / rate) * 1000) + 1000)
return tostring(wait)
"""


class Limiter(Protocol):
    def acquire(self) -> None: ...


class Unlimited:
    """No rate limit."""

    def acquire(self) -> None:
        return None


class _Bucket:
    def __init__(
        self,
        name: str,
        rate: float,
        max_wait: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name, self.rate, self.max_wait, self.sleep = name, rate, max_wait, sleep
        self.burst = max(1.0, rate)

    def take(self) -> float:
        raise NotImplementedError

    def acquire(self) -> None:
        """Wait for a token (sleeping in the calling thread)."""
        waited = 0.0
        while True:
            wait = self.take()
            if wait <= 0:
                return
            if waited + wait > self.max_wait:
                raise TransientError(
                    f"connection {self.name!r} is at its rate limit ({self.rate:g} calls/s)",
                    retry_after=wait,
                )
            self.sleep(wait)
            waited += wait


class LocalBucket(_Bucket):
    """A bucket in this process (the embedded default: one worker process per machine)."""

    def __init__(self, name: str, rate: float, max_wait: float, **kw: Callable[[float], None]):
        super().__init__(name, rate, max_wait, **kw)
        self.tokens, self.at = self.burst, time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> float:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate


class RedisBucket(_Bucket):
    """A bucket in Redis, shared by every process that uses the same connection name."""

    def __init__(
        self, name: str, rate: float, max_wait: float, url: str, **kw: Callable[[float], None]
    ) -> None:
        import redis

        super().__init__(name, rate, max_wait, **kw)
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.script = self.client.register_script(_SCRIPT)
        self.key = f"hub:ratelimit:{name}"

    def take(self) -> float:
        import redis

        try:
            return float(self.script(keys=[self.key], args=[self.rate, self.burst]))
        except redis.RedisError as exc:
            raise TransientError(
                f"connection {self.name!r}: its rate limit lives in Redis, which did not "
                f"answer ({exc})"
            ) from exc


def limiter(config: ConnectionConfig, settings: Settings) -> Limiter:
    """The limiter of ``config``: none, Redis-shared, or in-process."""
    rate = config.rate
    if rate is None:
        return Unlimited()
    broker = settings.broker_url or ""
    if broker.startswith(("redis://", "rediss://")):
        return RedisBucket(config.name, rate, config.max_wait, broker)
    return LocalBucket(config.name, rate, config.max_wait)
