"""Attachments in the browser: the paperclip, drag and drop, long pastes, chips with progress, citations."""

from __future__ import annotations

import base64
import re

from playwright.sync_api import expect

from documents import samples
from tests.browser.conftest import composer, last_reply, new_chat, screenshot, send, wait_reply_done

FILLER = "The committee met again and read the minutes of the previous meeting aloud. " * 10


def chips(page):
    return page.locator("#attachments .chip")


def attach_files(page, *files: dict) -> None:
    """Choose files through the paperclip's file dialog."""
    with page.expect_file_chooser() as chooser:
        page.get_by_role("button", name="Attach files").click()
    chooser.value.set_files(list(files))


def test_the_paperclip_uploads_a_pdf_and_its_chip_shows_progress_then_ready(page, live):
    new_chat(page, live.url)
    # A slow upload link, so the upload progress is there to see (and to photograph).
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 256 * 1024},
    )
    report = samples.pdf_bytes([f"Page {n}. {FILLER}\n{'x' * 40000}" for n in range(1, 4)])
    attach_files(page, {"name": "owls report.pdf", "mimeType": "application/pdf", "buffer": report})

    chip = chips(page).last
    expect(chip.locator(".chip__name")).to_have_text("owls report.pdf")
    expect(chip).to_have_attribute("data-status", "uploading")
    expect(chip.locator(".chip__status")).to_have_text(re.compile(r"^Uploading… [1-9]\d?%$"))
    expect(chip.locator(".chip__progress")).to_be_visible()
    screenshot(page, "documents-chip-uploading")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )

    expect(chip).to_have_attribute("data-status", "ready", timeout=20_000)
    expect(chip.locator(".chip__status")).to_have_text("Ready · 3 pages")
    expect(chip.locator(".chip__progress")).to_be_hidden()
    screenshot(page, "documents-chip-ready")

    # The chip is the server's: a reload shows it as it was left.
    page.reload()
    expect(chips(page).locator(".chip__status")).to_have_text(["Ready · 3 pages"])


def test_a_dropped_image_is_refused_with_the_servers_reason_and_can_be_removed(page, live, problems):
    problems.allow(r"status of 415")  # the refusal itself, as the browser logs every 4xx
    new_chat(page, live.url)
    png = base64.b64encode(samples.PNG_BYTES).decode()
    page.evaluate(
        """([png]) => {
            const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "holiday.txt", { type: "text/plain" }));
            const main = document.getElementById("main");
            for (const type of ["dragenter", "dragover", "drop"]) {
                main.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
            }
        }""",
        [png],
    )
    chip = chips(page).last
    expect(chip).to_have_attribute("data-status", "failed")
    expect(chip.locator(".chip__status")).to_have_text(
        "This looks like a PNG image; upload text, Markdown, CSV, HTML, PDF or Word (.docx)."
    )
    screenshot(page, "documents-chip-refused")
    chip.get_by_role("button", name="Remove holiday.txt").click()
    expect(chips(page)).to_have_count(0)


def test_a_long_paste_is_offered_as_an_attachment(page, live):
    new_chat(page, live.url)
    long_text = "A pasted line of notes about the harbour.\n" * 200
    box = composer(page)
    box.focus()
    page.evaluate(
        """([text]) => {
            const transfer = new DataTransfer();
            transfer.setData("text/plain", text);
            document.getElementById("composer-input").dispatchEvent(
                new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
        }""",
        [long_text],
    )
    offer = page.locator("#paste-offer")
    expect(offer).to_be_visible()
    expect(offer).to_contain_text("8,400 characters")
    offer.get_by_role("button", name="Attach as file").click()
    expect(offer).to_be_hidden()
    expect(box).to_have_value("")
    chip = chips(page).last
    expect(chip.locator(".chip__name")).to_have_text(re.compile(r"^pasted-.*\.txt$"))
    expect(chip).to_have_attribute("data-status", "ready")

    # Or keep it as text, where the cursor was.
    page.evaluate(
        """([text]) => {
            const transfer = new DataTransfer();
            transfer.setData("text/plain", text);
            document.getElementById("composer-input").dispatchEvent(
                new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true, cancelable: true }));
        }""",
        [long_text],
    )
    page.get_by_role("button", name="Paste as text").click()
    expect(box).to_have_value(long_text)


def test_a_reply_lists_its_sources_as_numbered_citations_that_open_on_the_passage(page, live):
    new_chat(page, live.url)
    memo = samples.pdf_bytes(
        [
            "Lunch is served at noon in the east wing.",
            "The code word for the harbour gate is heron.",
            "Bring pens.",
        ]
    )
    attach_files(page, {"name": "gate memo.pdf", "mimeType": "application/pdf", "buffer": memo})
    expect(chips(page).last).to_have_attribute("data-status", "ready")

    send(page, "What is the code word for the harbour gate?")
    reply = wait_reply_done(page)
    sources = reply.locator(".sources .source")
    expect(sources).to_have_count(3)  # a small document is given whole: every page is a source
    first = sources.first
    expect(first.locator("summary")).to_have_text("[1] gate memo.pdf p. 2")
    expect(first.locator(".source__quote")).to_be_hidden()
    first.locator("summary").click()
    expect(first.locator(".source__quote")).to_have_text("The code word for the harbour gate is heron.")
    expect(first.get_by_role("link", name="Download gate memo.pdf")).to_have_attribute(
        "href", re.compile(r"/attachments/[0-9a-f-]{36}/download/$")
    )
    screenshot(page, "documents-citations")

    # The citations are the server's too: after a reload they are still there.
    page.reload()
    expect(last_reply(page).locator(".sources summary").first).to_have_text("[1] gate memo.pdf p. 2")


def test_a_long_pdf_shows_its_reading_progress_on_the_chip(page, live):
    new_chat(page, live.url)
    # Read page by page: a few seconds even on a quiet machine (the chip polls every 0.6 s).
    pages = [f"Page {n}. {FILLER * 4}" for n in range(1, 501)]
    attach_files(
        page,
        {"name": "annual minutes.pdf", "mimeType": "application/pdf", "buffer": samples.pdf_bytes(pages)},
    )
    chip = chips(page).last
    expect(chip).to_have_attribute("data-status", "processing", timeout=15_000)
    expect(chip.locator(".chip__status")).to_have_text(re.compile(r"^Reading… \d+%$"))
    expect(chip.locator(".chip__progress")).to_be_visible()
    screenshot(page, "documents-chip-reading")
    expect(chip).to_have_attribute("data-status", "ready", timeout=60_000)
    expect(chip.locator(".chip__status")).to_have_text("Ready · 500 pages")
