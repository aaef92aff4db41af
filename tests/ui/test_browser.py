"""The web UI in a real browser: every page of generated projects, as a user would use them.

Two projects, started whole by the runtime's runner (see conftest.py): docqna (chat, with a dataprep
service beside the flow; its llm stub streams a token every LLM_STUB_TOKEN_DELAY seconds, so an
answer visibly grows) and fan-out-in (raw, two terminal nodes), once more with API_KEYS set.
Every page is also checked at a phone's width (360 px: no horizontal scroll), and photographed.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.ui.conftest import CHROMIUM, clean_environment

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SPECS = Path(__file__).resolve().parents[1] / "e2e" / "specs"
DOCQNA = yaml.safe_load((SPECS / "documents.yaml").read_text())
FAN = json.loads((SPECS / "fan-out-in.json").read_text())
KEY = f"test-{secrets.token_urlsafe(24)}"
WAIT = 30_000  # ms: every wait is bounded
QUESTION = "What is OPEA?"


@pytest.fixture(scope="session")
def docqna(pipelines):
    return pipelines(DOCQNA, LLM_STUB_TOKEN_DELAY="0.12")


@pytest.fixture(scope="session")
def fan(pipelines):
    return pipelines(FAN)


@pytest.fixture(scope="session")
def guarded(pipelines):
    return pipelines(FAN, API_KEYS=KEY)


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    outside: list[str] = []
    opened.on("request", lambda request: outside.append(request.url)
              if not request.url.startswith(("http://127.0.0.1:", "data:", "blob:")) else None)
    yield opened
    context.close()
    assert not problems, problems
    assert not outside, f"fetched from outside the origin: {outside}"


def shoot(page, screenshots: Path, name: str) -> None:
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


def all_healthy(page, count: int) -> None:
    page.wait_for_function(f"document.querySelectorAll('.node-card[data-health=\"healthy\"]').length === {count}",
                           timeout=WAIT)


# ---------------------------------------------------------------- home


@pytest.mark.parametrize("which", ["docqna", "fan"])
def test_home_shows_the_flow_and_every_node_healthy(which, request, page, screenshots):
    running = request.getfixturevalue(which)
    spec = DOCQNA if which == "docqna" else FAN
    page.goto(running.ui_url + "/")
    assert spec["name"] in page.title()
    assert page.locator("h1").inner_text() == spec["name"]
    assert spec["description"] in page.locator(".lead").inner_text()
    names = [service["name"] for service in spec["services"]]
    diagram = page.locator("#diagram svg")
    assert diagram.count() == 1
    drawn = diagram.locator("a[data-node]").evaluate_all("links => links.map(a => a.dataset.node)")
    assert sorted(drawn) == sorted(names)
    all_healthy(page, len(names))
    for name in names:  # a word beside the colour
        card = page.locator(f'.node-card[data-node="{name}"]')
        assert card.locator(".health").inner_text() == "healthy"
        assert card.get_by_role("link", name=f"Open {name}").get_attribute("href") == f"/services/{name}"
    assert "healthy" in diagram.locator(f'a[data-node="{names[0]}"] text.state').text_content()
    if which == "docqna":  # beside the flow: drawn apart, below the line
        assert "Beside the flow" in diagram.text_content()
        flow_y = diagram.locator('a[data-node="llm"] rect').bounding_box()["y"]
        assert diagram.locator('a[data-node="dataprep"] rect').bounding_box()["y"] > flow_y
    page.keyboard.press("Tab")  # the skip link first: keyboard focus is visible
    focused = page.evaluate("getComputedStyle(document.activeElement).outlineStyle + ' '"
                            " + document.activeElement.className")
    assert focused.startswith("solid") and "skip" in focused
    shoot(page, screenshots, f"{which}-home")


# ---------------------------------------------------------------- chat


def test_chat_streams_the_answer_and_keeps_the_conversation(docqna, page, screenshots):
    page.goto(docqna.ui_url + "/chat")
    assert "docqna" in page.title()
    assert page.locator("#conversation").get_attribute("aria-live") == "polite"
    page.evaluate("""() => {
        window.seen = [];
        new MutationObserver(() => {
            const last = document.querySelector('#conversation .message.assistant:last-of-type .text');
            if (last) window.seen.push([performance.now(), last.textContent.length]);
        }).observe(document.getElementById('conversation'), {subtree: true, childList: true, characterData: true});
    }""")
    page.get_by_label("Your message").fill(QUESTION)
    page.get_by_role("button", name="Send").click()
    assert page.get_by_role("button", name="Stop").is_enabled()
    answer = page.locator("#conversation .message.assistant").last
    page.wait_for_function("document.querySelector('#conversation .message.assistant:last-of-type')"
                           ".dataset.state === 'done'", timeout=WAIT)
    text = answer.locator(".text").inner_text()
    assert QUESTION in text and len(text.split()) > 10  # the stub's answer (no documents stored yet)
    lengths = [length for _, length in page.evaluate("window.seen") if length]
    assert len(set(lengths)) >= 3 and lengths == sorted(lengths), lengths  # it grew, piece by piece
    times = [at for at, length in page.evaluate("window.seen") if length]
    assert times[-1] - times[0] > 300  # over time, not all at the end
    page.get_by_label("Your message").fill("And what does it answer from?")
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelectorAll('#conversation .message.assistant[data-state=done]')"
                           ".length === 2", timeout=WAIT)
    assert page.locator("#conversation .message.user").count() == 2  # the conversation is kept in the page
    page.get_by_label("Your message").fill(QUESTION)
    page.get_by_role("button", name="Send").click()
    page.wait_for_function("(document.querySelector('#conversation .message.assistant:last-of-type .text')"
                           " || {}).textContent?.length > 0", timeout=WAIT)
    page.get_by_role("button", name="Stop").click()
    page.wait_for_function("document.querySelector('#conversation .message.assistant:last-of-type')"
                           ".dataset.state === 'stopped'", timeout=WAIT)
    assert page.locator("#chat-status").inner_text() == "Stopped."
    shoot(page, screenshots, "docqna-chat")


def test_chat_shows_the_failing_node(docqna, page):
    page.goto(docqna.ui_url + "/chat")
    page.route("**/v1/docqna", lambda route: route.fulfill(
        status=502, content_type="application/json",
        body=json.dumps({"error": {"node": "rerank", "status": 500, "detail": "boom"}})))
    page.get_by_label("Your message").fill(QUESTION)
    page.get_by_role("button", name="Send").click()
    error = page.locator("#conversation .message.error")
    error.wait_for(timeout=WAIT)
    assert "rerank" in error.inner_text() and "boom" in error.inner_text()


def test_chat_reads_opea_byte_literal_streams(docqna, page):
    page.goto(docqna.ui_url + "/chat")
    events = "".join(f"data: {piece}\n\n" for piece in ("b'Hello'", "b' w\\xc3\\xb6rld'", "b'\\n!'", "[DONE]"))
    page.route("**/v1/docqna", lambda route: route.fulfill(status=200, content_type="text/event-stream", body=events))
    page.get_by_label("Your message").fill(QUESTION)
    page.get_by_role("button", name="Send").click()
    page.wait_for_function("document.querySelector('#conversation .message.assistant:last-of-type')"
                           ".dataset.state === 'done'", timeout=WAIT)
    assert page.locator("#conversation .message.assistant .text").text_content() == "Hello wörld\n!"


# ---------------------------------------------------------------- raw


def test_raw_page_answers_per_terminal_node(fan, page, screenshots):
    page.goto(fan.ui_url + "/raw")
    assert "fan-out-in" in page.title()
    editor = page.get_by_label("Request body (JSON object)")
    editor.fill('{"text": ')
    assert "Not valid JSON" in page.locator("#body-problem").inner_text()
    assert page.get_by_role("button", name="Send").is_disabled()
    editor.fill("[1, 2]")
    assert "must be a JSON object" in page.locator("#body-problem").inner_text()
    editor.fill('{"text": "x"}')
    page.get_by_role("button", name="Send").click()
    page.locator('#answer [data-terminal="joiner"]').wait_for(timeout=WAIT)
    joiner = json.loads(page.locator('#answer [data-terminal="joiner"] pre').inner_text())
    side = json.loads(page.locator('#answer [data-terminal="side-out"] pre').inner_text())
    assert joiner == {"text": "x", "trace": ["source_a", "right_branch", "joiner"]}
    assert side == {"text": "x", "trace": ["source_a", "left-branch", "side-out"]}
    shoot(page, screenshots, "fan-raw")


def test_chat_and_raw_pages_only_where_they_belong(docqna, fan, page):
    assert page.goto(docqna.ui_url + "/raw").status == 404
    assert "docqna" in page.title()
    assert page.goto(fan.ui_url + "/chat").status == 404
    assert page.goto(fan.ui_url + "/documents").status == 404
    assert page.goto(fan.ui_url + "/services/nope").status == 404
    assert page.locator("main").inner_text().strip()


# ---------------------------------------------------------------- services


def test_service_try_it_form_answers(docqna, fan, page, screenshots):
    page.goto(docqna.ui_url + "/services/llm")
    assert "llm" in page.title() and "docqna" in page.title()
    page.locator("#try-form").wait_for(state="visible", timeout=WAIT)
    assert page.get_by_label("Operation").input_value() == "0"
    assert "POST /v1/chat/completions" in page.locator("#operation option").first.inner_text()
    json.loads(page.get_by_label("Request body (application/json)").input_value())  # prefilled, valid JSON
    page.get_by_role("button", name="Send").click()
    page.wait_for_function("document.getElementById('answer-shown').dataset.status", timeout=WAIT)
    assert page.locator("#answer-shown").get_attribute("data-status") == "200"
    assert "POST /v1/chat/completions" in page.locator("#request-shown").inner_text()
    assert page.locator("#service-health").inner_text() == "healthy"
    shoot(page, screenshots, "docqna-service-llm")
    page.goto(fan.ui_url + "/services/joiner")
    page.locator("#try-form").wait_for(state="visible", timeout=WAIT)
    page.get_by_role("button", name="Send").click()
    page.wait_for_function("document.getElementById('answer-shown').dataset.status", timeout=WAIT)
    assert page.locator("#answer-shown").get_attribute("data-status") == "200"
    shoot(page, screenshots, "fan-service-joiner")


# ---------------------------------------------------------------- documents


def test_documents_upload_list_delete(docqna, page, screenshots):
    page.goto(docqna.ui_url + "/documents")
    assert "docqna" in page.title()
    name = f"notes-{secrets.token_hex(3)}.txt"
    page.get_by_label("Files (.txt, .md, .html, .pdf)").set_input_files(
        {"name": name, "mimeType": "text/plain", "buffer": b"OPEA stands for the Open Platform for Enterprise AI.\n"})
    page.get_by_role("button", name="Upload").click()
    row = page.locator(f'#documents tr[data-name="{name}"]')
    row.wait_for(timeout=WAIT)
    assert "Stored" in page.locator("#documents-status").inner_text()
    shoot(page, screenshots, "docqna-documents")
    messages: list[str] = []

    def confirm(dialog):
        messages.append(dialog.message)
        dialog.accept()

    page.once("dialog", confirm)
    row.get_by_role("button", name=f"Delete {name}").click()
    row.wait_for(state="detached", timeout=WAIT)
    assert messages and name in messages[0]
    assert f"Deleted {name}" in page.locator("#documents-status").inner_text()


# ---------------------------------------------------------------- statistics


def test_statistics_chart_after_requests(docqna, page, screenshots):
    import httpx

    for _ in range(3):
        httpx.post(docqna.mega_url + "/v1/docqna", json={"messages": QUESTION}, timeout=30, trust_env=False)
    page.goto(docqna.ui_url + "/statistics")
    assert "docqna" in page.title()
    page.wait_for_function("Number(document.body.dataset.requests) >= 3", timeout=WAIT)
    nodes = 1 + len([s for s in DOCQNA["services"] if s["type"] != "dataprep"])  # the megaservice + the flow
    assert page.locator('#requests-chart rect[data-series="requests"]').count() == nodes
    assert page.locator('#latency-chart rect[data-series="p95"]').count() == nodes
    width = page.locator('#requests-chart rect[data-series="requests"][data-node="llm"]').get_attribute("width")
    assert float(width) > 0
    before = int(page.evaluate("document.body.dataset.requests"))
    httpx.post(docqna.mega_url + "/v1/docqna", json={"messages": QUESTION}, timeout=30, trust_env=False)
    page.wait_for_function(f"Number(document.body.dataset.requests) > {before}", timeout=WAIT)  # refreshed
    shoot(page, screenshots, "docqna-statistics")


# ---------------------------------------------------------------- a phone's width


def test_every_page_fits_a_phone(docqna, fan, chromium, screenshots):
    context = chromium.new_context(viewport={"width": 360, "height": 740}, device_scale_factor=2, is_mobile=True,
                                   has_touch=True)
    context.set_default_timeout(WAIT)
    page = context.new_page()
    try:
        for running, path, name in [(docqna, "/", "docqna-home"), (docqna, "/chat", "docqna-chat"),
                                    (docqna, "/documents", "docqna-documents"),
                                    (docqna, "/statistics", "docqna-statistics"),
                                    (docqna, "/services/dataprep", "docqna-service-dataprep"),
                                    (docqna, "/services/llm", "docqna-service-llm"),
                                    (docqna, "/nothing-here", "docqna-error"),
                                    (fan, "/", "fan-home"), (fan, "/raw", "fan-raw")]:
            page.goto(running.ui_url + path)
            if path == "/":
                all_healthy(page, len(page.locator(".node-card").all()))
            if path == "/chat":
                page.get_by_label("Your message").fill(QUESTION)
                page.get_by_role("button", name="Send").click()
                page.wait_for_function("document.querySelector('#conversation .message.assistant:last-of-type')"
                                       "?.dataset.state === 'done'", timeout=WAIT)
            if path == "/raw":
                page.get_by_role("button", name="Send").click()
                page.locator("#answer section").first.wait_for(timeout=WAIT)
            page.wait_for_timeout(300)
            width = page.evaluate("document.documentElement.scrollWidth")
            shoot(page, screenshots, f"phone-{name}")
            assert width <= 360, f"{path}: {width} px wide at 360 px"
    finally:
        context.close()


# ---------------------------------------------------------------- API keys


def test_api_key_dialog(guarded, page, screenshots):
    page.goto(guarded.ui_url + "/")
    dialog = page.locator("#key-dialog")
    dialog.wait_for(state="visible", timeout=WAIT)
    key = page.get_by_label("Key (kept in this tab only)")
    key.fill("wrong-key-0123456789abcdef")
    page.get_by_role("button", name="Use this key").click()
    page.wait_for_function("document.getElementById('key-dialog-message').textContent.includes('401')", timeout=WAIT)
    assert dialog.is_visible()
    assert "refused" in page.locator("#key-dialog-message").inner_text()
    shoot(page, screenshots, "fan-key-dialog")
    key.fill(KEY)
    page.get_by_role("button", name="Use this key").click()
    all_healthy(page, len(FAN["services"]))
    assert not dialog.is_visible()
    assert KEY not in page.url
    assert page.evaluate("Object.keys(localStorage).length") == 0
    assert page.evaluate("sessionStorage.getItem('opea-new-api-key')") == KEY
    page.goto(guarded.ui_url + "/raw")  # the same tab keeps the key: no dialog
    page.get_by_role("button", name="Send").click()
    page.locator('#answer [data-terminal="joiner"]').wait_for(timeout=WAIT)
    assert not dialog.is_visible()


# ---------------------------------------------------------------- the projects' own browser tests


@pytest.mark.parametrize(("which", "expected"), [("docqna", 4), ("fan", 3)])
def test_the_projects_own_browser_tests_pass(which, expected, request, lite_venv):
    """`make browser`, as a project's README says: its requirements-browser.txt (Playwright), then its
    tests/test_browser.py on its own stack, in this machine's Chromium; the chat or raw page and, with dataprep,
    the documents page, each only where the project has it (nothing skipped)."""
    running = request.getfixturevalue(which)
    result = subprocess.run(["make", "browser", f"VENV={lite_venv}"], cwd=running.root, capture_output=True,
                            text=True, timeout=600, env=clean_environment(CHROMIUM=CHROMIUM))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert f"{expected} passed" in output and "skipped" not in output and "failed" not in output, output[-2000:]
