"""`python -m opea_new_runtime.control`: serve the project's instance control service (settings: the environment)."""

from .app import serve

if __name__ == "__main__":
    serve()
