"""Pipeline tests: every generated service and the megaservice as real processes on free ports of 127.0.0.1.

The fixtures (`project`, `stack`, `client`, `dead_node`, `whole_flow`, ...) are the
runtime library's: see opea_new_runtime/testing.py. Add fixtures of your own here.
"""

pytest_plugins = ["opea_new_runtime.testing"]
