"""`costr keys`: create prints the key alone, the database keeps only its hash, list shows
prefixes, revoke and top-up find a key by id or prefix."""
from __future__ import annotations

import asyncio
import re

from costr.accounts.records import hash_secret
from costr.accounts.store import open_store

KEY = re.compile(r"^cr-[A-Za-z0-9_-]{32,}$")


def stored_key(data_dir, secret):
    async def find():
        store = await open_store(None, data_dir)
        try:
            return await store.key_by_hash(hash_secret(secret))
        finally:
            await store.close()
    return asyncio.run(find())


def test_create_prints_only_the_key_and_the_database_keeps_only_its_hash(keys, tmp_path):
    status, out, err = keys("create", "--name", "ci", "--credits", "5", "--rpm", "60")
    assert status == 0
    secret = out.strip()
    assert out == secret + "\n" and KEY.match(secret)
    assert secret[:10] in err and secret not in err
    data = b"".join(p.read_bytes() for p in (tmp_path / "data").iterdir())
    assert secret.encode() not in data
    assert hash_secret(secret).encode() in data
    key = stored_key(tmp_path / "data", secret)
    assert (key.name, key.balance_micros, key.rpm, key.tpm, key.admin) == \
        ("ci", 5_000_000, 60, None, False)


def test_list_shows_prefixes_never_secrets(keys):
    secret = keys("create", "--name", "paid", "--credits", "2.5")[1].strip()
    free = keys("create", "--name", "free", "--admin", "--tpm", "1000")[1].strip()
    status, out, _ = keys("list")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["id", "name", "prefix", "admin", "balance_usd", "reserved_usd",
                                "rpm", "tpm", "revoked", "created_utc"]
    paid_row, free_row = lines[1].split(), lines[2].split()
    assert paid_row[1:9] == ["paid", secret[:10], "no", "2.500000", "0.000000", "-", "-", "no"]
    assert free_row[1:9] == ["free", free[:10], "yes", "unlimited", "0.000000", "-", "1000", "no"]
    assert secret not in out and free not in out


def test_revoke_by_prefix(keys, tmp_path):
    secret = keys("create", "--name", "x")[1].strip()
    status, out, _ = keys("revoke", secret[:10])
    assert status == 0 and "revoked" in out
    assert stored_key(tmp_path / "data", secret).revoked
    assert keys("list")[1].splitlines()[1].split()[8] == "yes"
    assert keys("revoke", "cr-nothere")[0] == 1


def test_top_up_by_id(keys, tmp_path):
    secret = keys("create", "--name", "x", "--credits", "1")[1].strip()
    key = stored_key(tmp_path / "data", secret)
    status, out, _ = keys("top-up", key.id, "--usd", "2.5")
    assert status == 0 and "3.500000" in out
    assert stored_key(tmp_path / "data", secret).balance_micros == 3_500_000
    assert keys("top-up", key.id, "--usd", "-1")[0] == 2
    unlimited = keys("create", "--name", "y")[1].strip()
    status, _, err = keys("top-up", unlimited[:10], "--usd", "1")
    assert status == 1 and "unlimited" in err


def test_database_option_names_the_store(keys, tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'keys.db'}"
    secret = keys("create", "--name", "x", "--database", url)[1].strip()
    assert (tmp_path / "elsewhere" / "keys.db").exists()
    assert not (tmp_path / "data" / "costr.db").exists()
    assert secret[:10] in keys("list", "--database", url)[1]


def test_an_unreachable_database_is_one_line_without_the_password(keys):
    status, out, err = keys("list", "--database", "postgresql://costr:s3cret@127.0.0.1:1/costr")
    assert status == 2 and out == ""
    assert "cannot open the PostgreSQL at postgresql://costr:***@127.0.0.1:1/costr" in err
    assert "s3cret" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
