"""`python -m app`: serve this microservice with uvicorn until Ctrl-C or SIGTERM (then exit 0)."""

from opea_new_runtime.service import serve

from .main import app

if __name__ == "__main__":
    serve(app)
