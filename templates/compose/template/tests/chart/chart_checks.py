"""Render, lint and validate the project's Helm chart offline: no cluster, no helm binary.

helm-python-sdk (Helm v4's library) renders and lints the chart; kubernetes-validate checks every manifest
against the Kubernetes OpenAPI schemas, strictly (an unknown field is an error). What a schema cannot see is
checked here too (`semantic_problems`): the megaservice's *_SERVICE_HOST_IP variables name Services of the
chart, Services select pods and target ports those pods expose, probes hit exposed ports, secrets come only
from a Secret, every container is locked down, an Ingress routes to Services of the chart. Each check returns
a list of problems (empty: fine), so a test can show that a check catches a broken manifest.

Used by tests/chart/test_chart.py (`make chart`), and by opea-new's own tests.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

KUBE_VERSIONS = ("1.33.0", "1.37.0")  # the oldest supported Kubernetes this is checked for, and the newest schemas
SECRET_NAME = re.compile(r"(?i)(TOKEN|PASSWORD|SECRET|API_KEY|APIKEY|PRIVATE_KEY)")
SECRET_VALUE = re.compile(r"^(hf_[A-Za-z0-9]{8,}|sk-[A-Za-z0-9_-]{8,}|ghp_[A-Za-z0-9]{8,}|eyJ[A-Za-z0-9_-]{20,})")
HOOK = "helm.sh/hook"
# A Secret the chart may render itself: a password it generates (randAlphaNum), never a value from values files.
GENERATED = "opea-new/generated-secret"


def chart_dir(project: Path) -> Path:
    """The project's chart: the one folder under deploy/helm/."""
    charts = sorted(path for path in (project / "deploy" / "helm").iterdir() if (path / "Chart.yaml").is_file())
    if len(charts) != 1:
        raise AssertionError(f"expected one chart under {project / 'deploy' / 'helm'}, found {charts}")
    return charts[0]


def accelerator_files(chart: Path) -> list[Path]:
    return sorted(chart.glob("values-*.yaml"))


def read_values(*paths: Path) -> dict[str, Any]:
    """Values files merged the way Helm merges `-f` files: maps deeply, anything else replaced."""
    merged: dict[str, Any] = {}
    for path in paths:
        merged = merge(merged, yaml.safe_load(path.read_text()) or {})
    return merged


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def scaled(chart: Path, replicas: int = 2) -> dict[str, Any]:
    """Overrides that turn on everything that is off by default: replicas, an HPA and a PDB on every component
    (the UI's too, when the chart has one)."""
    defaults = yaml.safe_load((chart / "values.yaml").read_text())
    on = {"replicas": replicas,
          "autoscaling": {"enabled": True, "minReplicas": replicas, "maxReplicas": replicas + 2},
          "podDisruptionBudget": {"enabled": True}}
    overrides = {"megaservice": copy.deepcopy(on),
                 "services": {key: copy.deepcopy(on) for key in defaults["services"]}}
    if has_ui(chart):
        overrides["ui"] = copy.deepcopy(on)
    return overrides


def has_ui(chart: Path) -> bool:
    """The chart runs the web UI (values.yaml's ui.enabled: compose.yaml's `ui` service)."""
    return bool((yaml.safe_load((chart / "values.yaml").read_text()).get("ui") or {}).get("enabled"))


def render(chart: Path, values: dict[str, Any] | None = None, *, release: str | None = None,
           namespace: str = "default") -> list[dict[str, Any]]:
    """Every manifest the chart renders with these values (test hooks included), as objects."""
    import helm_python as helm

    with helm.Chart.load(chart) as loaded:
        rendered = loaded.render(values=values or {}, name=release or chart.name, namespace=namespace,
                                 is_install=True)
    documents = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".txt"):  # NOTES.txt
            continue
        documents += [document for document in yaml.safe_load_all(text) if document]
    return documents


def lint(chart: Path, values: dict[str, Any] | None = None, kube_version: str = KUBE_VERSIONS[0]) -> list[str]:
    """`helm lint --strict`: every warning and error (an info, such as 'icon is recommended', is not one)."""
    import helm_python as helm

    report = helm.lint(str(chart), values or {}, strict=True, kube_version=f"v{kube_version}")
    problems = [f"{message['path']}: {message['error']}" for message in report.get("messages") or []
                if message.get("severity", 0) >= 2]
    return problems + list(report.get("errors") or [])


def schema_problems(documents: list[dict[str, Any]], kube_version: str) -> list[str]:
    """kubernetes-validate, strict, for one Kubernetes version: every manifest that does not validate."""
    import kubernetes_validate

    problems = []
    for document in documents:
        try:
            kubernetes_validate.validate(document, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.absolute_path)
            problems.append(f"{name_of(document)}: {path}: {error.message}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as error:
            problems.append(f"{name_of(document)}: {error.message}")
    return problems


# ---------------------------------------------------------------- what a schema cannot check


def name_of(document: dict[str, Any]) -> str:
    return f"{document.get('kind')}/{(document.get('metadata') or {}).get('name')}"


def pod_specs(documents: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(owner, pod labels, pod spec) of every Deployment's and StatefulSet's template and every bare Pod (the
    test hook)."""
    pods = []
    for document in documents:
        if document.get("kind") in ("Deployment", "StatefulSet"):
            template = document["spec"]["template"]
            pods.append((name_of(document), template.get("metadata", {}).get("labels") or {}, template["spec"]))
        elif document.get("kind") == "Pod":
            pods.append((name_of(document), document.get("metadata", {}).get("labels") or {}, document["spec"]))
    return pods


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def of_kind(documents: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {document["metadata"]["name"]: document for document in documents if document.get("kind") == kind}


def selected(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def exposes(container: dict[str, Any], port: int | str) -> bool:
    ports = container.get("ports") or []
    if isinstance(port, str):
        return any(entry.get("name") == port for entry in ports)
    return any(entry.get("containerPort") == port for entry in ports)


def semantic_problems(documents: list[dict[str, Any]]) -> list[str]:
    return (wiring_problems(documents) + selector_problems(documents) + probe_problems(documents)
            + secret_problems(documents) + security_problems(documents) + scaling_problems(documents)
            + ingress_problems(documents))


def wiring_problems(documents: list[dict[str, Any]]) -> list[str]:
    """Every <NODE>_SERVICE_HOST_IP names a Service of the chart, and <NODE>_SERVICE_PORT is one of its ports."""
    services = of_kind(documents, "Service")
    problems = []
    for owner, _, spec in pod_specs(documents):
        for container in containers(spec):
            env = {entry["name"]: entry for entry in container.get("env") or []}
            for name, entry in env.items():
                if not name.endswith("_SERVICE_HOST_IP"):
                    continue
                host = entry.get("value")
                if host not in services:
                    problems.append(f"{owner}: {name}={host!r} is not a Service of the chart "
                                    f"({', '.join(sorted(services))})")
                    continue
                port_name = name.removesuffix("_HOST_IP") + "_PORT"
                port = (env.get(port_name) or {}).get("value")
                ports = [str(entry["port"]) for entry in services[host]["spec"].get("ports") or []]
                if port not in ports:
                    problems.append(f"{owner}: {port_name}={port!r} is not a port of Service {host} ({ports})")
    return problems


def ingress_problems(documents: list[dict[str, Any]]) -> list[str]:
    """Every path of an Ingress goes to a Service of the chart, on one of its ports; no path is routed twice."""
    services = of_kind(documents, "Service")
    problems = []
    for name, ingress in of_kind(documents, "Ingress").items():
        seen = set()
        for rule in ingress["spec"].get("rules") or []:
            for path in (rule.get("http") or {}).get("paths") or []:
                route = (rule.get("host"), path.get("path"), path.get("pathType"))
                if route in seen:
                    problems.append(f"Ingress/{name}: {path.get('path')!r} is routed twice")
                seen.add(route)
                backend = (path.get("backend") or {}).get("service") or {}
                target = services.get(backend.get("name"))
                if target is None:
                    problems.append(f"Ingress/{name}: {path.get('path')!r} goes to {backend.get('name')!r}, "
                                    "not a Service of the chart")
                    continue
                port = backend.get("port") or {}
                ports = target["spec"].get("ports") or []
                if not any(port.get("number") == entry["port"] or (port.get("name") and port.get("name")
                                                                   == entry.get("name")) for entry in ports):
                    problems.append(f"Ingress/{name}: {path.get('path')!r} goes to port {port} of Service "
                                    f"{backend['name']}, which it does not have")
    return problems


def selector_problems(documents: list[dict[str, Any]]) -> list[str]:
    """Every Service selects a Deployment's (or StatefulSet's) pods, and targets a port their containers expose."""
    pods = [(owner, labels, spec) for owner, labels, spec in pod_specs(documents)
            if owner.startswith(("Deployment/", "StatefulSet/"))]
    problems = []
    for name, service in of_kind(documents, "Service").items():
        selector = service["spec"].get("selector") or {}
        matching = [(owner, spec) for owner, labels, spec in pods if selected(selector, labels)]
        if not matching:
            problems.append(f"Service/{name}: its selector {selector} matches no Deployment's or StatefulSet's pods")
            continue
        for port in service["spec"].get("ports") or []:
            target = port.get("targetPort", port["port"])
            for owner, spec in matching:
                if not any(exposes(container, target) for container in containers(spec)):
                    problems.append(f"Service/{name}: targetPort {target!r} is not a port of {owner}'s containers")
    for name, deployment in of_kind(documents, "Deployment").items():
        selector = deployment["spec"]["selector"].get("matchLabels") or {}
        if not selected(selector, deployment["spec"]["template"]["metadata"].get("labels") or {}):
            problems.append(f"Deployment/{name}: its selector {selector} does not match its own pod labels")
    return problems


def probe_problems(documents: list[dict[str, Any]]) -> list[str]:
    """Every probe of a Deployment's container hits a port that container exposes; every one has all three."""
    problems = []
    for owner, _, spec in pod_specs(documents):
        for container in spec.get("containers") or []:
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = container.get(kind)
                if probe is None:
                    if owner.startswith("Deployment/"):
                        problems.append(f"{owner}: container {container['name']} has no {kind}")
                    continue
                action = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc")
                if action is None:
                    continue  # exec: no port
                if not exposes(container, action.get("port")):
                    problems.append(f"{owner}: the {kind} of {container['name']} hits port {action.get('port')!r}, "
                                    "which the container does not expose")
    return problems


def secret_problems(documents: list[dict[str, Any]]) -> list[str]:
    """No secret as an env literal (nor a token-shaped value), none in a ConfigMap, no Secret in the chart but
    one it generates (annotated GENERATED: a random password, such as the pgvector server's)."""
    generated = generated_secrets(documents)
    problems = []
    for owner, _, spec in pod_specs(documents):
        for container in containers(spec):
            for entry in container.get("env") or []:
                if "value" in entry and SECRET_NAME.search(entry["name"]):
                    problems.append(f"{owner}: {entry['name']} is an env literal; secrets come from a Secret "
                                    "(valueFrom.secretKeyRef)")
                elif isinstance(entry.get("value"), str) and SECRET_VALUE.search(entry["value"]):
                    problems.append(f"{owner}: {entry['name']} holds what looks like a token")
                reference = (entry.get("valueFrom") or {}).get("secretKeyRef")
                if reference is not None and not reference.get("optional") and reference["name"] not in generated:
                    problems.append(f"{owner}: {entry['name']} needs its Secret key (optional: true is expected)")
    for name, config_map in of_kind(documents, "ConfigMap").items():
        for key, value in {**(config_map.get("data") or {}), **(config_map.get("binaryData") or {})}.items():
            if SECRET_NAME.search(key) or (isinstance(value, str) and SECRET_VALUE.search(value)):
                problems.append(f"ConfigMap/{name}: {key} looks like a secret")
    problems += [f"Secret/{name}: the chart renders a Secret; name an existing one in secrets.existingSecret"
                 for name in of_kind(documents, "Secret") if name not in generated]
    return problems


def generated_secrets(documents: list[dict[str, Any]]) -> set[str]:
    return {name for name, secret in of_kind(documents, "Secret").items()
            if ((secret.get("metadata") or {}).get("annotations") or {}).get(GENERATED) == "true"}


def values_secret_problems(values: dict[str, Any], where: str = "") -> list[str]:
    """No secret-looking key with a value in a values file (secretEnv maps variables to Secret keys: allowed)."""
    problems = []
    for key, value in values.items():
        path = f"{where}.{key}" if where else str(key)
        if key == "secretEnv":
            continue
        if isinstance(value, dict):
            problems += values_secret_problems(value, path)
        elif SECRET_NAME.search(str(key)) and value not in (None, "", {}, []):
            problems.append(f"{path}: a secret-looking value in the values")
        elif isinstance(value, str) and SECRET_VALUE.search(value):
            problems.append(f"{path}: a token-shaped value in the values")
    return problems


def security_problems(documents: list[dict[str, Any]]) -> list[str]:
    """Every container: non-root, read-only root file system, no privilege escalation, no capabilities,
    RuntimeDefault seccomp (its own or its pod's), resource requests and limits."""
    problems = []
    for owner, _, spec in pod_specs(documents):
        pod = spec.get("securityContext") or {}
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{owner}: the service account token is mounted (automountServiceAccountToken)")
        for container in containers(spec):
            context = container.get("securityContext")
            where = f"{owner}: container {container['name']}"
            if not context:
                problems.append(f"{where} has no securityContext")
                continue
            if not context.get("runAsNonRoot", pod.get("runAsNonRoot")):
                problems.append(f"{where} may run as root (runAsNonRoot)")
            if context.get("runAsUser", pod.get("runAsUser")) == 0:
                problems.append(f"{where} runs as uid 0")
            if context.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: the root file system is writable (readOnlyRootFilesystem)")
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where} allows privilege escalation")
            if context.get("privileged"):
                problems.append(f"{where} is privileged")
            if "ALL" not in ((context.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{where} keeps capabilities (capabilities.drop: [ALL])")
            if (context.get("capabilities") or {}).get("add"):
                problems.append(f"{where} adds capabilities")
            seccomp = (context.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{where}: seccomp profile {seccomp!r} (RuntimeDefault expected)")
            resources = container.get("resources") or {}
            for kind in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(resources.get(kind) or {})
                if missing:
                    problems.append(f"{where} has no {kind} for {', '.join(sorted(missing))}")
    return problems


def scaling_problems(documents: list[dict[str, Any]]) -> list[str]:
    """HPAs scale a Deployment of the chart that has CPU requests and no fixed replicas; PDBs select its pods."""
    deployments = of_kind(documents, "Deployment")
    problems = []
    for name, hpa in of_kind(documents, "HorizontalPodAutoscaler").items():
        target = hpa["spec"]["scaleTargetRef"]
        deployment = deployments.get(target.get("name"))
        if target.get("kind") != "Deployment" or deployment is None:
            problems.append(f"HorizontalPodAutoscaler/{name}: scales {target}, not a Deployment of the chart")
            continue
        if "replicas" in deployment["spec"]:
            problems.append(f"HorizontalPodAutoscaler/{name}: Deployment/{target['name']} also fixes its replicas")
        if not all(((container.get("resources") or {}).get("requests") or {}).get("cpu")
                   for container in deployment["spec"]["template"]["spec"]["containers"]):
            problems.append(f"HorizontalPodAutoscaler/{name}: Deployment/{target['name']} has no CPU requests")
        if hpa["spec"].get("minReplicas", 1) > hpa["spec"]["maxReplicas"]:
            problems.append(f"HorizontalPodAutoscaler/{name}: minReplicas > maxReplicas")
    for name, pdb in of_kind(documents, "PodDisruptionBudget").items():
        selector = pdb["spec"].get("selector", {}).get("matchLabels") or {}
        if not any(selected(selector, deployment["spec"]["template"]["metadata"].get("labels") or {})
                   for deployment in deployments.values()):
            problems.append(f"PodDisruptionBudget/{name}: its selector {selector} matches no Deployment's pods")
    return problems


def helm_tests(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [document for document in documents
            if (document.get("metadata", {}).get("annotations") or {}).get(HOOK) == "test"]


def container_env(documents: list[dict[str, Any]], deployment: str) -> dict[str, dict[str, Any]]:
    """The env of a Deployment's (first) container, by variable name."""
    spec = of_kind(documents, "Deployment")[deployment]["spec"]["template"]["spec"]
    return {entry["name"]: entry for entry in spec["containers"][0].get("env") or []}


def deployment_of(documents: list[dict[str, Any]], component: str) -> dict[str, Any]:
    """The Deployment whose pods carry app.kubernetes.io/component=<component> (a service's DNS name)."""
    found = [document for document in of_kind(documents, "Deployment").values()
             if document["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == component]
    if len(found) != 1:
        raise AssertionError(f"{len(found)} Deployments of component {component!r}")
    return found[0]
