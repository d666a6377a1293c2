"""Seed 002's scenario with examples/python/echo_bot.py: one user sends three
messages rapidly and three workers handle them concurrently."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading

import pytest

import sessiond
from _support import EXAMPLES, wait_for

spec = importlib.util.spec_from_file_location("echo_bot", EXAMPLES / "echo_bot.py")
echo_bot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(echo_bot)

TEXTS = ["m1", "m2", "m3"]


class Scenario:
    """Sends the three messages in a known arrival order: each one is sent only
    once the server has seen the previous one (granted it the lock, queued it,
    or answered it), so "rapid" never depends on thread scheduling luck."""

    def __init__(self, server, user_id, mode, work):
        self.server, self.user_id, self.mode, self.work = server, user_id, mode, work
        self.replies = {}
        self.finished = []  # texts in the order their handlers returned
        self.lock = threading.Lock()

    def send(self, text):
        def worker():
            with sessiond.Client(self.server.target) as c:  # one "bot instance" each
                reply = echo_bot.handle(c, self.user_id, text, self.mode, work=self.work)
            with self.lock:
                self.replies[text] = reply
                self.finished.append(text)

        t = threading.Thread(target=worker)
        t.start()
        return t


def locks(client):
    return client.stats().locks


def test_drop_mode_answers_busy_while_the_first_is_handled(server, client, sid):
    sc = Scenario(server, sid, "drop", work=1.5)
    base = locks(client)
    first = sc.send("m1")
    wait_for(lambda: locks(client).acquisitions > base.acquisitions, what="m1 to hold the lock")
    sc.send("m2").join(5)
    assert sc.replies["m2"] == echo_bot.BUSY, "m2 is answered busy at once, not queued"
    sc.send("m3").join(5)
    assert sc.replies["m3"] == echo_bot.BUSY
    first.join(10)
    assert sc.replies == {"m1": "echo #1: m1", "m2": echo_bot.BUSY, "m3": echo_bot.BUSY}
    assert sc.finished == ["m2", "m3", "m1"]
    assert client.get(sid, consistency="strong").fields == {"history": b"m1"}
    assert locks(client).contended >= base.contended + 2


def test_inorder_mode_handles_all_three_in_arrival_order(server, client, sid):
    sc = Scenario(server, sid, "inorder", work=0.3)
    base = locks(client)
    threads = [sc.send("m1")]
    wait_for(lambda: locks(client).acquisitions > base.acquisitions, what="m1 to hold the lock")
    threads.append(sc.send("m2"))
    wait_for(lambda: locks(client).waiting_now >= base.waiting_now + 1, what="m2 to queue")
    threads.append(sc.send("m3"))
    wait_for(lambda: locks(client).waiting_now >= base.waiting_now + 2, what="m3 to queue")
    for t in threads:
        t.join(15)
    assert sc.replies == {"m1": "echo #1: m1", "m2": "echo #2: m2", "m3": "echo #3: m3"}
    assert sc.finished == ["m1", "m2", "m3"]
    assert client.get(sid, consistency="strong").fields == {"history": b"m1\nm2\nm3"}
    after = locks(client)
    assert after.waits_granted >= base.waits_granted + 2 and after.waiting_now == base.waiting_now


@pytest.mark.parametrize("mode", ["drop", "inorder"])
def test_the_example_runs_as_shown(server, sid, mode):
    """`python echo_bot.py` itself, messages 0.2 s apart and each taking 1 s:
    far enough apart and long enough to be in a known order on a loaded host."""
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "echo_bot.py"), "--target", server.target, "--mode", mode, "--user", sid],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    texts = ["What is diabetes?", "Actually, tell me about cancer", "Never mind, explain heart disease"]
    if mode == "drop":
        want = [f"{texts[0]!r} -> echo #1: {texts[0]}"] + [f"{t!r} -> {echo_bot.BUSY}" for t in texts[1:]]
    else:
        want = [f"{t!r} -> echo #{i + 1}: {t}" for i, t in enumerate(texts)]
    assert lines == want


@pytest.mark.parametrize("mode", ["latest", "debounce"])
def test_a_burst_is_answered_once_as_shown(server, sid, mode):
    """`python echo_bot.py --mode latest|debounce`: messages 0.2 s apart, each
    answer taking 1 s, a second of quiet for debounce. Latest: the 1st is
    answered at once, the 3rd supersedes the 2nd and answers both; debounce:
    the 3rd answers all three once the user paused."""
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "echo_bot.py"), "--target", server.target, "--mode", mode, "--user", sid],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    t = ["What is diabetes?", "Actually, tell me about cancer", "Never mind, explain heart disease"]
    if mode == "latest":
        want = [
            f"{t[0]!r} -> echo (1 messages): {t[0]}",
            f"{t[1]!r} -> {echo_bot.SUPERSEDED}",
            f"{t[2]!r} -> echo (2 messages): {t[1]} / {t[2]}",
        ]
    else:
        want = [f"{t[0]!r} -> {echo_bot.SUPERSEDED}", f"{t[1]!r} -> {echo_bot.SUPERSEDED}",
                f"{t[2]!r} -> echo (3 messages): {t[0]} / {t[1]} / {t[2]}"]
    assert out.stdout.splitlines() == want


def test_dedupe_counts_each_event_once_however_often_delivered(server, client, sid):
    counts = echo_bot.deliver_twice(client, sid, TEXTS)
    for a, b in counts:
        assert a == b, "both deliveries of an event get the same answer"
    assert sorted(a for a, _ in counts) == [1, 2, 3]
    s = client.get(sid, consistency="strong")
    assert s.fields["messages"] == b"3" and s.version == 3
    assert sorted(sessiond.entries(s.fields["recent"])) == sorted(t.encode() for t in TEXTS)


def test_dedupe_mode_runs_as_a_script(server, sid):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "echo_bot.py"), "--target", server.target, "--mode", "dedupe", "--user", sid],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    assert out.count("delivered twice") == 3
