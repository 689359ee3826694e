"""Counters per caller and time window, shared by the API throttles and the web form's limit."""


def count_in_windows(cache, windows: list[tuple[str, int]], now: float) -> list[int]:
    """Count this request in each (key, seconds) window and return each window's count.

    Atomic increments, where DRF's own throttles keep every request's timestamp in one cached
    list that concurrent processes read, unpickle and overwrite. On Redis (config.cache.RedisCache)
    every window is counted in one round trip; any other cache takes two operations a window.
    """
    counters = [(f"{key}:{int(now // seconds)}", seconds + 1) for key, seconds in windows]
    if hasattr(cache, "count_in_windows"):
        return cache.count_in_windows(counters)
    return [_count(cache, key, timeout) for key, timeout in counters]


def count_in_window(cache, key: str, seconds: int, now: float) -> int:
    return count_in_windows(cache, [(key, seconds)], now)[0]


def _count(cache, key: str, timeout: int) -> int:
    cache.add(key, 0, timeout)
    try:
        return cache.incr(key)
    except ValueError:  # the window's counter expired between add and incr
        cache.set(key, 1, timeout)
        return 1


def client_address(request, trusted_proxies: int) -> str:
    """The caller's address: REMOTE_ADDR, or behind `trusted_proxies` reverse proxies the address
    the outermost of them saw, counted from the right of X-Forwarded-For (anything further left
    was written by the client and proves nothing)."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if trusted_proxies <= 0 or not forwarded:
        return request.META.get("REMOTE_ADDR", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    return hops[-min(trusted_proxies, len(hops))] if hops else request.META.get("REMOTE_ADDR", "")


def window_wait(cache, key: str, limit: int, seconds: int, now: float) -> int | None:
    """Count a request in its window: None if it is within `limit`, else the whole seconds until
    the window ends (for Retry-After)."""
    if count_in_window(cache, key, seconds, now) <= limit:
        return None
    return max(1, int(seconds - now % seconds))
