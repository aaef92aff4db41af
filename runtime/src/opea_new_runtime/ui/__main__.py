"""`python -m opea_new_runtime.ui`: serve the web UI of the project in the current folder (or UI_PROJECT)."""

from .app import serve

if __name__ == "__main__":
    serve()
