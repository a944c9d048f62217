"""llama-cpp-python alone, in a fresh process of its own: the local model's bound for the benchmark.

The benchmark's own process holds thousands of objects by the time it gets
here (and the garbage collector walks them while llama-cpp-python's per-token
Python allocates), so the bound runs in a process as bare as the server's
model thread. It samples as the app's provider does by default
(`llamacpp.DEFAULT_SAMPLING`: the repeat penalty costs time a token, and
another temperature writes other tokens), so the two sides differ only by
what the app adds. One JSON request per line on stdin, one JSON answer per line:

    {"messages": [...], "max_tokens": 128}  -> {"ttft": s, "tokens": n, "tokens_per_second": r}
    {"tokenize": "text"}                    -> {"tokens": n}

    python -m bench.llama_worker --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def tokens(llama, text: str) -> int:
    return len(llama.tokenize(text.encode(), add_bos=False, special=False)) if text else 0


def generate(llama, messages, max_tokens: int, sampling: dict) -> dict:
    started = time.monotonic()
    first = last = None
    parts = []
    for chunk in llama.create_chat_completion(
        messages=messages, stream=True, max_tokens=max_tokens, **sampling
    ):
        text = chunk["choices"][0]["delta"].get("content")
        if text:
            now = time.monotonic()
            first = first or now
            last = now
            parts.append(text)
    count = tokens(llama, "".join(parts))
    return {
        "ttft": first - started,
        "tokens": count,
        "tokens_per_second": (count - 1) / (last - first) if count > 1 and last > first else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--context", type=int, default=8192)
    args = parser.parse_args()

    import llama_cpp

    from conversations.llm.llamacpp import (
        _LOAD_LOCK,
        DEFAULT_SAMPLING,
        _without_extra_buffer_types,
        default_model_path,
    )

    path = default_model_path()
    with _LOAD_LOCK, _without_extra_buffer_types():
        llama = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=args.context,
            n_threads=args.threads,
            n_threads_batch=args.threads,
            verbose=False,
        )
    print(json.dumps({"ready": True, "model": path.name}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if "tokenize" in request:
            answer = {"tokens": tokens(llama, request["tokenize"])}
        else:
            answer = generate(llama, request["messages"], request["max_tokens"], DEFAULT_SAMPLING)
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
