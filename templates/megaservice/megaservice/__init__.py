"""The megaservice: runs a request through the flow of services (`python -m megaservice`)."""
