"""CPU of the MX's per-message content work, without a server: what the inbound pipeline
does with the text of every message it accepts, on `smtp_inbound.py`'s bench message.

    .venv/bin/python bench/message_work.py [--messages 2000] [--reps 5] [--size 5271]

Per message: the From addresses for member reject rules (the MIME parse, shared through
`recently_parsed`), the spam tokens, the search index entry and the envelope summary.
Prints the best rep in microseconds of process CPU per message (the host's noise only
ever adds time). To compare two revisions on one host, run it with each revision's `src`
first on PYTHONPATH (`git archive REV src | tar -x -C DIR`), alternating.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from smtp_inbound import MessageFactory

from tayori.delivery.indexing import message_index
from tayori.delivery.summary import summarise
from tayori.mime.recent import recently_parsed
from tayori.pipeline.member_rules import from_addresses
from tayori.spam.tokens import message_tokens


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size", type=int, default=5271)
    args = ap.parse_args()
    factory = MessageFactory(
        args.size, "sender@client.bench.test", "user{i:02d}@example.test", 100, "bench.test"
    )
    per_rep: list[float] = []
    for rep in range(args.reps):
        # New messages each rep: the parse cache must not answer from an earlier rep.
        raws = [factory.message(rep * args.messages + i) for i in range(args.messages)]
        start = time.process_time()
        for raw in raws:
            from_addresses(raw)
            message_tokens(recently_parsed(raw))
            message_index(raw)
            summarise(raw)
        per_rep.append(1e6 * (time.process_time() - start) / len(raws))
    listed = ", ".join(f"{value:.0f}" for value in per_rep)
    print(f"{min(per_rep):.0f} us of CPU per message (best of {args.reps}; all: {listed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
