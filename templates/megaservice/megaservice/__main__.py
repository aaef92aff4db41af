"""`python -m megaservice`: serve the pipeline on MEGA_SERVICE_HOST:MEGA_SERVICE_PORT until Ctrl-C or SIGTERM."""

from opea_new_runtime.megaservice import serve

from .pipeline import MEGASERVICE, build_orchestrator

if __name__ == "__main__":
    serve(MEGASERVICE, build_orchestrator)
