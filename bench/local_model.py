"""Measure the local model through the app's provider against llama-cpp-python alone.

Same GGUF, same threads, same ~40-token prompts, alternating rounds so both
see the same machine load; each round starts with a system line of its own
so neither side reuses a cached prompt prefix. Prints first-token time and
tokens/s (after the first token) for each side and the provider's overhead.

    python -m bench.local_model --rounds 6 --threads 2 --max-tokens 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

PROMPT = "Explain in a few sentences why the sky is blue and why sunsets look red."


def messages_for(round_number: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": f"Session {round_number}. You are a helpful assistant."},
        {"role": "user", "content": PROMPT},
    ]


def measure_raw(llama, messages, max_tokens: int) -> tuple[float, float, int]:
    started = time.perf_counter()
    arrivals = []
    for chunk in llama.create_chat_completion(messages=messages, stream=True, max_tokens=max_tokens):
        if chunk["choices"][0]["delta"].get("content"):
            arrivals.append(time.perf_counter())
    return summarize(started, arrivals)


async def measure_provider(provider, messages, max_tokens: int) -> tuple[float, float, int]:
    from conversations.llm.base import ChatMessage, GenerationOptions

    chat = [ChatMessage(role=m["role"], content=m["content"]) for m in messages]
    started = time.perf_counter()
    arrivals = []
    async for _ in provider.stream(chat, options=GenerationOptions(max_tokens=max_tokens)):
        arrivals.append(time.perf_counter())
    return summarize(started, arrivals)


def summarize(started: float, arrivals: list[float]) -> tuple[float, float, int]:
    ttft = arrivals[0] - started
    rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
    return ttft, rate, len(arrivals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=100)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatplatform.settings")
    import django

    django.setup()
    import llama_cpp

    from conversations.llm.llamacpp import (
        _LOAD_LOCK,
        LlamaCppProvider,
        _without_extra_buffer_types,
        default_model_path,
    )

    path = default_model_path()
    provider = LlamaCppProvider(model_path=path, threads=args.threads, context_tokens=8192)
    with _LOAD_LOCK, _without_extra_buffer_types():
        raw = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=8192,
            n_threads=args.threads,
            n_threads_batch=args.threads,
            verbose=False,
        )
    asyncio.run(provider.warm_up())
    prompt_tokens = provider.prompt_tokens(provider.llama(), messages_for(0))

    results: dict[str, list[tuple[float, float, int]]] = {"llama-cpp-python": [], "provider": []}
    # A warm-up round each (first calls allocate buffers), not counted.
    measure_raw(raw, messages_for(-1), 8)
    asyncio.run(measure_provider(provider, messages_for(-2), 8))
    for round_number in range(args.rounds):
        messages = messages_for(round_number)
        order = ("raw", "provider") if round_number % 2 == 0 else ("provider", "raw")
        for side in order:
            if side == "raw":
                results["llama-cpp-python"].append(measure_raw(raw, messages, args.max_tokens))
            else:
                results["provider"].append(asyncio.run(measure_provider(provider, messages, args.max_tokens)))

    print(f"model {path.name}, {args.threads} threads, prompt {prompt_tokens} tokens, {args.rounds} rounds")
    medians = {}
    for side, runs in results.items():
        ttft = statistics.median(r[0] for r in runs)
        rate = statistics.median(r[1] for r in runs)
        medians[side] = (ttft, rate)
        print(
            f"{side:>17}: first token {ttft * 1000:6.1f} ms (min {min(r[0] for r in runs) * 1000:.1f}), "
            f"{rate:6.1f} tokens/s (max {max(r[1] for r in runs):.1f}), "
            f"{statistics.mean(r[2] for r in runs):.0f} tokens a reply"
        )
    (raw_ttft, raw_rate), (app_ttft, app_rate) = medians["llama-cpp-python"], medians["provider"]
    print(
        f"provider vs alone: first token {(app_ttft / raw_ttft - 1) * 100:+.1f} %, "
        f"tokens/s {(app_rate / raw_rate - 1) * 100:+.1f} %"
    )


if __name__ == "__main__":
    main()
