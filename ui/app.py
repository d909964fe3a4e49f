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
from markupsafe import Markup

from assistant.service import MAX_HISTORY_ITEMS, AssistantService, UploadError
from assistant.types import DocumentRecord, file_name
from assistant.ui import render
from assistant.web import assets

log = logging.getLogger(__name__)

# The page's CSS and the citation-click handler are files in ui/static/; the click handler is
# installed once per page from a gr.HTML `js_on_load` (the server mounts the Blocks, so Blocks-level
# js/css would be dropped). It reads only element ids we generate; never evaluates document text.
UI_DIR = Path(__file__).parent


def _message(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "content": content}


def build_ui(service: AssistantService) -> gr.Blocks:
    """The chat + documents UI over one shared `AssistantService`."""
    modes = service.answer_modes() or ["extractive"]
    default_top_k = max(int(service.settings.top_k), int(service.settings.answer_passages))  # what `ask` uses by default

    def examples_for_index(docs: list[DocumentRecord]) -> list[list[str]]:
        newest = sorted(docs, key=lambda d: -float(d.updated_at or 0))
        return [[q] for q in render.example_questions([d.title for d in newest])]

    def header_html(stats: dict[str, object]) -> str:
        return assets.render("header.html", stats=Markup(render.render_stats(stats)))

    def documents_state() -> tuple[str, str, Any, Any, Any]:
        docs, stats = service.documents(), service.stats()  # once per refresh: every output below reads them
        choices = [(f"{d.title or file_name(d.source)} \u2014 {file_name(d.source)} ({d.n_chunks} chunks)",
                    d.id) for d in docs]
        return (header_html(stats), render.render_documents(docs), gr.Dropdown(choices=choices, value=None),
                gr.Dataset(samples=examples_for_index(docs)), render.render_docs_heading(stats))

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
        title = next((d.title or file_name(d.source) for d in service.documents() if d.id == doc_id), doc_id)
        removed = service.remove(doc_id)
        note = (render.render_notice(f"Removed \u201c{title}\u201d.", "ok") if removed
                else render.render_notice("That document is no longer in the index.", "bad"))
        return (note, *documents_state())

    def on_load():  # type: ignore[no-untyped-def]
        return documents_state()

    # -- layout -----------------------------------------------------------------------------------

    with gr.Blocks(title="Document assistant", analytics_enabled=False) as demo:
        gr.HTML(assets.render("style.html", css=assets.static_text(UI_DIR, "app.css")),
                js_on_load=str(assets.static_text(UI_DIR, "cite.js")), elem_id="da-style", padding=False, container=False)
        header = gr.HTML(header_html(service.stats()), elem_id="da-header")
        turns = gr.State([])
        with gr.Tabs():
            with gr.Tab("Chat", id="chat", elem_id="da-tab-chat"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=360):
                        chatbot = gr.Chatbot(
                            label="Conversation", elem_id="da-chat", height=560, render_markdown=False,
                            sanitize_html=True, latex_delimiters=[], line_breaks=False, allow_tags=False,
                            placeholder=assets.render("chat_placeholder.html"), feedback_options=("Like", "Dislike"),
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
