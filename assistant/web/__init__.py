"""The web layer: one FastAPI app on uvicorn over one `AssistantService`.

    app.py       create_app(service, config): routes, pages and middleware put together; the Gradio UI at /ui
    run.py       serve(): uvicorn in the foreground, printing where to find the server
    config.py    ServerConfig and its checks (exposure without a key, CORS origins, frame-ancestors)
    state.py     ServerState: warm-up in the background, readiness and body-size checks
    security.py  middleware: bearer key, readiness and size before any body is read; CSP and
                 frame-ancestors headers; errors contained as JSON; CORS allowlist
    routes.py    the /api routes; models.py their pydantic request and response models (/docs)
    errors.py    JSON error answers, service refusals mapped to status codes
    sse.py       server-sent events framing for /api/ask/stream
    uploads.py   the streaming multipart reader and its limits
    preview.py   the one citation-preview rule (UI and /embed)
    assets.py    the jinja2 environment (autoescape) and the embed page with its CSP hashes;
                 templates/*.html and static/*.js|*.css are the files it serves
"""
