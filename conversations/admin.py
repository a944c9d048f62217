"""The Django admin for conversations: browse, search, export; chat content is read-only here.

Messages and usage events are the record of what happened, so every admin
page shows them without a form; only a conversation's title and archived
flag can be changed. List pages annotate their figures with correlated
subqueries (one query per page, however many rows) and the usage page lives
at /admin/usage/ (conversations/admin_usage.py).
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Avg, Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import smart_split, unescape_string_literal

from conversations import exports
from conversations.admin_usage import usage_view
from conversations.models import Conversation, Message, UsageEvent
from conversations.rendering import render_markdown
from documents.admin import AttachmentInline
from documents.models import Attachment


def _rendered(text: str) -> SafeString:
    # render_markdown is the project's one sanitiser (nh3 allow-list): its
    # output, and only its output, may be marked safe.
    return format_html('<div class="message-content">{}</div>', mark_safe(render_markdown(text)))


def _timing(ttft_ms: int | None, duration_ms: int | None) -> str:
    if ttft_ms is None and duration_ms is None:
        return "-"
    ttft = f"{ttft_ms:,} ms" if ttft_ms is not None else "-"
    duration = f"{duration_ms:,} ms" if duration_ms is not None else "-"
    return f"{ttft} / {duration}"


def _conversation_link(conversation: Conversation | None) -> str:
    if conversation is None:
        return "-"
    url = reverse("admin:conversations_conversation_change", args=[conversation.pk])
    return format_html('<a href="{}">{}</a>', url, conversation.display_title)


def _search_terms(search_term: str) -> list[str]:
    """Words of the search box, with "quoted phrases" kept whole (as the stock admin does)."""
    terms = []
    for bit in smart_split(search_term):
        if bit[:1] in {'"', "'"} and bit[-1:] == bit[:1]:
            bit = unescape_string_literal(bit)
        if bit:
            terms.append(bit)
    return terms


class ChatAdminMedia:
    # Rendered message content and usage totals are styled from a file: the CSP forbids inline styles.
    css = {"all": ["css/chat-admin.css"]}


class ReadOnlyAdminMixin:
    """View-only: no add, change or delete, whatever the user's permissions say."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


# Rows that belong to a conversation or a user and go with it. Their own admins
# refuse deletion, which would otherwise block deleting their owner.
_CASCADED_CHAT_ROWS = {
    str(Message._meta.verbose_name),
    str(UsageEvent._meta.verbose_name),
    str(Attachment._meta.verbose_name),
}


class CascadeChatRowsMixin:
    """Deleting a conversation or a user takes its messages and usage rows with it."""

    def get_deleted_objects(self, objs, request: HttpRequest):
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed = {name for name in perms_needed if str(name) not in _CASCADED_CHAT_ROWS}
        return deleted, model_count, perms_needed, protected


class MessageColumnsMixin:
    """The columns a message shows wherever the admin lists it."""

    @admin.display(description="content")
    def content_html(self, message: Message) -> SafeString:
        return _rendered(message.content)

    @admin.display(description="tokens (prompt + completion)")
    def tokens(self, message: Message) -> str:
        return f"{message.prompt_tokens:,} + {message.completion_tokens:,}"

    @admin.display(description="TTFT / duration")
    def timing(self, message: Message) -> str:
        return _timing(message.ttft_ms, message.duration_ms)


# --- conversations ---------------------------------------------------------
class MessageInline(MessageColumnsMixin, ReadOnlyAdminMixin, admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["created_at", "role", "status", "on_branch", "content_html", "tokens", "timing", "model"]
    readonly_fields = fields
    ordering = ["created_at", "id"]
    verbose_name_plural = "messages (every branch, oldest first)"

    def get_formset(self, request: HttpRequest, obj=None, **kwargs):
        # One query for the whole conversation, not one per row.
        self._visible_ids = set(obj.visible_message_ids()) if obj is not None else set()
        return super().get_formset(request, obj, **kwargs)

    @admin.display(boolean=True, description="current branch")
    def on_branch(self, message: Message) -> bool:
        return message.pk in getattr(self, "_visible_ids", set())


class UsageEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = UsageEvent
    extra = 0
    can_delete = False
    show_change_link = True
    fields = [
        "created_at",
        "provider",
        "model",
        "status",
        "error_code",
        "prompt_tokens",
        "completion_tokens",
        "ttft_ms",
        "duration_ms",
    ]
    readonly_fields = fields
    ordering = ["created_at", "id"]


def _message_count() -> Coalesce:
    # Subqueries, not Count() over a join: two aggregates over the messages
    # join (or one over messages and one over usage) multiply each other.
    counts = (
        Message.objects.filter(conversation=OuterRef("pk"))
        .order_by()
        .values("conversation")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counts, output_field=IntegerField()), 0)


def _token_total() -> Coalesce:
    sums = (
        Message.objects.filter(conversation=OuterRef("pk"))
        .order_by()
        .values("conversation")
        .annotate(n=Sum(F("prompt_tokens") + F("completion_tokens")))
        .values("n")
    )
    return Coalesce(Subquery(sums, output_field=IntegerField()), 0)


@admin.register(Conversation)
class ConversationAdmin(CascadeChatRowsMixin, admin.ModelAdmin):
    Media = ChatAdminMedia
    list_display = [
        "display_title",
        "owner",
        "model",
        "message_count",
        "total_tokens",
        "archived",
        "updated_at",
    ]
    list_display_links = ["display_title"]
    list_filter = [("owner", admin.RelatedOnlyFieldListFilter), "model", "source", "archived", "updated_at"]
    list_select_related = ["owner"]
    list_per_page = 50
    # The stock admin would run a second COUNT over the whole table on every search.
    show_full_result_count = False
    date_hierarchy = "created_at"
    search_fields = ["title"]  # extended to message content in get_search_results
    search_help_text = "Searches titles, owners' usernames and the text of every message."
    ordering = ["-updated_at"]
    fields = [
        "title",
        "archived",
        "owner",
        "model",
        "system_prompt",
        "message_count",
        "total_tokens",
        "created_at",
        "updated_at",
    ]
    readonly_fields = [
        "owner",
        "model",
        "system_prompt",
        "message_count",
        "total_tokens",
        "created_at",
        "updated_at",
    ]
    inlines = [MessageInline, UsageEventInline, AttachmentInline]
    actions = ["export_json", "export_markdown"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Conversation]:
        return (
            super()
            .get_queryset(request)
            .annotate(message_count=_message_count(), total_tokens=_token_total())
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Conversation], search_term: str
    ) -> tuple[QuerySet[Conversation], bool]:
        """Every word must appear in the title, the owner's username or some message.

        EXISTS keeps one row per conversation however many messages match,
        so the result never needs DISTINCT.
        """
        for term in _search_terms(search_term):
            in_messages = Exists(Message.objects.filter(conversation=OuterRef("pk"), content__icontains=term))
            queryset = queryset.filter(
                Q(title__icontains=term) | Q(owner__username__icontains=term) | in_messages
            )
        return queryset, False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # conversations start in the chat, never in the admin

    @admin.display(description="title", ordering="title")
    def display_title(self, conversation: Conversation) -> str:
        return conversation.display_title

    @admin.display(description="messages", ordering="message_count")
    def message_count(self, conversation: Conversation) -> int:
        return conversation.message_count

    @admin.display(description="tokens", ordering="total_tokens")
    def total_tokens(self, conversation: Conversation) -> str:
        return f"{conversation.total_tokens:,}"

    def _download(self, body: str, *, extension: str, content_type: str) -> HttpResponse:
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = HttpResponse(body, content_type=f"{content_type}; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="conversations-{stamp}.{extension}"'
        return response

    @admin.action(description="Export selected conversations as JSON", permissions=["view"])
    def export_json(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        body = exports.conversations_to_json(queryset.order_by("-updated_at"))
        return self._download(body, extension="json", content_type="application/json")

    @admin.action(description="Export selected conversations as Markdown", permissions=["view"])
    def export_markdown(self, request: HttpRequest, queryset: QuerySet[Conversation]) -> HttpResponse:
        body = exports.conversations_to_markdown(queryset.order_by("-updated_at"))
        return self._download(body, extension="md", content_type="text/markdown")


# --- messages --------------------------------------------------------------
@admin.register(Message)
class MessageAdmin(MessageColumnsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    Media = ChatAdminMedia
    list_display = [
        "excerpt",
        "conversation_link",
        "role",
        "status",
        "model",
        "feedback",
        "tokens",
        "timing",
        "created_at",
    ]
    list_filter = ["role", "status", "feedback", "model", "created_at"]
    list_select_related = ["conversation"]
    list_per_page = 50
    show_full_result_count = False
    # No date_hierarchy: its links come from every message's month (a DISTINCT over the
    # whole table, 272 ms at 750,000 messages); the created_at filter narrows by date.
    search_fields = ["content"]
    search_help_text = "Searches the text of messages."
    fields = [
        "conversation",
        "role",
        "status",
        "content_html",
        "raw_content",
        "parent",
        "client_id",
        "model",
        "finish_reason",
        "feedback",
        "feedback_at",
        "error_code",
        "error",
        "prompt_tokens",
        "completion_tokens",
        "ttft_ms",
        "duration_ms",
        "worker",
        "heartbeat_at",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields

    @admin.display(description="message")
    def excerpt(self, message: Message) -> str:
        text = " ".join(message.content.split())
        return text if len(text) <= 80 else text[:79] + "…"

    @admin.display(description="conversation", ordering="conversation__title")
    def conversation_link(self, message: Message) -> str:
        return _conversation_link(message.conversation)

    @admin.display(description="as stored")
    def raw_content(self, message: Message) -> str:
        return format_html('<pre class="raw-content">{}</pre>', message.content)


# --- usage -----------------------------------------------------------------
@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    Media = ChatAdminMedia
    list_display = [
        "created_at",
        "user",
        "provider",
        "model",
        "status",
        "error_code",
        "prompt_tokens",
        "completion_tokens",
        "ttft_ms",
        "duration_ms",
        "source",
        "api_key_name",
        "conversation_link",
    ]
    list_filter = ["source", "model", "provider", "status", "error_code", "created_at"]
    list_select_related = ["user", "conversation"]
    list_per_page = 100
    show_full_result_count = False
    date_hierarchy = "created_at"
    search_fields = ["user__username"]
    search_help_text = "Searches usernames."
    fields = [
        "created_at",
        "user",
        "conversation",
        "message",
        "provider",
        "model",
        "status",
        "error_code",
        "prompt_tokens",
        "completion_tokens",
        "ttft_ms",
        "duration_ms",
        "source",
        "api_key_name",
    ]
    readonly_fields = fields

    @admin.display(description="conversation")
    def conversation_link(self, event: UsageEvent) -> str:
        return _conversation_link(event.conversation)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        """The list, with the totals of everything the current filters select (not just this page)."""
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:  # absent on redirects and error pages
            context["usage_totals"] = usage_totals(context["cl"].queryset)
        return response


def usage_totals(events: QuerySet[UsageEvent]) -> dict:
    """Tokens, calls and mean time to first token of a set of usage events: one query."""
    totals = events.order_by().aggregate(
        calls=Count("id"),
        prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
        completion_tokens=Coalesce(Sum("completion_tokens"), 0),
        avg_ttft_ms=Avg("ttft_ms"),
        failed=Count("id", filter=Q(status=UsageEvent.Status.FAILED)),
    )
    totals["tokens"] = totals["prompt_tokens"] + totals["completion_tokens"]
    return totals


# --- users -----------------------------------------------------------------
def _let_user_deletion_cascade() -> None:
    """Re-register the User admin so deleting a user is not blocked by their read-only chat rows."""
    user_model = get_user_model()
    if not admin.site.is_registered(user_model):
        return
    registered = type(admin.site.get_model_admin(user_model))
    if issubclass(registered, CascadeChatRowsMixin):
        return
    user_admin = type(registered.__name__, (CascadeChatRowsMixin, registered), {"__module__": __name__})
    admin.site.unregister(user_model)
    admin.site.register(user_model, user_admin)


_let_user_deletion_cascade()


# --- the usage page --------------------------------------------------------
def _with_usage_page(default_get_urls):
    """Put /admin/usage/ in front of the default site's URLs (named admin:usage).

    Wrapping the default site's get_urls keeps `admin.site` (and every app's
    registrations on it) as is, instead of swapping in an AdminSite subclass.
    """

    def get_urls():
        return [path("usage/", admin.site.admin_view(usage_view), name="usage"), *default_get_urls()]

    return get_urls


admin.site.get_urls = _with_usage_page(admin.site.get_urls)
