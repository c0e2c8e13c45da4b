"""Credit holds survive no crash (costr/accounts/credit_holds.py, store_holds.py): a request's
hold names its instance and expires unless that instance renews it, so a `kill -9` leaves
nothing reserved for good, while a running instance's holds are never released under it. Every
test runs on SQLite and on PostgreSQL."""
from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from costr.accounts.auth import KeyCache
from costr.accounts.books import Books
from costr.accounts.credit_holds import HoldKeeper
from costr.accounts.ledger import LedgerWriter
from costr.accounts.limits import open_limiter
from costr.accounts.records import ApiKey, CreditHold, LedgerRecord, hash_secret
from costr.accounts.store import open_store
from costr.testing import seed_key
from costr.testing.fake_upstream import write_gateway_config
from costr.wire.conversation import Usage
from costr.wire.formats import RoutingFacts
from costr.wire.providers import ModelSpec, Price
from slow_streams import Instance, SlowUpstream

pytestmark = pytest.mark.anyio

LIMITED_KEY = "cr-limited-key-for-credit-hold-tests-0123456789"


def make_key(key_id="k1", balance=10_000) -> ApiKey:
    return ApiKey(id=key_id, name=f"name-{key_id}", prefix=f"cr-{key_id}pre",
                  balance_micros=balance, created_at=1_700_000_000.0)


def books_of(store, instance: str, hold_seconds: float = 300.0) -> Books:
    """One instance's books; its ledger writer is never started (a crash loses its queue)."""
    return Books(store, KeyCache(store), LedgerWriter(store), open_limiter(None),
                 instance=instance, hold_seconds=hold_seconds)


async def credit(store, key_id="k1") -> tuple[int, int]:
    key = await store.key_by_id_or_prefix(key_id)
    return key.balance_micros, key.reserved_micros


async def holds(store) -> list[tuple]:
    rows = await store._fetch("SELECT id, key_id, micros, owner FROM credit_holds ORDER BY id")
    return [(r["id"], r["key_id"], int(r["micros"]), r["owner"]) for r in rows]


async def test_a_hold_is_kept_with_its_reservation_and_settled_with_its_ledger_record(store):
    await store.create_key(make_key(), hash_secret("a"))
    hold = CreditHold("req-1", "k1", 4_000, "instance-a", time.time() + 300)
    assert await store.reserve(hold)
    assert await holds(store) == [("req-1", "k1", 4_000, "instance-a")]
    assert await credit(store) == (10_000, 4_000)
    assert not await store.reserve(CreditHold("req-2", "k1", 7_000, "instance-a", 4e9))
    assert await holds(store) == [("req-1", "k1", 4_000, "instance-a")]   # refused: no hold
    record = LedgerRecord(id="req-1", key_id="k1", ts=time.time(), day="2024-05-01",
                          family="openai-chat", cost_micros=2_500, charged_micros=2_500)
    await store.settle(hold, 2_500, record)
    # the debit, the release and the record: one step
    assert await holds(store) == [] and await credit(store) == (7_500, 0)
    assert await store.ledger_record("req-1") == record


async def test_a_charge_is_written_with_its_ledger_record_never_before(store):
    """The settle is queued with the record and written with it in the ledger writer's batch:
    until then the hold still covers the request (an instance dying here charged nothing, and
    its hold expires), and once written, the debit and its record are there together."""
    await store.create_key(make_key(), hash_secret("a"))
    books = books_of(store, "instance-a")
    entry = books.open("openai-chat", await store.key_by_id_or_prefix("k1"))
    await books.hold(entry, 5_000)
    model = _model()
    await books.settle(entry, model, model, Usage(input_tokens=1_000, output_tokens=100),
                       RoutingFacts("auto", model.id, model.provider, "budget", 1.0, 0.0))
    assert await credit(store) == (10_000, 5_000)
    assert await store.ledger_record(entry.record.id) is None
    assert books.held_ids() == [entry.record.id]   # renewed while it waits to be written
    await books.ledger.flush()
    written = await store.ledger_record(entry.record.id)
    assert written is not None and written.charged_micros == 1_400
    assert await credit(store) == (10_000 - 1_400, 0) and await holds(store) == []
    assert books.held_ids() == []


async def test_a_request_never_waits_on_the_database_to_settle(store):
    """A request's settle only queues (so neither a slow database nor the server cancelling the
    request at its shutdown limit can leave it half done); the writer settles a batch of
    requests in one call."""
    await store.create_key(make_key(), hash_secret("a"))
    books = books_of(store, "instance-a")
    model = _model()
    settle_many, calls = store.settle_many, []

    async def counted(settles):
        calls.append([hold.id for hold, _, _ in settles])
        await settle_many(settles)
    store.settle_many = counted
    entries = []
    for _ in range(3):
        entry = books.open("openai-chat", await store.key_by_id_or_prefix("k1"))
        await books.hold(entry, 2_000)
        await books.settle(entry, model, model, Usage(input_tokens=1_000, output_tokens=100),
                           RoutingFacts("auto", model.id, model.provider, "budget", 1.0, 0.0))
        entries.append(entry)
    assert calls == [] and not books.open_entries
    await books.ledger.flush()
    assert calls == [sorted(e.record.id for e in entries)]
    assert await credit(store) == (10_000 - 3 * 1_400, 0)
    for entry in entries:
        assert (await store.ledger_record(entry.record.id)).charged_micros == 1_400


async def test_a_settle_the_database_failed_is_written_once_it_is_back(store):
    """The database goes away between a request's hold and its settle: the answer stands; the
    hold keeps covering it (and is renewed) until the database is back, and then the charge
    and its record are written together, once."""
    await store.create_key(make_key(), hash_secret("a"))
    books = books_of(store, "instance-a")
    entry = books.open("openai-chat", await store.key_by_id_or_prefix("k1"))
    await books.hold(entry, 5_000)
    settle_many = store.settle_many

    async def away(*args):
        raise OSError("connection refused")
    store.settle_many = away
    model = _model()
    await books.settle(entry, model, model, Usage(input_tokens=1_000, output_tokens=100),
                       RoutingFacts("auto", model.id, model.provider, "budget", 1.0, 0.0))
    books.ledger.start()
    try:
        await asyncio.sleep(0.5)
        assert await credit(store) == (10_000, 5_000) and books.held_ids() == [entry.record.id]
        store.settle_many = settle_many   # the database is back
        await asyncio.sleep(0.5)
        assert await credit(store) == (10_000 - 1_400, 0) and books.held_ids() == []
    finally:
        await books.ledger.close()
    record = await store.ledger_record(entry.record.id)
    assert (record.status, record.charged_micros, record.cost_micros) == (200, 1_400, 1_400)


async def test_requests_reserving_at_once_never_hold_more_than_the_balance(store):
    """Ten requests reserve at the same moment against a balance covering three: three get
    their hold, seven are refused, and nothing else is held (on SQLite the ten are taken in
    one transaction: the reserves of one turn of the event loop go together)."""
    await store.create_key(make_key(), hash_secret("a"))
    holds_asked = [CreditHold(f"req-{i}", "k1", 3_000, "instance-a", time.time() + 300)
                   for i in range(10)]
    answers = await asyncio.gather(*(store.reserve(hold) for hold in holds_asked))
    assert sorted(answers) == [False] * 7 + [True] * 3
    assert await credit(store) == (10_000, 9_000)
    assert sorted(h[0] for h in await holds(store)) == sorted(
        hold.id for hold, taken in zip(holds_asked, answers) if taken)


async def test_a_hold_taken_as_the_connection_dropped_is_released_once_the_database_is_back(store):
    """The database takes the hold but the connection drops before it says so (the fault
    drill's PostgreSQL restart left credit held): the request fails, and the hold it may have
    left is released as soon as the database answers again, not when it expires."""
    await store.create_key(make_key(), hash_secret("a"))
    books = books_of(store, "instance-a")
    entry = books.open("openai-chat", await store.key_by_id_or_prefix("k1"))
    reserve = store.reserve

    async def taken_then_lost(hold):
        await reserve(hold)
        raise OSError("connection reset")
    store.reserve = taken_then_lost
    with pytest.raises(OSError):
        await books.hold(entry, 5_000)
    assert await credit(store) == (10_000, 5_000)
    keeper = HoldKeeper(books, every_seconds=0.2)
    await keeper.start()
    try:
        await asyncio.sleep(0.5)
        assert await credit(store) == (10_000, 0) and not books.unsettled and await holds(store) == []
    finally:
        await keeper.close()


async def test_credit_held_by_a_crashed_instance_is_released_once_its_hold_expires(store):
    await store.create_key(make_key(), hash_secret("a"))
    crashed = books_of(store, "crashed", hold_seconds=0.5)
    entry = crashed.open("openai-chat", await store.key_by_id_or_prefix("k1"))
    await crashed.hold(entry, 3_000)
    del crashed, entry   # the instance is gone without settling
    assert await credit(store) == (10_000, 3_000)
    restarted = HoldKeeper(books_of(store, "restarted", hold_seconds=0.5))
    assert await restarted.reconcile() == (0, 0)   # not expired yet: it may still be running
    assert await credit(store) == (10_000, 3_000)
    await asyncio.sleep(0.6)
    assert await restarted.reconcile() == (1, 3_000)
    assert await credit(store) == (10_000, 0) and await holds(store) == []
    assert await restarted.reconcile() == (0, 0)


async def test_a_running_instance_renews_its_holds_and_no_other_releases_them(store):
    await store.create_key(make_key(), hash_secret("a"))
    running = books_of(store, "running", hold_seconds=0.4)
    entry = running.open("openai-chat", await store.key_by_id_or_prefix("k1"))
    await running.hold(entry, 3_000)
    own, other = HoldKeeper(running), HoldKeeper(books_of(store, "other", hold_seconds=0.4))
    await own.start()      # renews every 0.1 s
    await other.start()    # releases what expired, every 0.1 s
    try:
        await asyncio.sleep(1.2)   # three hold lives
        assert await credit(store) == (10_000, 3_000)
        assert [h[0] for h in await holds(store)] == [entry.record.id]
    finally:
        await own.close()
        await other.close()
    model = _model()
    await running.settle(entry, model, model, Usage(input_tokens=1_000, output_tokens=0),
                         RoutingFacts("auto", model.id, model.provider, "budget", 1.0, 0.0))
    await running.ledger.flush()
    assert await credit(store) == (10_000 - 1_000, 0) and await holds(store) == []


async def test_a_hold_released_on_expiry_is_not_released_again_when_settled_late(store):
    """An instance cut off from the database longer than a hold lasts: its hold is released by
    another, and its late settle debits the charge without giving the hold back twice (which
    would uncover another request's hold)."""
    await store.create_key(make_key(), hash_secret("a"))
    late = CreditHold("req-late", "k1", 4_000, "cut-off", time.time() - 1)
    live = CreditHold("req-live", "k1", 5_000, "running", time.time() + 300)
    assert await store.reserve(late) and await store.reserve(live)
    assert await store.release_expired_holds(time.time()) == (1, 4_000)
    assert await credit(store) == (10_000, 5_000)
    await store.settle(late, 1_000)
    assert await credit(store) == (9_000, 5_000)   # the live hold still covered
    await store.settle(live, 0)
    assert await credit(store) == (9_000, 0)


async def test_a_reservation_left_before_holds_existed_is_released_at_start_up(store, db_url):
    await store.create_key(make_key(), hash_secret("a"))
    # The state an instance killed before this version left: reserved, with no hold.
    await store._execute("DROP TABLE credit_holds")
    await store._execute("DELETE FROM schema_migrations WHERE version = 8")
    await store._execute("UPDATE api_keys SET reserved_micros = 6000 WHERE id = 'k1'")
    reopened = await open_store(db_url)   # migrates
    try:
        assert await credit(reopened) == (10_000, 6_000)
        assert await HoldKeeper(books_of(reopened, "new")).reconcile() == (1, 6_000)
        assert await credit(reopened) == (10_000, 0)
    finally:
        await reopened.close()


async def test_an_unlimited_key_holds_nothing_and_writes_nothing(store):
    await store.create_key(make_key(balance=None), hash_secret("a"))

    async def no_writes(*args, **kw):
        raise AssertionError("an unlimited key wrote to the database")
    store.reserve = store.settle = store.settle_many = no_writes
    books = books_of(store, "instance-a")
    entry = books.open("openai-chat", await store.key_by_id_or_prefix("k1"))
    await books.hold(entry, 5_000)
    model = _model()
    await books.settle(entry, model, model, Usage(input_tokens=10, output_tokens=10),
                       RoutingFacts("auto", model.id, model.provider, "budget", 1.0, 0.0))
    assert entry.hold is None and await holds(store) == []


def _model() -> ModelSpec:
    """$1 per million input tokens, $4 per million output tokens."""
    return ModelSpec(id="m", provider="p", tier="budget", price=Price(input=1.0, output=4.0),
                     context_window=100_000)


# ---- a real `costr serve`, killed -----------------------------------------------------------

def _stream_until_content(url: str, prompt: str, first_content: threading.Event,
                          outcome: list) -> None:
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions",
                          headers={"authorization": f"Bearer {LIMITED_KEY}"}, timeout=60,
                          json={"model": "fake-large", "stream": True,
                                "messages": [{"role": "user", "content": prompt}]}) as response:
            outcome.append(response.status_code)
            for line in response.iter_lines():
                if '"content":"w' in line:
                    first_content.set()
            outcome.append("ended")
    except httpx.HTTPError as exc:
        outcome.append(exc)
    finally:
        first_content.set()


async def _wait_for(condition, timeout: float):
    deadline = time.monotonic() + timeout
    while not (found := await condition()):
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.1)
    return found


@pytest.fixture
def slow_gateway(tmp_path, db_url):
    """(config files, the limited key's id) for `costr serve`s on db_url in front of a slow
    upstream; the key has $1."""
    with SlowUpstream() as upstream:
        providers, policies = write_gateway_config(tmp_path, upstream.url)
        key = asyncio.run(seed_key(db_url, None, LIMITED_KEY, name="limited", admin=False,
                                   credits_usd=1.0))
        yield providers, policies, key.id


async def test_kill_9_mid_request_then_restart_gives_the_credit_back(tmp_path, db_url, slow_gateway):
    providers, policies, key_id = slow_gateway
    env = {"COSTR_CREDIT_HOLD_SECONDS": "2"}
    first = Instance(tmp_path, providers, policies, db_url, env=env, name="killed")
    store = await open_store(db_url)
    try:
        content, outcome = threading.Event(), []
        client = threading.Thread(target=_stream_until_content,
                                  args=(first.url, "slow 100 0.2", content, outcome))
        client.start()
        assert await asyncio.to_thread(content.wait, 20) and outcome == [200], outcome
        balance, reserved = await credit(store, key_id)
        assert balance == 1_000_000 and reserved > 0
        first.proc.kill()   # kill -9, mid-answer
        first.proc.wait(10)
        client.join(10)
        assert await credit(store, key_id) == (1_000_000, reserved)   # left held by the crash
        second = Instance(tmp_path, providers, policies, db_url, env=env, name="restarted")
        try:
            await _wait_for(lambda: _released(store, key_id), timeout=15)
            assert await credit(store, key_id) == (1_000_000, 0)   # nothing charged, all back
            async def logged() -> bool:   # the release is logged just after it commits
                return "released 1 expired credit hold(s)" in second.output()
            await _wait_for(logged, timeout=5)
        finally:
            second.stop()
    finally:
        first.stop()
        await store.close()


async def _released(store, key_id) -> bool:
    return (await credit(store, key_id))[1] == 0


async def test_a_live_hold_of_another_instance_is_not_released(tmp_path, db_url, slow_gateway):
    """Two instances on one database, holds lasting 2 s: the instance answering a 4 s stream
    renews its hold, and the other, releasing expired holds every 0.5 s, never releases it."""
    providers, policies, key_id = slow_gateway
    env = {"COSTR_CREDIT_HOLD_SECONDS": "2"}
    answering = Instance(tmp_path, providers, policies, db_url, env=env, name="answering")
    other = Instance(tmp_path, providers, policies, db_url, env=env, name="other")
    store = await open_store(db_url)
    try:
        content, outcome = threading.Event(), []
        client = threading.Thread(target=_stream_until_content,
                                  args=(answering.url, "slow 16 0.25", content, outcome))
        client.start()
        assert await asyncio.to_thread(content.wait, 20)
        held = []
        while client.is_alive():
            held.append((await credit(store, key_id))[1])
            await asyncio.sleep(0.2)
        client.join()
        assert outcome == [200, "ended"], outcome
        assert len(held) >= 10 and all(reserved > 0 for reserved in held[:-2]), held
        await _wait_for(lambda: _released(store, key_id), timeout=5)   # the writer's next batch
        balance, reserved = await credit(store, key_id)
        records = await store.requests_page(key_id, 10, None)
        assert reserved == 0 and len(records) == 1 and records[0].status == 200
        assert 0 < records[0].charged_micros == 1_000_000 - balance
        assert "released" not in answering.output() + other.output()
    finally:
        answering.stop()
        other.stop()
        await store.close()
