"""The web UI every generated project runs: its pipeline in a browser (`python -m opea_new_runtime.ui`).

Served from the project's root (`make run` and compose start it), it draws the flow
and each node's health, chats with a chat pipeline (streamed) or sends a raw one
JSON, tries any service from its OpenAPI document, manages the documents of a
dataprep service beside the flow and charts /v1/statistics. The pages are Jinja2
templates (templates/) with plain JS and CSS (static/): nothing fetched from
outside, no build step.

    GET  /, /chat, /raw, /services/<name>, /documents, /statistics    the pages (404 page where none applies)
    GET  /ui/api/pipeline                 the project as the pages draw it (name, nodes, edges, terminals, ...)
    GET  /v1/health, /v1/health_check     the UI process itself: {"status": "ok"}
    GET  /ui/static/...                   the pages' CSS and JS
    the megaservice's paths               POST <endpoint>, POST /v1/chat/completions, GET /v1/models,
                                          /v1/statistics, /v1/health/ready, /v1/services: passed to it
    POST /v1/dataprep/{ingest,get,delete} passed to the dataprep service (when there is one)
    GET|POST /ui/api/services/<name>/<path>   passed to that node: http://<its address>/<path>

Passing the services' own paths through (proxy.py) keeps the page same-origin: it works
the same on `make run` and behind compose's nginx front door, which routes those paths to
the services themselves. Answers stream back as they come; a service that cannot be
reached is a 502 (504: too slow) {"error": {"node", "status", "detail"}} naming it.

    UI_PROJECT              the project's root (default: the current folder)
    UI_HOST / UI_PORT       where the UI listens (default 127.0.0.1 / MEGASERVICE.ui_port, else 5173)
    UI_TIMEOUT              seconds a service may stay silent before it is a 504 (default 300)
    UI_CONNECT_TIMEOUT      seconds to connect to a service (default 10)
    UI_GRACEFUL_TIMEOUT     seconds requests in flight may take to finish on SIGTERM (default 10)
    MEGA_SERVICE_HOST_IP / MEGA_SERVICE_PORT      the megaservice (default 127.0.0.1 / MEGASERVICE.port)
    <NODE>_SERVICE_HOST_IP / <NODE>_SERVICE_PORT  each node (default 127.0.0.1 / its spec port)
    API_KEYS / API_KEYS_FILE / CORS_ALLOW_ORIGINS as opea_new_runtime.access: with a key, the pages,
                            their assets, /ui/api/pipeline and the health checks stay open and
                            everything passed to a service needs `Authorization: Bearer <key>`
                            (forwarded: the services check it again)
    LOG_LEVEL / LOGFLAG     uvicorn's log level, as the megaservice reads them

A bad value is one line on stderr and exit status 2. Needs the `ui` extra (jinja2).
"""
