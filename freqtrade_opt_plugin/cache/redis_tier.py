"""The shared cache tier on Redis, behind the local disk caches: local, then Redis, then compute.

Cache keys are content hashes, so an entry never changes once written: the tier needs no
invalidation, only integrity, bounds and trust.

* **Data only.** A Redis value is ``ENTRY_MAGIC`` + a 32-byte tag + the local tier's payload (the
  non-pickle encoding of ``disk.py`` with its own SHA-256). The tag is an HMAC-SHA256 of the full
  Redis key and the payload, keyed with ``redis_signing_key`` (empty without one): an entry moved
  to another key, cut short, flipped or written by anything but this plugin (or, with a signing
  key, by a machine without the key) is refused, removed, and named in one warning.
* **Bounds.** Entries above ``redis_max_entry_mb`` stay local; each has a TTL
  (``redis_ttl_seconds``); the server's ``maxmemory`` with ``maxmemory-policy allkeys-lru`` bounds
  the whole tier (a full server with ``noeviction`` only makes stores fail: one warning).
* **Trust.** Plain-text ``redis://`` to a host other than loopback is refused unless
  ``redis_allow_plaintext``; ``rediss://`` (TLS) and passwords (in the URL or
  ``redis_password``) are redis-py's. A user whose ACL forbids writes reads only (logged once).
* **Failures.** Timeouts are redis-py's (``socket_timeout``, ``socket_connect_timeout``), with no
  retries: Redis down, slow or failing costs one bounded wait, one warning, and the tier is
  skipped for ``redis_retry_seconds``; results come from the local tier or are computed.
* **A short lock.** For costly caches (`LOCKED_CACHES`) a process missing an entry takes a lock
  (redis-py's ``Lock``, ``redis_lock_seconds``) while it computes; another machine missing the same
  entry meanwhile waits for it at most ``redis_lock_wait_seconds``, then computes itself. The
  lock ends when the value is stored, refused (``skip``), or when the same thread looks up
  another key of that cache (its computation is over, stored or not).
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import ipaddress
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from freqtrade_opt_plugin.cache.disk import CorruptEntry
from freqtrade_opt_plugin.cache.settings import ENV_PREFIX, CacheSettings


logger = logging.getLogger(__name__)

__all__ = ["ENTRY_MAGIC", "KEY_PREFIX", "LOCKED_CACHES", "RedisTier", "check_url", "redact"]

ENTRY_MAGIC = b"FTOPTR1"
KEY_PREFIX = "ftopt:1"
LOCKED_CACHES = frozenset({"analysis", "backtesting"})  # values costing seconds to compute
_TAG = 32
_STATUS_SCAN_LIMIT = 200_000  # keys counted by `status` at most


def redact(url: str) -> str:
    """`url` without its password (user names stay: they say which ACL user is used)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        netloc = f"{user}:***@{netloc.rpartition('@')[2]}"
    query = "&".join(
        ("password=***" if item.lower().startswith("password=") else item)
        for item in parts.query.split("&")
    ) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def check_url(url: str, allow_plaintext: bool) -> str | None:
    """Why `url` is refused (None: accepted). Never resolves a name: only literal loopback
    addresses and ``localhost`` count as local."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        return f"invalid URL: {exc}"
    if parts.scheme == "unix":
        return None if parts.path else "unix:// URL without a socket path"
    if parts.scheme not in ("redis", "rediss"):
        return f"scheme {parts.scheme!r} is not redis://, rediss:// or unix://"
    if not host:
        return "URL without a host"
    if parts.scheme == "redis" and not allow_plaintext and not _is_loopback(host):
        return (f"plain-text redis:// to {host}, which is not a loopback address, is refused "
                f"(cache entries and the password would cross the network unencrypted); use "
                f"rediss:// (TLS) or set {ENV_PREFIX}REDIS_ALLOW_PLAINTEXT=true")
    return None


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Fetched:
    """What a lookup found: the payload (None: a miss) and why not, for the caller's counters."""

    payload: bytes | None = None
    refused: str | None = None  # a corrupt or foreign entry (removed)
    seconds: float = 0.0  # time spent on the network


class RedisTier:
    """One process's connection to the shared tier (all caches); never raises to the caller."""

    def __init__(self, settings: CacheSettings) -> None:
        self.url = settings.redis_url or ""
        self.display_url = redact(self.url)
        self.namespace = settings.redis_namespace
        self.ttl = float(settings.redis_ttl_seconds)
        self.timeout = float(settings.redis_timeout_seconds)
        self.connect_timeout = float(settings.redis_connect_timeout_seconds)
        self.retry_seconds = float(settings.redis_retry_seconds)
        self.max_entry = int(settings.redis_max_entry_mb * 2**20)
        self.lock_seconds = float(settings.redis_lock_seconds)
        self.lock_wait = float(settings.redis_lock_wait_seconds)
        password = settings.redis_password
        self._password = password.get_secret_value() if password is not None else None
        signing = settings.redis_signing_key
        self._signing_key = signing.get_secret_value().encode() if signing is not None else b""
        self.refused: str | None = check_url(self.url, settings.redis_allow_plaintext)
        if not self.refused and importlib.util.find_spec("redis") is None:
            self.refused = ("the redis package is not installed; install it with "
                            "pip install \"freqtrade-opt-plugin[redis]\"")
        self.problem: str | None = None  # the last failure (shown by status)
        self.read_only = False
        self._down_until = 0.0
        self._full_until = 0.0
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._client: Any = None
        self._pid = os.getpid()
        self._held: dict[tuple[str, str], tuple[Any, int]] = {}  # (cache, key) -> (Lock, thread)
        if self.refused:
            self._warn_once("refused", "freqtrade-opt cache: the Redis tier %s is off: %s",
                            self.display_url, self.refused)

    # -- keys and entries -------------------------------------------------------------------
    def entry_key(self, cache: str, key: str) -> str:
        return f"{KEY_PREFIX}:{self.namespace}:{cache}:{key}"

    def lock_key(self, cache: str, key: str) -> str:
        return f"{KEY_PREFIX}:{self.namespace}:lock:{cache}:{key}"

    def _tag(self, rkey: str, payload: bytes | memoryview) -> bytes:
        mac = hmac.new(self._signing_key, rkey.encode() + b"\0", hashlib.sha256)
        mac.update(payload)
        return mac.digest()

    def seal(self, rkey: str, payload: bytes) -> bytes:
        """The Redis value of `payload` stored under `rkey`."""
        return b"".join([ENTRY_MAGIC, self._tag(rkey, payload), payload])

    def unseal(self, rkey: str, data: bytes) -> bytes:
        """The payload of a Redis value, if it was sealed for `rkey` (else `CorruptEntry`)."""
        view = memoryview(data)
        start = len(ENTRY_MAGIC) + _TAG
        if bytes(view[: len(ENTRY_MAGIC)]) != ENTRY_MAGIC or len(view) < start:
            raise CorruptEntry("not a freqtrade-opt entry (foreign data)")
        stored = bytes(view[len(ENTRY_MAGIC):start])
        if not hmac.compare_digest(self._tag(rkey, view[start:]), stored):
            hint = " or a different signing key" if self._signing_key else ""
            raise CorruptEntry(f"tag mismatch (changed, moved to another key{hint})")
        return bytes(view[start:])

    # -- connection and failure policy ----------------------------------------------------------
    @property
    def available(self) -> bool:
        return not self.refused and time.monotonic() >= self._down_until

    def _connection(self) -> Any:
        if self._client is not None and self._pid == os.getpid():
            return self._client
        with self._lock:
            if self._client is None or self._pid != os.getpid():
                import redis
                from redis.backoff import NoBackoff
                from redis.retry import Retry

                kwargs: dict[str, Any] = {}
                if self._password is not None and urlsplit(self.url).password is None:
                    kwargs["password"] = self._password
                self._client = redis.Redis.from_url(
                    self.url, socket_timeout=self.timeout,
                    socket_connect_timeout=self.connect_timeout,
                    retry=Retry(NoBackoff(), 0), health_check_interval=0, **kwargs,
                )
                self._pid = os.getpid()
                self._held.clear()  # locks belong to the process that took them
        return self._client

    def _warn_once(self, kind: str, message: str, *args: Any, level: int = logging.WARNING
                   ) -> None:
        if kind in self._warned:
            logger.debug(message, *args)
            return
        self._warned.add(kind)
        logger.log(level, message, *args)

    def _failed(self, action: str, exc: BaseException) -> None:
        """Skip the tier for `retry_seconds` (one warning per process), or note a write refusal."""
        from redis import exceptions as rex

        reason = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, rex.NoPermissionError):
            self.read_only = True
            self._warn_once("read-only", "freqtrade-opt cache: the Redis user of %s may not "
                            "write (%s, on %s); this process only reads the shared tier",
                            self.display_url, reason, action, level=logging.INFO)
            return
        if isinstance(exc, rex.OutOfMemoryError):
            self._full_until = time.monotonic() + self.retry_seconds
            self.problem = f"full: {reason}"
            self._warn_once("full", "freqtrade-opt cache: Redis at %s is full (%s); stores are "
                            "skipped, reads go on. Set maxmemory-policy allkeys-lru on the "
                            "server", self.display_url, reason)
            return
        self._down_until = time.monotonic() + self.retry_seconds
        self.problem = f"cannot {action}: {reason}"
        self._warn_once("down", "freqtrade-opt cache: the Redis tier at %s is unavailable "
                        "(cannot %s: %s); runs go on with the local cache, results are "
                        "unaffected (next attempt in %g s)", self.display_url, action, reason,
                        self.retry_seconds)

    # -- the API used by SpecializedCache ------------------------------------------------------
    def fetch(self, cache: str, key: str) -> Fetched:
        """Look `key` up; a corrupt or foreign entry is removed and reported as refused."""
        found = Fetched()
        if self._held:
            self._release_finished(cache, key)
        if not self.available:
            return found
        rkey = self.entry_key(cache, key)
        start = 0.0
        try:
            client = self._connection()  # (imports redis-py once: not network time)
            start = time.perf_counter()
            data = client.get(rkey)
        except Exception as exc:  # noqa: BLE001 - any failure: the local tier goes on
            self._failed("read", exc)
            return found
        finally:
            found.seconds = time.perf_counter() - start if start else 0.0
        if data is not None:
            self._take(rkey, data, found)
        return found

    def _take(self, rkey: str, data: bytes, found: Fetched) -> None:
        try:
            found.payload = self.unseal(rkey, data)
        except CorruptEntry as exc:
            found.refused = f"{rkey}: {exc}"
            self.remove(rkey)

    def remove(self, rkey: str) -> None:
        if self.read_only or not self.available:
            return
        try:
            self._connection().delete(rkey)
        except Exception as exc:  # noqa: BLE001
            self._failed("remove a refused entry", exc)

    def store(self, cache: str, key: str, payload: bytes) -> str | None:
        """Store `payload` (never overwriting); None when stored, else why not."""
        if not self.available or self.read_only:
            return "read-only" if self.read_only else "unavailable"
        if time.monotonic() < self._full_until:
            return "full"
        if len(payload) > self.max_entry:
            return "too large"
        rkey = self.entry_key(cache, key)
        try:
            self._connection().set(rkey, self.seal(rkey, payload), nx=True,
                                   px=int(self.ttl * 1000) if self.ttl > 0 else None)
        except Exception as exc:  # noqa: BLE001
            self._failed("write", exc)
            return "failed"
        return None

    def claim(self, cache: str, key: str) -> Fetched:
        """After a miss of a `LOCKED_CACHES` entry: take the lock and return (this process
        computes), or wait a bounded time for the machine holding it and return what it stored."""
        found = Fetched()
        if cache not in LOCKED_CACHES or self.lock_wait <= 0 or not self.available:
            return found
        lkey = self.lock_key(cache, key)
        start = time.perf_counter()
        try:
            client = self._connection()
            start = time.perf_counter()
            if not self.read_only:
                lock = client.lock(lkey, timeout=self.lock_seconds, blocking=False)
                if lock.acquire():
                    self._held[(cache, key)] = (lock, threading.get_ident())
                else:
                    found = self._wait(client, cache, key, lkey)
            elif client.exists(lkey):
                found = self._wait(client, cache, key, lkey)
        except Exception as exc:  # noqa: BLE001
            self._failed("lock", exc)
        found.seconds = time.perf_counter() - start
        return found

    def _wait(self, client: Any, cache: str, key: str, lkey: str) -> Fetched:
        found = Fetched()
        rkey = self.entry_key(cache, key)
        deadline = time.monotonic() + self.lock_wait
        pause = 0.02
        while time.monotonic() < deadline:
            pipe = client.pipeline(transaction=False)
            pipe.get(rkey)
            pipe.exists(lkey)
            data, locked = pipe.execute()
            if data is not None:
                self._take(rkey, data, found)
                return found
            if not locked:  # the holder gave up (value not storable) or expired
                return found
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            pause = min(pause * 1.5, 0.5)
        logger.debug("cache '%s': waited %g s for another process computing %s; computing it "
                     "here", cache, self.lock_wait, key)
        return found

    def _release_finished(self, cache: str, key: str) -> None:
        """A thread looking up another key of `cache` is done computing the ones it locked
        (stored or not): release them, so that nobody waits for a value that never comes."""
        thread = threading.get_ident()
        for item, (_, owner) in list(self._held.items()):
            if item[0] == cache and item[1] != key and owner == thread:
                self.release(cache, item[1])

    def release(self, cache: str, key: str | None = None) -> None:
        """Release the lock of `key` (all of `cache`'s locks when None) held by this process."""
        if self._pid != os.getpid() or not self._held:
            return
        held = [k for k in list(self._held) if k[0] == cache and (key is None or k[1] == key)]
        for item in held:
            entry = self._held.pop(item, None)
            if entry is None:
                continue
            lock = entry[0]
            try:
                lock.release()
            except Exception as exc:  # noqa: BLE001 - expired, or the server went away
                logger.debug("cache '%s': lock not released: %s", cache, exc)

    def close(self) -> None:
        for cache in {c for c, _ in list(self._held)}:
            self.release(cache)
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass

    # -- status ------------------------------------------------------------------------------
    def server_status(self) -> dict[str, Any]:
        """The server's side: reachability, round trip, memory and policy (what ACL allows)."""
        info: dict[str, Any] = {
            "url": self.display_url, "namespace": self.namespace, "state": "ok",
            "read_only": self.read_only, "ping_ms": None, "used_memory_mb": None,
            "maxmemory_mb": None, "maxmemory_policy": None, "problem": self.refused or self.problem,
        }
        if self.refused:
            info["state"] = "refused"
            return info
        try:
            client = self._connection()
            start = time.perf_counter()
            client.ping()
            info["ping_ms"] = round((time.perf_counter() - start) * 1000, 3)
        except Exception as exc:  # noqa: BLE001
            info["state"], info["problem"] = "unavailable", f"{type(exc).__name__}: {exc}"
            return info
        try:
            memory = client.info("memory")
            info["used_memory_mb"] = round(memory["used_memory"] / 2**20, 3)
            info["maxmemory_mb"] = round(memory.get("maxmemory", 0) / 2**20, 3)
            info["maxmemory_policy"] = memory.get("maxmemory_policy")
        except Exception as exc:  # noqa: BLE001 - e.g. INFO denied by the ACL
            logger.debug("Redis INFO unavailable: %s", exc)
        return info

    def cache_status(self, cache: str) -> dict[str, Any]:
        """Entries and bytes of `cache` in this namespace (a SCAN: at most a few hundred
        thousand keys are counted; ``partial`` says so)."""
        figures: dict[str, Any] = {"entries": None, "size_mb": None, "partial": False}
        if self.refused or not self.available:
            return figures
        try:
            client = self._connection()
            entries = volume = 0
            batch: list[bytes] = []
            for rkey in client.scan_iter(match=self.entry_key(cache, "*"), count=1000):
                batch.append(rkey)
                if len(batch) == 1000:
                    volume += self._lengths(client, batch)
                    entries += len(batch)
                    batch = []
                if entries >= _STATUS_SCAN_LIMIT:
                    figures["partial"] = True
                    break
            volume += self._lengths(client, batch)
            entries += len(batch)
        except Exception as exc:  # noqa: BLE001
            logger.debug("Redis status of '%s' unavailable: %s", cache, exc)
            return figures
        figures.update(entries=entries, size_mb=round(volume / 2**20, 3))
        return figures

    @staticmethod
    def _lengths(client: Any, keys: list[bytes]) -> int:
        if not keys:
            return 0
        pipe = client.pipeline(transaction=False)
        for rkey in keys:
            pipe.strlen(rkey)
        return sum(int(n or 0) for n in pipe.execute())
