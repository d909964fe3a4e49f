"""The Gradio chat UI: `build_ui(service)` returns a `gr.Blocks` to mount (the server mounts it at /ui).

- Chat tab: answers stream in (from `service.ask_stream`); each finished answer is HTML built by
  `render.py` (every document-derived string escaped) with clickable `[n]` citations that open the
  quoted passage, a Sources panel with the passages used, a distinct notice for abstentions, the
  answer backend, 👍/👎 feedback with an optional comment (stored by `service.feedback`), example
  questions derived from the indexed documents' titles, and a settings accordion (top-k, answer mode).
- Documents tab: upload (per-file status and reason), progress while indexing, the indexed
  documents with chunk counts, removal, index stats.
- API: `api_name="ask"` for gradio_client: `Client(url + "/ui/").predict(question, api_name="/ask")`
  (optional `history` list of earlier questions, `top_k`, `backend`) returns `AskResult.to_dict()`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import gradio as gr

from assistant.service import MAX_HISTORY_ITEMS, AssistantService, UploadError
from assistant.ui import render

log = logging.getLogger(__name__)

CSS = """
.da-header h1 { font-size: 1.45rem; margin: 0 0 .15rem 0; }
.da-header p { margin: 0; color: var(--body-text-color-subdued); }
.da-stats { display: flex; flex-wrap: wrap; gap: .4rem 1.1rem; font-size: .9rem; margin-top: .35rem;
  color: var(--body-text-color-subdued); }
.da-stats b { color: var(--body-text-color); }
.da-msg .da-text { line-height: 1.55; }
.da-question { white-space: pre-wrap; }
a.da-cite { display: inline-block; font-weight: 600; font-size: .82em; text-decoration: none;
  padding: 0 .3em; margin: 0 .08em; border-radius: .35em; cursor: pointer; vertical-align: .08em;
  background: var(--color-accent-soft); color: var(--color-accent) !important;
  border: 1px solid var(--color-accent); }
a.da-cite:hover, a.da-cite:focus { background: var(--color-accent); color: white !important; }
.da-sources { margin-top: .6rem; border-top: 1px solid var(--border-color-primary); padding-top: .45rem; }
.da-sources-label, .da-panel-title { font-size: .75rem; text-transform: uppercase; letter-spacing: .05em;
  font-weight: 600; color: var(--body-text-color-subdued); margin-bottom: .25rem; }
details.da-source { border: 1px solid var(--border-color-primary); border-radius: .5rem; margin: .35rem 0;
  padding: .3rem .6rem; background: var(--background-fill-primary); }
details.da-source > summary { cursor: pointer; font-size: .92rem; }
details.da-source[open] > summary { margin-bottom: .3rem; }
details.da-source.da-flash, details.da-source:target { outline: 2px solid var(--color-accent); }
.da-rank { font-size: .75rem; color: var(--body-text-color-subdued); margin-right: .2rem; }
.da-snippet { font-size: .82rem; font-weight: 400; color: var(--body-text-color-subdued); margin: .1rem 0 0 1.1rem; }
#da-sources-panel .da-title { font-size: .9rem; }
.da-n { font-weight: 700; color: var(--color-accent); margin-right: .15rem; }
.da-title { font-weight: 600; }
.da-meta { font-size: .78rem; color: var(--body-text-color-subdued); margin-bottom: .3rem; }
.da-passage { font-size: .9rem; line-height: 1.5; white-space: pre-wrap; max-height: 16rem; overflow-y: auto;
  border-left: 3px solid var(--border-color-accent); padding: .1rem 0 .1rem .6rem; }
mark.da-quote { background: #fde68a; color: #1f2937; padding: 0 .1em; border-radius: .15em; }
.da-warn { margin-top: .4rem; padding: .3rem .6rem; border-left: 4px solid #dc2626; background: rgba(220, 38, 38, .08);
  font-size: .8rem; }
.da-warn ul { margin: 0; padding-left: 1rem; }
.da-unverified { text-decoration: underline wavy #dc2626; background: rgba(220, 38, 38, .06); }
.da-footer { margin-top: .5rem; font-size: .75rem; color: var(--body-text-color-subdued); }
.da-backend { font-weight: 600; padding: 0 .35em; border-radius: .3em; background: var(--background-fill-secondary);
  border: 1px solid var(--border-color-primary); }
.da-readas { font-style: italic; }
.da-abstain { border-left: 4px solid #d97706; background: rgba(245, 158, 11, .12); padding: .5rem .75rem;
  border-radius: .4rem; }
.da-error { border-left: 4px solid #dc2626; background: rgba(220, 38, 38, .10); padding: .5rem .75rem;
  border-radius: .4rem; }
.da-notice-title { font-weight: 700; margin-bottom: .2rem; }
.da-abstain .da-notice-title { color: #b45309; }
.da-error .da-notice-title { color: #b91c1c; }
.da-hint { font-size: .85rem; margin-top: .3rem; color: var(--body-text-color-subdued); }
.da-cursor { animation: da-blink 1s steps(1) infinite; opacity: .6; }
@keyframes da-blink { 50% { opacity: 0; } }
.da-panel { padding: .2rem .1rem; }
.da-muted { color: var(--body-text-color-subdued); font-size: .85rem; margin: .2rem 0 .4rem 0; }
details.da-source.da-cited { border-color: var(--color-accent); }
.da-table-wrap { max-height: 28rem; overflow: auto; }
table.da-table { width: 100%; border-collapse: collapse; font-size: .88rem; }
table.da-table th { text-align: left; font-weight: 600; border-bottom: 2px solid var(--border-color-primary);
  padding: .35rem .5rem; position: sticky; top: 0; background: var(--background-fill-primary); }
table.da-table td { border-bottom: 1px solid var(--border-color-primary); padding: .35rem .5rem;
  vertical-align: top; overflow-wrap: anywhere; }
td.da-num { text-align: right; white-space: nowrap; }
td.da-id, td.da-file { font-family: var(--font-mono); font-size: .8rem; }
.da-ingest-summary { font-weight: 600; margin: .2rem 0 .4rem 0; }
.da-badge { display: inline-block; white-space: nowrap; font-size: .78rem; font-weight: 600; padding: .05rem .45rem; border-radius: 1rem;
  background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary); }
.da-status-ok .da-badge { background: #dcfce7; color: #166534; border-color: #86efac; }
.da-status-bad .da-badge { background: #fee2e2; color: #991b1b; border-color: #fca5a5; }
.da-status-warn .da-badge { background: #fef3c7; color: #92400e; border-color: #fcd34d; }
.da-status-bad .da-reason { color: #b91c1c; }
.da-notice { padding: .4rem .7rem; border-radius: .4rem; font-size: .9rem; }
.da-notice-ok { background: rgba(34, 197, 94, .12); border-left: 3px solid #16a34a; }
.da-notice-bad { background: rgba(220, 38, 38, .10); border-left: 3px solid #dc2626; }
.da-notice-info { background: var(--background-fill-secondary); border-left: 3px solid var(--border-color-accent); }
#da-sources-panel { max-height: 720px; overflow-y: auto !important; }
#da-sources-panel details.da-source > summary { font-size: .85rem; }
#da-sources-panel .da-title { font-size: .85rem; }
table.da-table td.da-title { font-weight: 500; }
td.da-nowrap, td.da-id { white-space: nowrap; }
td.da-file { min-width: 8rem; }
table.da-table td.da-title { min-width: 12rem; }
.da-docs-heading { display: flex; flex-wrap: wrap; align-items: baseline; gap: .2rem 1rem; margin-bottom: .3rem; }
.da-docs-heading h2 { font-size: 1.05rem; margin: 0; }
"""

# Citation clicks: open the `<details>` the `[n]` link points at and bring it into view. Installed
# once per page from a gr.HTML `js_on_load` (the server mounts the Blocks, so Blocks-level js/css
# would be dropped). Reads only element ids we generate; never evaluates document text.
CITE_JS = """
if (!window.__daCiteHandler) {
  window.__daCiteHandler = true;
  document.addEventListener('click', function (ev) {
    var link = ev.target && ev.target.closest ? ev.target.closest('a.da-cite') : null;
    if (!link) return;
    var id = (link.getAttribute('href') || '').replace(/^#/, '');
    var target = id ? document.getElementById(id) : null;
    if (!target) return;
    ev.preventDefault();
    target.open = true;
    target.classList.add('da-flash');
    setTimeout(function () { target.classList.remove('da-flash'); }, 1600);
    target.scrollIntoView({block: 'nearest', behavior: 'smooth'});
  }, true);
}
"""

CHAT_PLACEHOLDER = (
    "<div style='text-align:center;opacity:.75'><b>Ask about your documents.</b><br>"
    "Every answer cites the passage it comes from: click a <b>[n]</b> to see it.</div>"
)


def _message(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "content": content}


def build_ui(service: AssistantService) -> gr.Blocks:
    """The chat + documents UI over one shared `AssistantService`."""
    modes = service.answer_modes() or ["extractive"]
    default_top_k = max(int(service.settings.top_k), 8)  # what `ask` uses when no top_k is given

    def examples_for_index() -> list[list[str]]:
        docs = sorted(service.documents(), key=lambda d: -float(d.updated_at or 0))
        return [[q] for q in render.example_questions([d.title for d in docs])]

    def header_html() -> str:
        return ('<div class="da-header"><h1>Document assistant</h1>'
                "<p>Answers quote your documents; every claim carries a citation to the exact passage.</p>"
                f"{render.render_stats(service.stats())}</div>")

    def documents_state() -> tuple[str, str, Any, Any, Any]:
        docs = service.documents()
        choices = [(f"{d.title or render.file_name(d.source)} \u2014 {render.file_name(d.source)} ({d.n_chunks} chunks)",
                    d.id) for d in docs]
        return (header_html(), render.render_documents(docs), gr.Dropdown(choices=choices, value=None),
                gr.Dataset(samples=examples_for_index()), render.render_docs_heading(service.stats()))

    # -- chat ------------------------------------------------------------------------------------

    def respond(question: str, chat: list[dict[str, Any]] | None, turns: list[dict[str, Any]] | None,
                top_k: float | None, mode: str | None):  # type: ignore[no-untyped-def]
        question = (question or "").strip()
        chat = list(chat or [])
        turns = list(turns or [])
        if not question:
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        history = [t["question"] for t in turns][-MAX_HISTORY_ITEMS:]  # the service's limit on history
        turn_id = len(turns)
        chat.append(_message("user", render.render_question(question)))
        chat.append(_message("assistant", render.render_streaming("")))
        yield chat, "", gr.skip(), turns
        k = int(top_k) if top_k else None
        k = None if k == default_top_k else k
        backend = mode if mode in modes else None
        text = ""
        result: dict[str, Any] | None = None
        error = ""
        try:
            for event in service.ask_stream(question, history=history or None, top_k=k, backend=backend):
                kind = getattr(event, "kind", "")
                if kind == "token":
                    text += event.text
                    chat[-1] = _message("assistant", render.render_streaming(text))
                    yield chat, gr.skip(), gr.skip(), gr.skip()
                elif kind == "final" and event.result is not None:
                    result = event.result.to_dict()
                # other kinds (added by later backends) are ignored
        except Exception as exc:  # shown in the chat; the conversation goes on
            log.exception("answering %r failed", question)
            error = str(exc) or type(exc).__name__
        if result is None:
            error = error or "the answer stream ended without a result"
            chat[-1] = _message("assistant", render.render_error(error))
        else:
            chat[-1] = _message("assistant", render.render_answer(turn_id, result, service.document_text))
        kept = {k: v for k, v in result.items() if k != "passages"} if result else None  # what feedback needs
        turns.append({"question": question, "history": history, "result": kept, "error": error,
                      "message": len(chat) - 1})
        yield chat, gr.skip(), render.render_sources_panel(turn_id, result) if result else gr.skip(), turns

    def new_conversation():  # type: ignore[no-untyped-def]
        return [], [], render.render_sources_panel(None, None), "", ""

    def on_feedback(turns: list[dict[str, Any]] | None, comment: str | None, data: gr.LikeData):  # type: ignore[no-untyped-def]
        index = data.index[0] if isinstance(data.index, list | tuple) else data.index
        turn = next((t for t in turns or [] if t.get("message") == index), None)
        if turn is None or turn.get("result") is None:
            return render.render_notice("There is no answer to rate there.", "bad"), gr.skip()
        result = turn["result"]
        comment = (comment or "").strip()
        if data.liked is True or data.liked is False:
            rating = 1 if data.liked else -1
        elif isinstance(data.liked, str) and data.liked:  # an extra feedback option: a criticism
            rating = -1
            comment = f"{data.liked}: {comment}" if comment else data.liked
        else:  # the frontend sends "" when a selected thumb is clicked again (deselected)
            return render.render_notice("Rating cleared here; a rating already saved is kept.", "info"), gr.skip()
        service.feedback.add(rating, turn["question"], str(result.get("answer", "")),
                             citations=list(result.get("citations") or []), comment=comment,
                             history=list(turn.get("history") or []), abstained=bool(result.get("abstained")))
        verdict = "thumbs up" if rating > 0 else "thumbs down"
        note = f"Thanks: your {verdict} on \u201c{turn['question']}\u201d was saved"
        note += " with your comment." if comment else "."
        return render.render_notice(note, "ok"), ""

    def ask_api(question: str, history: list[str] | None = None, top_k: int | None = None,
                backend: str | None = None) -> dict[str, Any]:
        """Answer a question with citations. `history`: earlier questions of the conversation, oldest
        first; `top_k`: passages to retrieve; `backend`: an answer mode. Returns AskResult.to_dict()."""
        return service.ask(question, history=list(history or []) or None, top_k=top_k or None,
                           backend=backend or None).to_dict()

    # -- documents --------------------------------------------------------------------------------

    def on_ingest(files: list[str] | str | None, progress: gr.Progress = gr.Progress()):  # noqa: B008  # type: ignore[no-untyped-def]
        paths = [files] if isinstance(files, str) else list(files or [])
        if not paths:
            return (render.render_notice("Choose one or more files first.", "bad"), *documents_state(), gr.skip())
        started = time.perf_counter()
        rows: list[dict[str, Any]] = []
        accepted: list[tuple[str, str]] = []
        for path in paths:
            name = Path(path).name
            try:
                service.check_upload(name, os.path.getsize(path))
                accepted.append((path, name))
            except (UploadError, OSError) as exc:
                rows.append({"file": name, "status": "refused", "reason": str(exc)})
        for i, (path, name) in enumerate(accepted):
            progress((i, len(accepted)), desc=f"Indexing {name}", unit="files")
            try:
                report = service.ingest_uploads([(name, Path(path).read_bytes())])
                for r in report.results:
                    rows.append({"file": name, "status": r.status, "reason": r.reason, "chunks": r.chunks})
            except UploadError as exc:
                rows.append({"file": name, "status": "refused", "reason": str(exc)})
            except Exception as exc:  # report it per file; the others still go in
                log.exception("ingesting upload %s failed", name)
                rows.append({"file": name, "status": "failed", "reason": str(exc) or type(exc).__name__})
        progress((len(accepted), len(accepted)), desc="Done", unit="files")
        report_html = render.render_ingest_rows(rows, time.perf_counter() - started)
        return (report_html, *documents_state(), None)

    def on_remove(doc_id: str | None):  # type: ignore[no-untyped-def]
        if not doc_id:
            return (render.render_notice("Select a document to remove first.", "bad"), *documents_state())
        title = next((d.title or render.file_name(d.source) for d in service.documents() if d.id == doc_id), doc_id)
        removed = service.remove(doc_id)
        note = (render.render_notice(f"Removed \u201c{title}\u201d.", "ok") if removed
                else render.render_notice("That document is no longer in the index.", "bad"))
        return (note, *documents_state())

    def on_load():  # type: ignore[no-untyped-def]
        return documents_state()

    # -- layout -----------------------------------------------------------------------------------

    with gr.Blocks(title="Document assistant", analytics_enabled=False) as demo:
        gr.HTML(f"<style>{CSS}</style>", js_on_load=CITE_JS, elem_id="da-style", padding=False, container=False)
        header = gr.HTML(header_html(), elem_id="da-header")
        turns = gr.State([])
        with gr.Tabs():
            with gr.Tab("Chat", id="chat", elem_id="da-tab-chat"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=360):
                        chatbot = gr.Chatbot(
                            label="Conversation", elem_id="da-chat", height=560, render_markdown=False,
                            sanitize_html=True, latex_delimiters=[], line_breaks=False, allow_tags=False,
                            placeholder=CHAT_PLACEHOLDER, feedback_options=("Like", "Dislike"),
                            buttons=[], group_consecutive_messages=False,
                        )
                        with gr.Row(equal_height=True):
                            question = gr.Textbox(placeholder="Ask a question about your documents\u2026",
                                                  show_label=False, lines=1, max_lines=4, scale=6, autofocus=True,
                                                  elem_id="da-question", container=False)
                            ask_button = gr.Button("Ask", variant="primary", scale=1, min_width=80, elem_id="da-ask")
                        examples = gr.Dataset(label="Example questions", components=[question], samples=[],
                                              elem_id="da-examples", samples_per_page=5)
                        with gr.Row(equal_height=True):
                            comment = gr.Textbox(placeholder="Optional comment, saved with your next thumbs up / thumbs down",
                                                 show_label=False, container=False, scale=5, elem_id="da-comment")
                            clear_button = gr.Button("New chat", scale=1, min_width=110, elem_id="da-clear")
                        feedback_note = gr.HTML("", elem_id="da-feedback-note")
                    with gr.Column(scale=2, min_width=300):
                        with gr.Accordion("Settings", open=False, elem_id="da-settings"):
                            top_k = gr.Slider(1, 30, value=default_top_k, step=1, label="Passages to retrieve (top-k)",
                                              elem_id="da-top-k")
                            mode = gr.Dropdown(choices=modes, value=modes[0], label="Answer mode",
                                               elem_id="da-mode", interactive=len(modes) > 1)
                        sources = gr.HTML(render.render_sources_panel(None, None), elem_id="da-sources-panel")
            with gr.Tab("Documents", id="documents", elem_id="da-tab-documents"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=300):
                        uploads = gr.File(label="Upload documents (.txt .md .html .pdf .docx)", file_count="multiple",
                                          type="filepath", elem_id="da-upload")
                        ingest_button = gr.Button("Add to index", variant="primary", elem_id="da-ingest")
                        ingest_report = gr.HTML(render.render_ingest_rows([]), elem_id="da-ingest-result", min_height=110)
                    with gr.Column(scale=2, min_width=420):
                        doc_stats = gr.HTML(render.render_docs_heading(service.stats()), elem_id="da-doc-stats")
                        documents = gr.HTML(render.render_documents([]), elem_id="da-documents-list")
                        with gr.Row(equal_height=True):
                            to_remove = gr.Dropdown(label="Remove a document", choices=[], value=None, scale=4,
                                                    elem_id="da-remove-choice")
                            remove_button = gr.Button("Remove", variant="stop", scale=1, min_width=90,
                                                      elem_id="da-remove")
                        remove_note = gr.HTML("", elem_id="da-remove-note")

        doc_outputs = [header, documents, to_remove, examples, doc_stats]
        chat_inputs = [question, chatbot, turns, top_k, mode]
        chat_outputs = [chatbot, question, sources, turns]
        chat_event: dict[str, Any] = {"api_visibility": "private", "concurrency_limit": 4, "concurrency_id": "chat",
                                      "show_progress_on": [chatbot]}
        question.submit(respond, chat_inputs, chat_outputs, **chat_event)
        ask_button.click(respond, chat_inputs, chat_outputs, **chat_event)
        examples.click(lambda sample: sample[0] if sample else gr.skip(), examples, question,
                       api_visibility="private", queue=False).then(respond, chat_inputs, chat_outputs, **chat_event)
        clear_button.click(new_conversation, None, [chatbot, turns, sources, question, feedback_note],
                           api_visibility="private", queue=False)
        chatbot.clear(new_conversation, None, [chatbot, turns, sources, question, feedback_note],
                      api_visibility="private", queue=False)
        chatbot.like(on_feedback, [turns, comment], [feedback_note, comment], api_visibility="private")
        ingest_button.click(on_ingest, uploads, [ingest_report, *doc_outputs, uploads], api_visibility="private",
                            concurrency_limit=1, concurrency_id="write", show_progress_on=[ingest_report])
        remove_button.click(on_remove, to_remove, [remove_note, *doc_outputs], api_visibility="private",
                            concurrency_limit=1, concurrency_id="write", show_progress_on=[remove_note])
        demo.load(on_load, None, doc_outputs, api_visibility="private", show_progress="hidden")
        gr.api(ask_api, api_name="ask", concurrency_limit=4, concurrency_id="chat")
    return demo
