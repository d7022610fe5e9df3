"""What ``freqtrade-opt cache status`` shows: per-cache figures of both tiers, an aggregate, and
recommendations naming the setting to change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from freqtrade_opt_plugin.cache.redis_tier import RedisTier
from freqtrade_opt_plugin.cache.settings import ENV_PREFIX


if TYPE_CHECKING:
    from freqtrade_opt_plugin.cache.caches import SpecializedCache


REFUSALS_SHOWN = 5  # reasons not to store listed per cache


def cache_figures(cache: SpecializedCache) -> dict[str, Any]:
    """Figures of one cache (every process's counts): entries, size, hits by tier, misses,
    evictions..., and the shared tier's (None when this cache does not use it)."""
    entries, volume = cache.size()
    counts = cache.counters()
    lookups = counts["hits"] + counts["misses"]
    return {
        "name": cache.name,
        "directory": str(cache.directory),
        "enabled": cache.enabled,
        "bypassed": cache.bypassed,
        "entries": entries,
        "size_mb": round(volume / 2**20, 3),
        "limit_mb": round(cache.size_limit / 2**20, 3),
        "ttl_seconds": cache.ttl,
        "hits": counts["hits"],
        "misses": counts["misses"],
        "hit_rate": round(counts["hits"] / lookups, 4) if lookups else None,
        "stores": counts["stores"],
        "evictions": counts["evictions"],
        "expired": counts["expired"],
        "not_cacheable": counts["not_cacheable"],
        "errors": counts["errors"],
        "local_hits": counts["hits"] - counts["redis_hits"],
        "redis": _shared_figures(cache, counts),
        "refusals": [{"reason": reason, "count": count}
                     for reason, count in cache.refusals()[:REFUSALS_SHOWN]],
    }


def _shared_figures(cache: SpecializedCache, counts: Mapping[str, int]) -> dict[str, Any] | None:
    if cache.shared is None:
        return None
    lookups = counts["redis_lookups"]
    return {
        **cache.shared.cache_status(cache.name),
        "hits": counts["redis_hits"],
        "misses": counts["redis_misses"],
        "stores": counts["redis_stores"],
        "refused": counts["redis_refused"],
        "skipped": counts["redis_skipped"],
        "mean_latency_ms": round(counts["redis_us"] / lookups / 1000, 3) if lookups else None,
    }


def cache_status(caches: Mapping[str, Mapping[str, Any]], tier: RedisTier | None
                 ) -> dict[str, Any]:
    """``{"caches": {name: {entries, size_mb, limit_mb, ttl_seconds, hits, local_hits, misses,
    hit_rate, stores, evictions, expired, not_cacheable, errors, bypassed, directory, enabled,
    redis: {entries, size_mb, hits, misses, stores, refused, skipped, mean_latency_ms} | None}},
    "redis": {url, namespace, state, read_only, ping_ms, used_memory_mb, maxmemory_mb,
    maxmemory_policy, problem} | None, "aggregate": {total_memory_mb, average_hit_rate, entries,
    hits, misses}, "recommendations": [{cache, setting, suggested?, message}]}``
    """
    rates = [s["hit_rate"] for s in caches.values() if s["hit_rate"] is not None]
    aggregate = {
        "total_memory_mb": round(sum(s["size_mb"] for s in caches.values()), 3),
        "average_hit_rate": round(sum(rates) / len(rates), 4) if rates else None,
        "entries": sum(s["entries"] for s in caches.values()),
        "hits": sum(s["hits"] for s in caches.values()),
        "misses": sum(s["misses"] for s in caches.values()),
    }
    server = tier.server_status() if tier is not None else None
    recommendations = _recommendations(caches) + _server_recommendations(server)
    return {"caches": dict(caches), "redis": server, "aggregate": aggregate,
            "recommendations": recommendations}


def _server_recommendations(server: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    if server is None or server["state"] != "ok" or server["maxmemory_mb"] is None:
        return []
    if not server["maxmemory_mb"] or server["maxmemory_policy"] != "allkeys-lru":
        return [{
            "cache": "redis", "setting": None,
            "message": f"bound the shared tier on the Redis server: maxmemory is "
                       f"{server['maxmemory_mb']:g} MB (0: unbounded) with policy "
                       f"{server['maxmemory_policy']}; set 'maxmemory <size>' and "
                       "'maxmemory-policy allkeys-lru'",
        }]
    return []


def _recommendations(caches: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for name, s in caches.items():
        upper = name.upper()
        if s["bypassed"]:
            found.append({
                "cache": name, "setting": f"{ENV_PREFIX}DIR",
                "message": f"'{name}' is bypassed ({s['bypassed']}); fix the directory "
                           f"{s['directory']} or run 'freqtrade-opt cache clear {name}'",
            })
            continue
        stores, evictions = s["stores"], s["evictions"]
        near_full = s["limit_mb"] and s["size_mb"] >= 0.9 * s["limit_mb"]
        if (evictions and stores >= 5 and evictions >= 0.1 * stores) or near_full:
            suggested = _round_up(s["limit_mb"] * 2)
            why = (f"{evictions} evictions for {stores} stores" if evictions
                   else f"{s['size_mb']:.0f} of {s['limit_mb']:.0f} MB used")
            found.append({
                "cache": name, "setting": f"{ENV_PREFIX}{upper}_SIZE_MB", "suggested": suggested,
                "message": f"raise the '{name}' size limit to {suggested} MB ({why})",
            })
        if stores >= 10 and s["hits"] < 0.25 * stores:
            suggested = max(60, int(s["ttl_seconds"] // 2))
            found.append({
                "cache": name, "setting": f"{ENV_PREFIX}{upper}_TTL_SECONDS",
                "suggested": suggested,
                "message": f"most '{name}' entries are never read again ({s['hits']} hits for "
                           f"{stores} stores): lower its TTL to {suggested} s to free space "
                           "sooner",
            })
        if s["not_cacheable"] >= 10 and s["not_cacheable"] > stores:
            found.append({
                "cache": name, "setting": None,
                "message": f"{s['not_cacheable']} '{name}' results could not be stored exactly "
                           "(unsupported types or too large); see debug logs",
            })
    return found


def _round_up(value: float) -> int:
    return int(-(-value // 64) * 64)
