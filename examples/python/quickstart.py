"""The snippets of clients/python/README.md, runnable (and run by its tests).

    python quickstart.py --target 127.0.0.1:50051
"""

import argparse
import asyncio
import uuid

import sessiond


def basics(target: str, user_id: str) -> None:
    # [snippet:basics]
    client = sessiond.Client(target, timeout=5.0, retries=3)

    v = client.update(user_id, {"lang": b"en"}, expected_version=0)  # create only
    s = client.get(user_id)  # a Session dataclass: fields, version, expires_at, ...
    assert s.fields == {"lang": b"en"} and s.version == v.version

    try:
        client.get("nobody-" + user_id)
    except sessiond.SessionNotFound as e:
        print("not found:", e.reason)  # SESSION_NOT_FOUND
    # [/snippet:basics]
    client.close()


def locked(client: sessiond.Client, user_id: str) -> None:
    # [snippet:locked]
    with client.locked(user_id, lease=10, wait=5) as s:  # queue up to 5 s for the lock
        turns = int(s.fields.get("turns", b"0"))          # s.exists, s.version, s.fields
        s.set("turns", str(turns + 1).encode())           # or s.fields["turns"] = ...
        s.delete("draft")
    # the changes were written with the lock token, and the lock released, in one step
    print("written as version", s.result.version)
    # [/snippet:locked]


def cas(client: sessiond.Client, user_id: str) -> None:
    # [snippet:cas]
    def add_point(s: sessiond.SessionState) -> None:  # may run more than once
        s.fields["points"] = str(int(s.fields.get("points", b"0")) + 1).encode()

    client.update_with_retry(user_id, add_point, attempts=10)  # compare-and-set loop
    # [/snippet:cas]


def errors(client: sessiond.Client, user_id: str) -> None:
    # [snippet:errors]
    lock = client.lock(user_id, lease=10)
    try:
        client.update(user_id, {"x": b"1"})  # no token while someone holds the lock
    except sessiond.LockHeld as e:
        print(e.code, e.reason, e.metadata)  # StatusCode.FAILED_PRECONDITION LOCK_HELD {...}
    finally:
        client.unlock(user_id, lock.token)
    # [/snippet:errors]


async def with_asyncio(target: str, user_id: str) -> None:
    # [snippet:asyncio]
    async with sessiond.AsyncClient(target) as client:
        async with client.locked(user_id, lease=10, wait=5) as s:
            s.set("mood", b"curious")
        print((await client.get(user_id)).fields["mood"])  # b'curious'
    # [/snippet:asyncio]


def main() -> None:
    parser = argparse.ArgumentParser(description="Runs the README's snippets against sessiond")
    parser.add_argument("--target", default="127.0.0.1:50051")
    args = parser.parse_args()
    user_id = f"quickstart-{uuid.uuid4().hex[:8]}"
    basics(args.target, user_id)
    with sessiond.Client(args.target) as client:
        client.update(user_id, {"draft": b"..."})
        locked(client, user_id)
        cas(client, user_id)
        errors(client, user_id)
        asyncio.run(with_asyncio(args.target, user_id))
        final = client.get(user_id, consistency="strong")
        print({k: v.decode() for k, v in sorted(final.fields.items())})
        client.delete(user_id)


if __name__ == "__main__":
    main()
