"""The chat pages: the conversation list and page, history fragments, exports.

Views stay thin: parse, call one selector or service, render. Everything a
person sees is rendered here on the server (message text through the one
sanitising renderer); the JavaScript only applies the socket's events.
Someone else's conversation is a 404 everywhere (`conversation_get`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import uuid

import structlog
from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.text import slugify
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import policy
from accounts.preferences import default_model_for
from conversations import llm, services
from conversations.events import conversation_payload
from conversations.exports import conversation_to_dict, conversation_to_markdown
from conversations.feedback import FeedbackRefused, message_feedback_set
from conversations.forms import (
    ArchiveForm,
    ConversationSettingsForm,
    FeedbackForm,
    FirstMessageForm,
    PinForm,
    RenameForm,
    VersionForm,
)
from conversations.generation import get_runtime
from conversations.llm.base import LLMError
from conversations.models import Conversation, Message
from conversations.search import conversation_search
from conversations.selectors import (
    conversation_get,
    conversation_history,
    conversation_list,
    conversation_page,
    messages_in_order,
)
from conversations.versions import VersionRefused, hit_branch, version_show
from documents.selectors import attachment_list

log = structlog.get_logger(__name__)
# The provider's model list is asked at most this often per cache, and never
# allowed to hold up a page for long.
MODELS_CACHE_SECONDS = 60
MODELS_TIMEOUT_SECONDS = 3.0
MODELS_CACHE_KEY = "chat:provider-models"


# --- conversations -------------------------------------------------------------


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """The latest conversation, or the new-chat page for someone who has none."""
    conversation = conversation_list(user=request.user).first()
    if conversation is None:
        return redirect("conversation-new")
    return redirect("conversation", conversation_id=conversation.id)


# Why a first send was refused -> the HTTP status that says so.
_REFUSAL_STATUS = {
    "rate_limited": 429,
    "quota_exceeded": 429,
    "busy": 409,
    "no_model": 503,
    "unavailable": 503,
    "model_not_allowed": 403,
    "session_ended": 403,
}


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
async def conversation_new(request: HttpRequest) -> HttpResponse:
    """GET: an empty composer, and nothing stored. POST the first message
    (JSON `{content, client_id}`, or a plain form without JavaScript): the
    conversation, that message and a `streaming` reply are written in one
    transaction, this process's runtime starts the reply, and the answer is
    201 `{conversation_id, url, message_id, reply_id}` (200 for a resend), or a
    redirect to the conversation, whose socket then syncs the streaming reply.
    """
    if request.method == "GET":
        return await sync_to_async(_new_chat_page)(request)
    as_json = request.content_type == "application/json"
    try:
        data = json.loads(request.body or b"{}") if as_json else request.POST
    except ValueError:
        data = None
    form = FirstMessageForm(data if isinstance(data, dict) or not as_json else None)
    if not form.is_valid():
        message = " ".join(e for errors in form.errors.values() for e in errors) or "Send a message."
        return await _new_chat_refused(request, as_json, "invalid", message, 400)
    accepting, worker = await _on_runtime_loop(_runtime_state)
    if not accepting:
        return await _new_chat_refused(
            request, as_json, "unavailable", "This server is restarting; send again.", 503
        )
    user = await request.auser()
    try:
        start = await database_sync_to_async(_first_send)(user, form.cleaned_data, worker)
    except services.SendRefused as refused:
        return await _new_chat_refused(
            request, as_json, refused.code, refused.message, _REFUSAL_STATUS.get(refused.code, 400)
        )
    if start.created:
        reply_id = start.reply.id
        await _on_runtime_loop(lambda runtime: runtime.start(reply_id))
    conversation_id = start.user_message.conversation_id
    url = reverse("conversation", kwargs={"conversation_id": conversation_id})
    log.info("conversation_started", conversation_id=str(conversation_id), resend=not start.created)
    if not as_json:
        return redirect(url)
    body = {
        "conversation_id": str(conversation_id),
        "url": url,
        "message_id": str(start.user_message.id),
        "reply_id": str(start.reply.id) if start.reply else None,
    }
    return JsonResponse(body, status=201 if start.created else 200)


async def _on_runtime_loop(call):
    """`await call(runtime)` on the runtime's loop, in a context of its own.

    A reply the runtime starts here must outlive the request. Two things of the
    request would otherwise go with it: its event loop (Django runs an async view
    on a loop of its own, ending with the request, when a sync-only middleware
    is in the chain) and its context variables, which carry asgiref's
    per-request thread executor (a task started from them fails its next
    database call once the response is sent: "CurrentThreadExecutor already
    quit"). So the call is scheduled on the runtime's loop with an empty context.
    """
    runtime = get_runtime()
    loop = runtime.loop
    if loop is None or not loop.is_running():
        loop = asyncio.get_running_loop()  # not started yet (tests): it starts on this loop
    done: concurrent.futures.Future = concurrent.futures.Future()

    async def run():
        await runtime.ensure_started()
        return await call(runtime)

    def begin() -> None:
        task = loop.create_task(run())
        task.add_done_callback(lambda finished: _settle(done, finished))

    loop.call_soon_threadsafe(begin, context=contextvars.Context())
    return await asyncio.wrap_future(done)


def _settle(done: concurrent.futures.Future, task: asyncio.Task) -> None:
    if task.cancelled():
        done.cancel()
    elif task.exception() is not None:
        done.set_exception(task.exception())
    else:
        done.set_result(task.result())


async def _runtime_state(runtime) -> tuple[bool, str]:
    return runtime.accepting, runtime.channel


def _first_send(user, fields: dict, worker: str) -> services.ReplyStart:
    model = default_model_for(user=user, offered=policy.allowed_models(user, available_models()))
    return services.conversation_start(owner=user, worker=worker, model=model, **fields)


def _new_chat_page(
    request: HttpRequest, *, error: str = "", content: str = "", status: int = 200
) -> HttpResponse:
    context = {
        **sidebar_context(request, archived=False),
        "provider_status": llm.provider_status(),
        "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
        "client_id": uuid.uuid4(),
        "error": error,
        "content": content,
    }
    return render(request, "conversations/new.html", context, status=status)


async def _new_chat_refused(
    request: HttpRequest, as_json: bool, code: str, message: str, status: int
) -> HttpResponse:
    if as_json:
        return JsonResponse({"error": {"code": code, "message": message}}, status=status)
    content = request.POST.get("content", "")
    return await sync_to_async(_new_chat_page)(request, error=message, content=content, status=status)


@never_cache
@login_required
@require_GET
def conversation_detail(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    # A search hit (`?m=<message id>`) opens the branch it lives in. The GET only
    # shows it; the page's script remembers the choice (POST version/, see lld.md).
    hit_id = _uuid_param(request.GET.get("m", ""))
    hit = hit_branch(conversation=conversation, message_id=hit_id) if hit_id else None
    messages, has_earlier = conversation_history(
        conversation=conversation,
        leaf=hit.leaf_id if hit else None,
        showing=hit.message_id if hit and not hit.busy else None,
    )
    context = {
        **sidebar_context(request, archived=False, current_id=conversation.id),
        "conversation": conversation,
        "messages": messages,
        "has_earlier": has_earlier,
        "hit": hit,
        "settings_form": _settings_form(conversation, user=request.user),
        "rename_form": RenameForm(initial={"title": conversation.title}),
        "provider_status": llm.provider_status(),
        "default_model_name": _default_model_name(),
        "max_message_chars": settings.CHAT_MAX_MESSAGE_CHARS,
        "attachments": attachment_list(conversation=conversation),
        "documents_max_bytes": settings.DOCUMENTS_MAX_BYTES,
        "documents_paste_chars": settings.DOCUMENTS_PASTE_CHARS,
        # Unsaved rows: the templates the browser clones for live messages.
        "user_template": Message(role=Message.Role.USER, status=Message.Status.COMPLETE),
        "assistant_template": Message(role=Message.Role.ASSISTANT, status=Message.Status.STREAMING),
    }
    return render(request, "conversations/chat.html", context)


@never_cache
@login_required
@require_GET
def conversation_messages(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """A server-rendered page of history, for "Load earlier" (`?before=<id>`) and
    for catching up after a reconnect (`?after=<id>`).

    `X-Has-Earlier` says whether older messages remain. `X-History-Reset: 1`
    means the `after` message is no longer on the shown branch (an edit or a
    regeneration in another tab): the fragment is the latest page, to show
    instead of everything.
    """
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    reset = False
    if "after" in request.GET:
        messages, has_earlier, reset = _history_after(conversation, request.GET["after"])
    else:
        messages, has_earlier = conversation_history(
            conversation=conversation, before=request.GET.get("before") or None
        )
    response = render(
        request,
        "conversations/_messages.html",
        {"messages": messages, "default_model_name": _default_model_name()},
    )
    response["X-Has-Earlier"] = "1" if has_earlier else "0"
    response["X-History-Reset"] = "1" if reset else "0"
    return response


@login_required
@require_POST
def conversation_rename(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    form = RenameForm(request.POST)
    if not form.is_valid():
        return _form_invalid(request, form, conversation)
    services.conversation_update(conversation=conversation, title=form.cleaned_data["title"])
    return _done(request, conversation)


@login_required
@require_POST
def conversation_archive(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    form = ArchiveForm(request.POST)
    form.is_valid()  # a boolean field: anything but a true value means false
    services.conversation_update(conversation=conversation, archived=form.cleaned_data.get("archived", False))
    return _done(request, conversation)


@login_required
@require_POST
def conversation_settings(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    form = _settings_form(conversation, user=request.user, data=request.POST)
    if not form.is_valid():
        return _form_invalid(request, form, conversation)
    # The header's model picker posts the model alone, Options the system prompt
    # alone: a field left out of the post is left as it is.
    services.conversation_update(
        conversation=conversation,
        model=form.cleaned_data["model"] if "model" in request.POST else None,
        system_prompt=form.cleaned_data["system_prompt"] if "system_prompt" in request.POST else None,
    )
    return _done(request, conversation)


@login_required
@require_POST
def conversation_version(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """Show another version of a message ("Previous version" / "Next version") and the
    conversation that continues from it; remembered for every tab (docs/protocol.md)."""
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    form = VersionForm(request.POST)
    if not form.is_valid():
        return _form_invalid(request, form, conversation)
    try:
        leaf = version_show(conversation=conversation, message_id=form.cleaned_data["message_id"])
    except VersionRefused as refused:
        return _refused(request, conversation, refused.code, refused.message)
    if _wants_json(request):
        return JsonResponse({"current_leaf_id": str(leaf)})
    return _done(request, conversation)


@login_required
@require_POST
def conversation_feedback(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """ "Good response" / "Bad response" on one reply of the conversation ("" withdraws it)."""
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    form = FeedbackForm(request.POST)
    if not form.is_valid():
        return _form_invalid(request, form, conversation)
    try:
        reply = message_feedback_set(
            conversation=conversation,
            message_id=form.cleaned_data["message_id"],
            rating=form.cleaned_data["rating"],
        )
    except FeedbackRefused as refused:
        return _refused(request, conversation, refused.code, refused.message)
    if _wants_json(request):
        return JsonResponse({"message_id": str(reply.id), "feedback": reply.feedback})
    return _done(request, conversation)


@login_required
@require_http_methods(["GET", "POST"])
def conversation_delete(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    """GET asks for confirmation; POST deletes."""
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    if request.method == "POST":
        services.conversation_delete(conversation=conversation)
        log.info("conversation_deleted", conversation_id=str(conversation_id))
        return redirect("home")
    return render(
        request,
        "conversations/confirm_delete.html",
        {**sidebar_context(request, archived=False), "conversation": conversation},
    )


@login_required
@require_GET
def conversation_export(request: HttpRequest, conversation_id: uuid.UUID, fmt: str) -> HttpResponse:
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    if fmt == "json":
        branches = request.GET.get("branches") == "all"
        body = json.dumps(conversation_to_dict(conversation, branches=branches), ensure_ascii=False, indent=2)
        content_type = "application/json; charset=utf-8"
    else:
        body = conversation_to_markdown(conversation)
        content_type = "text/markdown; charset=utf-8"
    filename = f"{slugify(conversation.title) or 'conversation'}-{str(conversation.id)[:8]}.{fmt}"
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@login_required
@require_POST
def conversation_pin(request: HttpRequest, conversation_id: uuid.UUID) -> HttpResponse:
    conversation = conversation_get(user=request.user, conversation_id=conversation_id)
    form = PinForm(request.POST)
    form.is_valid()  # a boolean field: anything but a true value means false
    conversation.set_pinned(form.cleaned_data.get("pinned", False))
    log.info("conversation_pinned", conversation_id=str(conversation.id), pinned=conversation.pinned)
    if _wants_json(request):
        return JsonResponse({"conversation": {"id": str(conversation.id), "pinned": conversation.pinned}})
    return _done(request, conversation)


@never_cache
@login_required
@require_GET
def archived_list(request: HttpRequest) -> HttpResponse:
    return render(request, "conversations/archived.html", sidebar_context(request, archived=True))


@never_cache
@login_required
@require_GET
def conversation_list_fragment(request: HttpRequest) -> HttpResponse:
    """The sidebar's list as an HTML fragment: a page of it (`?after=`), or search results
    (`?q=`, `&offset=`). `X-Next-Url` is the next page's URL, empty after the last."""
    try:
        current = uuid.UUID(request.GET.get("current", ""))
    except ValueError:
        current = None
    context = sidebar_context(request, archived=request.GET.get("archived") == "1", current_id=current)
    response = render(request, "conversations/_sidebar_groups.html", context)
    response["X-Next-Url"] = context["sidebar_next_url"]
    return response


# --- helpers -------------------------------------------------------------------


def sidebar_context(request: HttpRequest, *, archived: bool, current_id: uuid.UUID | None = None) -> dict:
    """The sidebar's first page (or the page `?after=` names), or search results for `?q=`.

    Pages go on without end: `sidebar_next_url` fetches the next one as a fragment,
    `sidebar_more_href` shows it as a page (without JavaScript).
    """
    query = request.GET.get("q", "").strip()
    limit = settings.CHAT_SIDEBAR_PAGE
    groups, hits, following = [], None, None
    first_page = not (request.GET.get("after") or request.GET.get("offset"))
    if query:
        try:
            offset = max(0, int(request.GET.get("offset", "0")))
        except ValueError:
            offset = 0
        hits, more = conversation_search(
            user=request.user, query=query, archived=archived, offset=offset, limit=limit
        )
        if more:
            following = {"q": query, "offset": str(offset + limit)}
    else:
        try:
            page = conversation_page(
                user=request.user, archived=archived, cursor=request.GET.get("after", "")
            )
        except ValueError:  # a cursor we did not make: start at the top
            page = conversation_page(user=request.user, archived=archived)
        groups = page.groups
        if page.next_cursor:
            following = {"after": page.next_cursor}
    next_url = more_href = ""
    if following:
        params = QueryDict(mutable=True)
        params.update(following)
        more_href = f"{request.path}?{params.urlencode()}"
        params["archived"] = "1" if archived else "0"
        if current_id is not None:
            params["current"] = str(current_id)
        next_url = f"{reverse('conversation-list')}?{params.urlencode()}"
    return {
        "sidebar_groups": groups,
        "sidebar_hits": hits,
        "sidebar_next_url": next_url,
        "sidebar_more_href": more_href,
        "sidebar_first_page": first_page,
        "query": query,
        "archived_view": archived,
        "current_id": current_id,
    }


def _settings_form(conversation: Conversation, *, user, data=None) -> ConversationSettingsForm:
    """The picker offers only the models the user's groups allow (accounts.policy)."""
    models = available_models()
    return ConversationSettingsForm.for_conversation(
        conversation,
        models=policy.allowed_models(user, models),
        default_allowed=policy.model_allowed(user, ""),
        current_allowed=policy.model_allowed(user, conversation.model),
        max_prompt_chars=settings.CHAT_MAX_MESSAGE_CHARS,
        data=data,
    )


def _default_model_name() -> str:
    """What a reply with no model of its own was written by: the provider's default."""
    provider = llm.get_provider()
    return provider.model if provider is not None and provider.model else ""


def available_models() -> list[str]:
    """The provider's models for the picker; [] when no provider is configured."""
    provider = llm.get_provider()
    if provider is None:
        return []
    models = cache.get(MODELS_CACHE_KEY)
    if models is None:
        try:
            models = async_to_sync(_list_models)(provider)
        except (LLMError, TimeoutError, OSError) as error:
            # The picker falls back to the configured model rather than failing the page.
            log.warning("model_list_failed", error=str(error))
            models = [provider.model] if provider.model else []
        cache.set(MODELS_CACHE_KEY, models, MODELS_CACHE_SECONDS)
    return models


async def _list_models(provider) -> list[str]:
    return list(await asyncio.wait_for(provider.list_models(), timeout=MODELS_TIMEOUT_SECONDS))


def _history_after(conversation: Conversation, after: str) -> tuple[list[Message], bool, bool]:
    """Messages after `after` on the visible branch: (messages, has_earlier, reset)."""
    ids = conversation.visible_message_ids()
    try:
        position = ids.index(uuid.UUID(after))
    except ValueError:
        position = None
    newer = ids[position + 1 :] if position is not None else None
    if newer is None or len(newer) > settings.CHAT_HISTORY_PAGE:
        # Not on this branch any more, or too far behind to patch: start over.
        messages, has_earlier = conversation_history(conversation=conversation)
        return messages, has_earlier, True
    return messages_in_order(conversation=conversation, ids=newer), True, False


def _uuid_param(value: str) -> uuid.UUID | None:
    """A UUID from a query parameter in its canonical 36-character form; None for anything else."""
    if len(value) != 36:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _done(request: HttpRequest, conversation: Conversation) -> HttpResponse:
    """After a change: JSON for the page's fetch, a redirect for a plain form post."""
    if _wants_json(request):
        return JsonResponse(conversation_payload(conversation))
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("conversation", kwargs={"conversation_id": conversation.id})
    return redirect(target)


_REFUSED_STATUS = {"not_found": 404, "busy": 409}


def _refused(request: HttpRequest, conversation: Conversation, code: str, message: str) -> HttpResponse:
    """A well-formed request the rules refuse: JSON `{error: {code, message}}`, or the error page."""
    status = _REFUSED_STATUS.get(code, 400)
    if _wants_json(request):
        return JsonResponse({"error": {"code": code, "message": message}}, status=status)
    return render(
        request,
        "conversations/form_error.html",
        {**sidebar_context(request, archived=False), "conversation": conversation, "refusal": message},
        status=status,
    )


def _form_invalid(request: HttpRequest, form, conversation: Conversation) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    return render(
        request,
        "conversations/form_error.html",
        {**sidebar_context(request, archived=False), "conversation": conversation, "form": form},
        status=400,
    )
