"""An echo bot whose per-user state lives in sessiond.

It replays the scenario that made in-memory bots drop messages silently: the
same user sends three messages in quick succession and three workers (think:
three bot instances) handle them at the same time. sessiond's lock decides:

    python echo_bot.py --target 127.0.0.1:50051 --mode drop     # 1 answered, 2 told "busy"
    python echo_bot.py --target 127.0.0.1:50051 --mode inorder  # all 3 answered, in order
"""

import argparse
import threading
import time

import sessiond

BUSY = "Still answering your previous message: please send this one again in a moment."


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


def rapid_messages(client: sessiond.Client, user_id: str, texts, mode: str, gap: float = 0.2):
    """Sends `texts` for one user `gap` seconds apart, each handled by its own
    thread; returns the replies in the order the messages were sent."""
    replies = [None] * len(texts)

    def worker(i: int) -> None:
        replies[i] = handle(client, user_id, texts[i], mode)

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
    parser.add_argument("--mode", choices=["drop", "inorder"], default="drop")
    parser.add_argument("--user", default="user-42")
    args = parser.parse_args()

    texts = ["What is diabetes?", "Actually, tell me about cancer", "Never mind, explain heart disease"]
    with sessiond.Client(args.target) as client:
        client.delete(args.user)  # start the demo from a fresh session
        for text, reply in zip(texts, rapid_messages(client, args.user, texts, args.mode)):
            print(f"{text!r} -> {reply}")


if __name__ == "__main__":
    main()
