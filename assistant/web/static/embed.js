"use strict";
(function () {
  const AUTH = document.body.dataset.auth === "1";
  const KEY_ITEM = "assistant-api-key";
  const API = location.pathname.replace(/\/embed\/?$/, "") + "/api/";
  const log = document.getElementById("log");
  const askForm = document.getElementById("ask");
  const input = document.getElementById("q");
  const sendButton = document.getElementById("send");
  const keyForm = document.getElementById("keyform");
  const keyInput = document.getElementById("key");
  const statusLine = document.getElementById("status");
  const asked = [];  // earlier questions, for follow-ups

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setStatus(text, isError) {
    statusLine.textContent = text || "";
    statusLine.className = isError ? "error" : "";
  }

  // -- API key: from #key=..., else asked for; kept for this tab only --------------------------
  (function keyFromFragment() {
    const match = /(?:^#|&)key=([^&]*)/.exec(location.hash);
    if (match) {
      try { sessionStorage.setItem(KEY_ITEM, decodeURIComponent(match[1])); } catch (e) { /* storage off */ }
      history.replaceState(null, "", location.pathname + location.search);
    }
  })();

  function storedKey() {
    try { return sessionStorage.getItem(KEY_ITEM) || ""; } catch (e) { return ""; }
  }

  function needKey(message) {
    try { sessionStorage.removeItem(KEY_ITEM); } catch (e) { /* storage off */ }
    keyForm.hidden = false;
    keyInput.focus();
    setStatus(message, true);
  }

  keyForm.addEventListener("submit", function (event) {
    event.preventDefault();
    const key = keyInput.value.trim();
    if (!key) return;
    try { sessionStorage.setItem(KEY_ITEM, key); } catch (e) { /* storage off */ }
    keyInput.value = "";
    keyForm.hidden = true;
    setStatus("");
    input.focus();
  });

  function headers() {
    const h = { "Content-Type": "application/json" };
    const key = storedKey();
    if (key) h["Authorization"] = "Bearer " + key;
    return h;
  }

  async function errorOf(response) {
    try {
      const body = await response.json();
      if (body && body.error) return String(body.error);
    } catch (e) { /* not JSON */ }
    return "the server answered " + response.status;
  }

  // -- server-sent events over fetch --------------------------------------------------------------
  function parseEvent(block) {
    let kind = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) kind = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    let payload = null;
    try { payload = JSON.parse(data.join("\n")); } catch (e) { payload = null; }
    return { kind: kind, data: payload };
  }

  async function readStream(response, onToken) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = parseEvent(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (!event.data) continue;
        if (event.kind === "token") onToken(String(event.data.text || ""));
        else if (event.kind === "final") return event.data;
        else if (event.kind === "error") throw new Error(String(event.data.error || "the answer failed"));
      }
    }
    throw new Error("the answer stream ended early; try again");
  }

  // -- rendering (document text only ever as text nodes) ------------------------------------------
  // The last part of a source path: the rule of file_name() in assistant/web/preview.py.
  function fileName(source) {
    return String(source || "").split(/[\\/]/).pop();
  }

  function renderAnswer(node, result, showCitation) {
    node.textContent = "";
    node.classList.toggle("abstained", !!result.abstained);
    const text = String(result.answer || "");
    const known = new Set((result.citations || []).map(function (c) { return c.n; }));
    const re = /\[(\d+)\]/g;
    let last = 0;
    let match;
    while ((match = re.exec(text)) !== null) {
      const n = Number(match[1]);
      if (!known.has(n)) continue;
      node.appendChild(document.createTextNode(text.slice(last, match.index)));
      const ref = el("button", "ref", "[" + n + "]");
      ref.type = "button";
      ref.title = "show the quoted passage";
      ref.addEventListener("click", function () { showCitation(n); });
      node.appendChild(ref);
      last = match.index + match[0].length;
    }
    node.appendChild(document.createTextNode(text.slice(last)));
  }

  // The preview rule is the server's (assistant/web/preview.py, shared with the chat UI): the
  // cited span with the document text around it, or the quote alone when the span moved.
  async function previewOf(citation) {
    const response = await fetch(API + "preview", { method: "POST", headers: headers(), body: JSON.stringify({
      doc_id: citation.doc_id, start: citation.start, end: citation.end, quote: citation.quote }) });
    if (!response.ok) throw new Error(await errorOf(response));
    return response.json();
  }

  async function showPassage(preview, citation) {
    preview.hidden = false;
    preview.textContent = "";
    preview.appendChild(el("h3", "", "[" + citation.n + "] " + (citation.title || fileName(citation.source))));
    const body = el("div", "passage");
    preview.appendChild(body);
    try {
      const shown = await previewOf(citation);
      body.appendChild(document.createTextNode(String(shown.before)));
      const mark = el("mark", "", String(shown.quote));
      body.appendChild(mark);
      body.appendChild(document.createTextNode(String(shown.after)));
      preview.appendChild(el("div", "rate", fileName(citation.source) + ", characters " + citation.start + "-" + citation.end));
      mark.scrollIntoView({ block: "nearest" });
    } catch (e) {
      body.appendChild(el("span", "error", "could not load the passage: " + e.message));
    }
  }

  function renderCitations(list, preview, result) {
    list.textContent = "";
    for (const c of result.citations || []) {
      const item = el("li");
      item.value = c.n;
      const button = el("button", "cite", (c.title || fileName(c.source)) + " — " + fileName(c.source));
      button.type = "button";
      button.dataset.n = String(c.n);
      button.addEventListener("click", function () { showPassage(preview, c); });
      item.appendChild(button);
      list.appendChild(item);
    }
  }

  function renderRating(turn, question, earlier, result) {
    const bar = el("div", "rate", "Was this helpful?");
    for (const [label, rating] of [["👍", 1], ["👎", -1]]) {
      const button = el("button", "", label);
      button.type = "button";
      button.setAttribute("aria-label", rating > 0 ? "helpful" : "not helpful");
      button.addEventListener("click", async function () {
        bar.textContent = "Sending…";
        try {
          const response = await fetch(API + "feedback", { method: "POST", headers: headers(), body: JSON.stringify({
            rating: rating, question: question, history: earlier, answer: result.answer,
            citations: result.citations, abstained: result.abstained }) });
          bar.textContent = response.ok ? "Thanks for the feedback." : await errorOf(response);
        } catch (e) {
          bar.textContent = "could not send the feedback: " + e.message;
        }
      });
      bar.appendChild(button);
    }
    turn.appendChild(bar);
  }

  // -- asking -------------------------------------------------------------------------------------
  async function ask(question) {
    const turn = el("section", "turn");
    turn.appendChild(el("p", "question", question));
    const answer = el("p", "answer");
    const citations = el("ol", "citations");
    const preview = el("div", "preview");
    preview.hidden = true;
    turn.append(answer, citations, preview);
    log.appendChild(turn);
    turn.scrollIntoView({ block: "end" });
    const earlier = asked.slice(-10);
    sendButton.disabled = true;
    setStatus("Thinking…");
    try {
      const response = await fetch(API + "ask/stream", { method: "POST", headers: headers(),
        body: JSON.stringify({ question: question, history: earlier }) });
      if (response.status === 401) {
        turn.remove();
        input.value = question;
        needKey(AUTH ? "This assistant needs its API key: " + await errorOf(response) : await errorOf(response));
        return;
      }
      if (!response.ok || !response.body) throw new Error(await errorOf(response));
      const result = await readStream(response, function (piece) {
        answer.appendChild(document.createTextNode(piece));
      });
      function cite(n) {
        const c = (result.citations || []).find(function (x) { return x.n === n; });
        if (c) showPassage(preview, c);
      }
      renderAnswer(answer, result, cite);
      const notes = (result.warnings || []).map(String);
      if (result.fallback_reason && notes.indexOf(String(result.fallback_reason)) < 0) notes.push(String(result.fallback_reason));
      for (const note of notes) turn.insertBefore(el("p", "error", note), citations);
      turn.insertBefore(el("div", "rate", "answered by " + (result.backend || "extractive")), citations);
      renderCitations(citations, preview, result);
      renderRating(turn, question, earlier, result);
      asked.push(question);
      setStatus("");
    } catch (e) {
      answer.textContent = "";
      answer.appendChild(el("span", "error", e.message));
      setStatus("");
    } finally {
      sendButton.disabled = false;
      input.focus();
    }
  }

  askForm.addEventListener("submit", function (event) {
    event.preventDefault();
    const question = input.value.trim();
    if (!question) return;
    if (AUTH && !storedKey()) { needKey("Enter the API key first."); return; }
    input.value = "";
    ask(question);
  });

  if (AUTH && !storedKey()) needKey("This assistant needs its API key.");
  input.focus();
})();
