"""The routes every microservice has — health checks, the endpoint in the OpenAPI document, bad bodies, /metrics —
checked on this service by the runtime's shared tests (opea_new_runtime/service_tests.py)."""

from opea_new_runtime.service_tests import (  # noqa: F401  (pytest collects them here, on this service's app)
    test_a_body_that_is_not_a_json_object_is_a_422,
    test_health,
    test_metrics_count_requests_by_route_and_status,
    test_the_endpoint_is_in_the_openapi_document,
)
