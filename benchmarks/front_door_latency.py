"""Latency the front door and the gateway add, measured side by side in one run.

Runs ON a serving host with its release's Python (which has the OpenAI client), so that vLLM's own
loopback port can be one of the targets:

    ansible -i INVENTORY HOST -b -m ansible.builtin.script \
      -a "benchmarks/front_door_latency.py --ca /tmp/ca.pem --key KEY --model M \
          --target direct=http://127.0.0.1:8001/v1 --target proxy=https://ADDR:8000/v1 \
          --target gateway=https://GW:8000/v1 executable=/opt/llmfleet/current/bin/python"

Each round sends one streamed chat request to every target in turn (so noise hits them alike) and
records the time to the first token and to the end; the table gives median and p99 per target and
each target's medians against the first target's.
"""

from __future__ import annotations

import argparse
import json
import ssl
import statistics
import time

import openai


def measure(client: openai.OpenAI, model: str, max_tokens: int) -> tuple[float, float]:
    started = time.perf_counter()
    first = None
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=max_tokens, stream=True
    )
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
    end = time.perf_counter()
    return (first or end) - started, end - started


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", action="append", required=True, help="NAME=BASE_URL")
    parser.add_argument("--ca", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    context = ssl.create_default_context(cafile=args.ca)
    targets = dict(t.split("=", 1) for t in args.target)
    clients = {
        name: openai.OpenAI(base_url=url, api_key=args.key, max_retries=0,
                            http_client=openai.DefaultHttpxClient(verify=context))
        for name, url in targets.items()
    }  # fmt: skip
    for client in clients.values():  # warm up: connections, the engine's first requests
        measure(client, args.model, args.max_tokens)
    results: dict[str, dict[str, list[float]]] = {name: {"ttft": [], "total": []} for name in clients}
    for _ in range(args.rounds):
        for name, client in clients.items():
            ttft, total = measure(client, args.model, args.max_tokens)
            results[name]["ttft"].append(ttft)
            results[name]["total"].append(total)
    base = next(iter(results))
    rows = []
    for name, series in results.items():
        row = {"target": name, "rounds": args.rounds}
        for kind, values in series.items():
            row[f"{kind}_median_ms"] = round(statistics.median(values) * 1000, 1)
            row[f"{kind}_p99_ms"] = round(p99(values) * 1000, 1)
            row[f"{kind}_median_vs_{base}"] = round(
                statistics.median(values) / statistics.median(results[base][kind]), 3
            )
        rows.append(row)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
