"""Rate limits: the token bucket in the process, and the one in Redis that every worker
of a connection shares (real Redis)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from connectors.ratelimit import LocalBucket, RedisBucket, Unlimited, limiter
from hub.connections import ConnectionConfig
from hub.errors import TransientError
from hub.settings import Settings


def test_a_local_bucket_lets_a_burst_through_then_spaces_calls() -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    bucket = LocalBucket("crm", 5, max_wait=10, sleep=sleep)
    for _ in range(5):
        bucket.acquire()
    assert slept == []
    bucket.tokens = 0.0  # as if no time passed: the next call waits for a token
    bucket.at = time.monotonic()
    bucket.acquire()
    assert len(slept) == 1 and 0.15 < slept[0] <= 0.2


def test_a_wait_past_max_wait_hands_the_step_back_with_retry_after() -> None:
    bucket = LocalBucket("crm", 0.1, max_wait=1)  # one call in ten seconds
    bucket.acquire()
    with pytest.raises(TransientError, match=r"'crm' is at its rate limit \(0.1 calls/s\)") as e:
        bucket.acquire()
    assert e.value.retry_after is not None and 9 < e.value.retry_after <= 10


def test_the_limiter_follows_the_broker() -> None:
    config = ConnectionConfig(name="crm", kind="fake", url="fake://", rate_limit="10/s")
    assert isinstance(limiter(config, Settings()), LocalBucket)
    shared = limiter(config, Settings(broker_url="redis://127.0.0.1:6379/0"))
    assert isinstance(shared, RedisBucket)
    shared.client.close()
    plain = ConnectionConfig(name="crm", kind="fake", url="fake://")
    assert isinstance(limiter(plain, Settings()), Unlimited)


@pytest.mark.services
def test_workers_share_one_bucket_in_redis(redis_url: str) -> None:
    name = f"crm-{uuid.uuid4().hex[:8]}"
    buckets = [RedisBucket(name, 20, max_wait=30, url=redis_url) for _ in range(3)]
    done: list[float] = []
    started = time.monotonic()

    def work(bucket: RedisBucket) -> None:
        for _ in range(20):
            bucket.acquire()
            done.append(time.monotonic() - started)

    threads = [threading.Thread(target=work, args=(b,)) for b in buckets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # 60 calls at 20 a second with a burst of 20: the last goes through after about 2 s
    assert len(done) == 60
    assert 1.7 <= max(done) < 4, max(done)
    first_second = [t for t in done if t < 1.0]
    assert len(first_second) <= 20 + 20 + 1
    for bucket in buckets:
        bucket.client.delete(bucket.key)
        bucket.client.close()
