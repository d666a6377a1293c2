"""An echo bot whose per-user state lives in sessiond.

It replays the scenario that made in-memory bots drop messages silently: the
same user sends three messages in quick succession and three workers (think:
three bot instances) handle them at the same time. sessiond's lock decides:

    python echo_bot.py --target 127.0.0.1:50051 --mode drop     # 1 answered, 2 told "busy"
    python echo_bot.py --target 127.0.0.1:50051 --mode inorder  # all 3 answered, in order
    python echo_bot.py --target 127.0.0.1:50051 --mode dedupe   # each delivered twice, counted once
    python echo_bot.py --target 127.0.0.1:50051 --mode latest   # the 1st answered, then the 2nd and 3rd as one
    python echo_bot.py --target 127.0.0.1:50051 --mode debounce # all 3 answered as one, once the user paused

The dedupe mode is the other half of the scenario: the chat platform
delivers an event again when its acknowledgement was late (Slack retries
after 1 s and 5 min), so a bot sees the same message twice. The burst modes
answer a burst of messages once: sessiond hands the newest waiter the
messages of the ones it superseded.
"""

import argparse
import threading
import time

import sessiond

BUSY = "Still answering your previous message: please send this one again in a moment."
SUPERSEDED = "(answered with the next message)"


# [snippet:handle]
def handle(client: sessiond.Client, user_id: str, text: str, mode: str, work: float = 1.0) -> str:
    """Answers one message. mode "drop": say busy while another message of this
    user is being handled; "inorder": wait for it, first come first served."""
    wait = 0 if mode == "drop" else 30  # seconds to wait in sessiond's FIFO queue
    try:
        with client.locked(user_id, lease=10, wait=wait) as s:  # the lock is released at exit
            history = s.fields.get("history", b"").decode().splitlines()
            time.sleep(work)  # the slow part: asking the model for an answer
            s.set("history", "\n".join(history + [text]).encode())  # written at block exit
            return f"echo #{len(history) + 1}: {text}"
    except sessiond.LockHeld:
        return BUSY
# [/snippet:handle]


# [snippet:burst]
def answer_burst(client: sessiond.Client, user_id: str, text: str, mode: str, work: float = 1.0) -> str:
    """Answers only the newest message of a burst, together with the ones it
    superseded. mode "latest": as soon as the lock is free; "debounce": once
    the user has paused for a second."""
    policy, debounce = ("DEBOUNCE", 1.0) if mode == "debounce" else ("LATEST_WINS", None)
    try:
        lock = client.lock(user_id, lease=10, wait=30, policy=policy, debounce=debounce, payload=text.encode())
    except sessiond.Superseded:
        return SUPERSEDED  # a newer message of this user carries this one on
    try:
        burst = [p.decode() for p in lock.superseded_payloads] + [text]  # oldest first
        time.sleep(work)  # the slow part: asking the model, once for the whole burst
        return f"echo ({len(burst)} messages): {' / '.join(burst)}"
    finally:
        client.unlock(user_id, lock.token)
# [/snippet:burst]


# [snippet:dedupe]
def count_message(client: sessiond.Client, user_id: str, event_id: str, text: str) -> int:
    """Counts a message and keeps the last 20, in one call and without a lock.
    Keyed by the platform's event id, a delivery of the same event again is
    not counted twice: it gets the first delivery's answer."""
    r = client.update(
        user_id,
        ops=[sessiond.increment("messages"), sessiond.append("recent", text.encode(), keep_last=20)],
        idempotency_key=event_id,
    )
    return int(r.op_values[0])  # the count after this message
# [/snippet:dedupe]


def deliver_twice(client: sessiond.Client, user_id: str, texts):
    """Delivers each message twice at once, as a platform retrying a late
    acknowledgement does; returns the counts both deliveries answered."""
    counts = [[None, None] for _ in texts]

    def worker(i: int, j: int) -> None:
        counts[i][j] = count_message(client, user_id, f"evt-{i}", texts[i])

    threads = [threading.Thread(target=worker, args=(i, j)) for i in range(len(texts)) for j in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts


def rapid_messages(client: sessiond.Client, user_id: str, texts, mode: str, gap: float = 0.2):
    """Sends `texts` for one user `gap` seconds apart, each handled by its own
    thread; returns the replies in the order the messages were sent."""
    replies = [None] * len(texts)

    answer = answer_burst if mode in ("latest", "debounce") else handle

    def worker(i: int) -> None:
        replies[i] = answer(client, user_id, texts[i], mode)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
        time.sleep(gap)  # a fast typist, not the same millisecond
    for t in threads:
        t.join()
    return replies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051", help="sessiond host:port")
    parser.add_argument("--mode", choices=["drop", "inorder", "dedupe", "latest", "debounce"], default="drop")
    parser.add_argument("--user", default="user-42")
    args = parser.parse_args()

    texts = ["What is diabetes?", "Actually, tell me about cancer", "Never mind, explain heart disease"]
    with sessiond.Client(args.target) as client:
        client.delete(args.user)  # start the demo from a fresh session
        if args.mode == "dedupe":
            for text, (a, b) in zip(texts, deliver_twice(client, args.user, texts)):
                print(f"{text!r} delivered twice -> counted as message #{a} (and #{b})")
            return
        for text, reply in zip(texts, rapid_messages(client, args.user, texts, args.mode)):
            print(f"{text!r} -> {reply}")


if __name__ == "__main__":
    main()
