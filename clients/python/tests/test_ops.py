"""Field operations and idempotency keys through both clients, against a
real sessiond: the names the Node client has too."""

from __future__ import annotations

import asyncio

import pytest

import sessiond


def test_ops_count_append_and_flag_in_one_call(client, sid):
    ops = [
        sessiond.increment("turns"),
        sessiond.append("history", b"hi", keep_last=2),
        sessiond.set_if_absent("greeted", b"yes"),
    ]
    first = client.update(sid, ops=ops)
    assert first.version == 1
    assert first.op_values[0] == b"1"
    assert sessiond.entries(first.op_values[1]) == [b"hi"]
    assert first.op_values[2] == b"yes"
    for word in (b"how", b"are"):
        r = client.update(sid, ops=[sessiond.append("history", word, keep_last=2)])
    assert sessiond.entries(r.op_values[0]) == [b"how", b"are"]
    s = client.get(sid, consistency="strong")
    assert sessiond.entries(s.fields["history"]) == [b"how", b"are"]
    assert s.fields["turns"] == b"1"

    with pytest.raises(sessiond.FieldNotInteger) as e:
        client.update(sid, ops=[sessiond.increment("greeted")])
    assert e.value.field == "greeted"
    client.update(sid, {"big": str(2**63 - 1).encode()})
    with pytest.raises(sessiond.IntegerOverflow):
        client.update(sid, ops=[sessiond.increment("big")])
    with pytest.raises(sessiond.FieldNotList):
        client.update(sid, ops=[sessiond.append("turns", b"x", keep_last=3)])
    with pytest.raises(sessiond.InvalidFieldOp):
        client.update(sid, ops=[sessiond.append("history", b"x", keep_last=0)])


def test_idempotency_keys_answer_repeats(client, sid):
    first = client.update(sid, ops=[sessiond.increment("n")], idempotency_key="evt-1")
    again = client.update(sid, ops=[sessiond.increment("n")], idempotency_key="evt-1")
    assert again == first and first.op_values == (b"1",)
    with pytest.raises(sessiond.IdempotencyKeyReused):
        client.update(sid, ops=[sessiond.increment("n", 2)], idempotency_key="evt-1")
    assert client.delete(sid, idempotency_key="del-1") is True
    client.update(sid, {"a": b"1"})
    assert client.delete(sid, idempotency_key="del-1") is True  # the first answer
    assert client.get(sid, consistency="strong").fields == {"a": b"1"}


def test_the_async_client_has_the_same_names(server, sid):
    async def main():
        async with sessiond.AsyncClient(server.target) as c:
            rs = await asyncio.gather(
                *(c.update(sid, ops=[sessiond.increment("n")], idempotency_key="same") for _ in range(20))
            )
            assert {r.version for r in rs} == {1}
            r = await c.update(sid, ops=[sessiond.increment("n", -5)])
            assert r.op_values == (b"-4",)

    asyncio.run(main())
