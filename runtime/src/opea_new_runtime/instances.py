"""Discovery and load balancing: every node's instances, and which one answers each call.

Where a node's instances are (checked at start: a bad value is a SettingsError naming the variable):

    <NODE>_SERVICE_INSTANCES=host:port,host:port   a static list; wins over everything else ([v6]:port for IPv6)
    <NODE>_SERVICE_HOST_IP (default 127.0.0.1)     otherwise: an IP literal is one instance, never resolved; a
                                                   name is resolved with the event loop's getaddrinfo to every
                                                   address (Docker's embedded DNS answers a scaled compose service
                                                   with every replica), again every MEGA_SERVICE_DISCOVERY_TTL
                                                   seconds (default 5). IPv4 answers are kept when there are any
                                                   (a dual-stack name answers each replica twice); a name that
                                                   resolves to one address stays the name (the client resolves it).

Which instance: the one with the fewest calls outstanding (sent by this megaservice and not finished),
ties broken round robin. Round robin alone piles requests on a replica that is stuck with long LLM streams
(their lengths vary a lot); least-outstanding needs only this process's own counts, no coordination.

An instance that refuses a connection (refused, reset or closed before answering, connect timeout), or fails
its health check when the megaservice checks readiness, is set aside MEGA_SERVICE_SET_ASIDE seconds (default
5), doubled at each failure in a row up to MEGA_SERVICE_SET_ASIDE_MAX (default 60); then one call tries it
again, and a success brings it back. When every instance is set aside, the one that failed least recently is
still tried: a call never fails without trying.

Retries: a call whose instance fails before any byte of its answer arrived is sent once more, to another
instance. Our nodes' POSTs are not idempotent in general; they are retried only when nothing was received,
which is safe for the nodes a pipeline calls (an embedding, a retrieval, a completion: a lost answer is
recomputed, nothing is stored twice). Nothing is retried once an answer started (a stream cut mid-way is
an error), nor after a read timeout (the node may still be working on it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

logger = logging.getLogger("megaservice")

Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
Clock = Callable[[], float]


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order (the event loop's getaddrinfo)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def refused(error: BaseException) -> bool:
    """The instance failed before any byte of its answer arrived: safe to try another one."""
    lite_http = sys.modules.get("opea_new_runtime.engine.http")  # loaded only on lite (it needs httptools)
    if lite_http is not None:
        if isinstance(error, lite_http.ServerDisconnectedError):
            return not error.answered
        if isinstance(error, (lite_http.ConnectError, lite_http.ConnectTimeoutError)):
            return True
    # aiohttp: session.post() returns once the headers arrived, so whatever it raised came before them
    if isinstance(error, (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError,
                          aiohttp.ConnectionTimeoutError, aiohttp.ClientOSError)):
        return True
    return isinstance(error, (ConnectionRefusedError, ConnectionResetError))


class Instance:
    """One address of a node, and what this megaservice knows of it."""

    def __init__(self, host: str, port: int, protocol: str = "http") -> None:
        self.host = host
        self.port = port
        shown = f"[{host}]" if ":" in host else host
        self.address = f"{shown}:{port}"
        self.base = f"{protocol}://{self.address}"
        self.outstanding = 0
        self.requests = 0
        self.failures = 0
        self.failed_in_a_row = 0
        self.set_aside_until = 0.0
        self.last_failure = 0.0
        self.answered = False  # a call or health check of it succeeded
        self.probing = False  # one call is trying it again after its set-aside

    def state(self) -> str:
        if self.failed_in_a_row:
            return "set_aside"
        return "healthy" if self.answered else "unknown"

    def snapshot(self, now: float) -> dict[str, Any]:
        shown = {"address": self.address, "state": self.state(), "outstanding": self.outstanding,
                 "requests": self.requests, "failures": self.failures}
        if self.failed_in_a_row:
            shown["retry_in_seconds"] = round(max(0.0, self.set_aside_until - now), 3)
        return shown


class Instances:
    """One node's instances: discovered (static list, an address, or a name resolved again every `ttl`), chosen."""

    def __init__(self, host: str, port: int, *, protocol: str = "http",
                 static: Sequence[tuple[str, int]] | None = None, ttl: float = 5.0, set_aside: float = 5.0,
                 set_aside_max: float = 60.0, clock: Clock = time.monotonic, resolver: Resolver = resolve) -> None:
        self.host, self.port, self.protocol = host, int(port), protocol
        self.origin = f"{protocol}://{host}:{port}"  # what endpoint_path() starts with
        self.ttl, self.set_aside, self.set_aside_max = ttl, set_aside, set_aside_max
        self.clock, self.resolver = clock, resolver
        self._cursor = 0
        self._resolved_at: float | None = None
        self._lock = asyncio.Lock()
        if static:
            self.discovery = "static"
            self.instances = [Instance(h, p, protocol) for h, p in static]
        elif is_ip(host):
            self.discovery = "address"
            self.instances = [Instance(host.strip("[]"), self.port, protocol)]
        else:
            self.discovery = "dns"
            self.instances = []

    # ------------------------------------------------------------ discovery

    async def current(self) -> list[Instance]:
        """The instances now (a name is resolved on first use, and again once `ttl` has passed)."""
        if self.discovery == "dns":
            stale = self._resolved_at is None or self.clock() - self._resolved_at >= self.ttl
            if stale and not (self._lock.locked() and self.instances):  # one resolution at a time
                async with self._lock:
                    if self._resolved_at is None or self.clock() - self._resolved_at >= self.ttl:
                        await self._refresh()
        return self.instances

    async def _refresh(self) -> None:
        try:
            addresses = list(dict.fromkeys(await self.resolver(self.host, self.port)))
        except OSError as error:
            logger.warning("cannot resolve %s: %s (keeping %d known instances)", self.host, error,
                           len(self.instances))
            addresses = [instance.host for instance in self.instances] or [self.host]
        finally:
            self._resolved_at = self.clock()
        addresses = [address for address in addresses if ":" not in address] or addresses
        if len(addresses) == 1:
            addresses = [self.host]  # one address: the name itself, as without discovery
        known = {instance.host: instance for instance in self.instances}
        self.instances = [known.get(address) or Instance(address, self.port, self.protocol)
                          for address in addresses]
        if len(addresses) > 1:
            from .settings import bypass_proxies

            bypass_proxies(addresses)

    # ------------------------------------------------------------ choosing

    async def choose(self, exclude: Instance | None = None) -> Instance | None:
        """The instance the next call goes to (its outstanding count taken); None: no other than `exclude`."""
        instances = await self.current()
        if len(instances) == 1 and exclude is None and not instances[0].failed_in_a_row:
            chosen = instances[0]  # the common case, kept cheap
        else:
            now = self.clock()
            count = len(instances)
            chosen, at = None, 0
            for step in range(count):
                index = (self._cursor + step) % count
                instance = instances[index]
                if instance is exclude or instance.probing or instance.set_aside_until > now:
                    continue
                if chosen is None or instance.outstanding < chosen.outstanding:
                    chosen, at = instance, index
            if chosen is not None:
                self._cursor = at + 1
                if chosen.failed_in_a_row:
                    chosen.probing = True  # its set-aside is over: this one call tries it
            else:
                others = [instance for instance in instances if instance is not exclude]
                if not others:
                    return None
                chosen = min(others, key=lambda instance: instance.last_failure)  # all set aside: still try
        chosen.outstanding += 1
        chosen.requests += 1
        return chosen

    def succeeded(self, instance: Instance) -> None:
        instance.answered = True
        instance.failed_in_a_row = 0
        instance.set_aside_until = 0.0
        instance.probing = False

    def failed(self, instance: Instance, *, set_aside: bool = True) -> None:
        """A failure of `instance`; `set_aside`: it refused (or failed its health check), so it is set aside."""
        instance.failures += 1
        instance.probing = False
        if set_aside:
            now = self.clock()
            instance.failed_in_a_row += 1
            instance.last_failure = now
            delay = min(self.set_aside * 2 ** (instance.failed_in_a_row - 1), self.set_aside_max)
            instance.set_aside_until = now + delay
            logger.warning("%s:%s refused: set aside for %g s", self.host, instance.address, delay)

    @staticmethod
    def release(instance: Instance) -> None:
        instance.outstanding -= 1

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        return {"discovery": self.discovery, "host": self.host, "port": self.port,
                "instances": [instance.snapshot(now) for instance in self.instances]}


class Lease:
    """A call's hold on its instance: `done()` when its answer was read (or failed), once."""

    __slots__ = ("pool", "instance")

    def __init__(self, pool: Instances | None, instance: Instance | None) -> None:
        self.pool, self.instance = pool, instance

    def done(self, error: BaseException | None = None) -> None:
        if self.instance is None:
            return
        instance, self.instance = self.instance, None
        if isinstance(error, Exception) and not isinstance(getattr(error, "status", None), int):
            # reached, but its answer broke off or timed out (an error status is an answer)
            self.pool.failed(instance, set_aside=False)
        self.pool.release(instance)


NO_LEASE = Lease(None, None)


async def post(pool: Instances | None, session: Any, url: str, **kwargs: Any) -> tuple[Any, Lease]:
    """POST `url` to one of the node's instances (retried once on another when it refused); (answer, lease)."""
    if pool is None or not url.startswith(pool.origin):
        return await session.post(url, **kwargs), NO_LEASE
    path = url[len(pool.origin):]
    instance = await pool.choose()
    for attempt in (1, 2):
        try:
            response = await session.post(instance.base + path, **kwargs)
        except BaseException as error:
            pool.release(instance)
            if not isinstance(error, Exception):  # cancelled: not the instance's fault
                instance.probing = False
                raise
            if not refused(error):
                pool.failed(instance, set_aside=False)
                raise
            pool.failed(instance)
            retry = await pool.choose(exclude=instance) if attempt == 1 else None
            if retry is None:
                raise
            logger.info("%s refused (%s): trying %s", instance.address, error, retry.address)
            instance = retry
            continue
        pool.succeeded(instance)
        return response, Lease(pool, instance)
    raise AssertionError("unreachable")  # pragma: no cover


class Balancer:
    """Every node's Instances, by runtime node name (a node with an API key calls its one base URL)."""

    def __init__(self, config: Any, *, clock: Clock = time.monotonic, resolver: Resolver = resolve) -> None:
        self.config = config
        self.clock, self.resolver = clock, resolver
        self.pools: dict[str, Instances] = {}

    def add(self, name: str, service: Any, static: Sequence[tuple[str, int]] | None) -> None:
        if getattr(service, "api_key_value", None):
            return
        config = self.config
        self.pools[name] = Instances(
            str(service.host), int(service.port), protocol=getattr(service, "protocol", "http") or "http",
            static=static, ttl=config.discovery_ttl, set_aside=config.set_aside,
            set_aside_max=config.set_aside_max, clock=self.clock, resolver=self.resolver)

    def get(self, name: str) -> Instances | None:
        return self.pools.get(name)

    def hosts(self) -> list[str]:
        return [instance.host for pool in self.pools.values() for instance in pool.instances]
