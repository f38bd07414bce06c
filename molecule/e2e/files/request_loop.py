#!/usr/bin/env python3
"""Send short chat requests with the OpenAI client, one after another, until a stop file appears (or
`--seconds` pass); write every outcome as JSON. The key is read from `--key-file` before each
request, so a test moves the client to a new key by rewriting that file.

    request_loop.py --url https://HOST:8000/v1 --key-file F --model M --stop F --out F [--ca CA]
"""

from __future__ import annotations

import argparse
import json
import ssl
import time
from pathlib import Path

import openai


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("--url", "--key-file", "--model", "--stop", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--ca")
    parser.add_argument("--seconds", type=float, default=600)
    # at most 10 requests a second: under the front door's rate limit (200 per 10 s per address)
    parser.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()
    http_client = (
        openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=args.ca)) if args.ca else None
    )
    outcomes = []
    deadline = time.monotonic() + args.seconds
    while not Path(args.stop).exists() and time.monotonic() < deadline:
        key = Path(args.key_file).read_text().strip()
        client = openai.OpenAI(
            base_url=args.url, api_key=key, max_retries=0, timeout=60, http_client=http_client
        )
        started = time.time()
        next_at = time.monotonic() + args.interval
        try:
            client.chat.completions.create(
                model=args.model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
            )
            outcomes.append({"at": started, "ok": True})
        except openai.APIError as exc:
            outcomes.append({"at": started, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]})
        time.sleep(max(0.0, next_at - time.monotonic()))
    failed = [o for o in outcomes if not o["ok"]]
    Path(args.out).write_text(
        json.dumps({"requests": len(outcomes), "failed": len(failed), "failures": failed})
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
