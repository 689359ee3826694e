"""One counter per caller and time window, shared by the API throttles and the web form's limit."""


def count_in_window(cache, key: str, seconds: int, now: float) -> int:
    """Count this request in its window and return the window's count.

    An atomic increment, where DRF's own throttles keep every request's timestamp in one
    cached list that concurrent processes read, unpickle and overwrite. On Redis
    (config.cache.RedisCache) it is one round trip; any other cache takes two operations.
    """
    window_key = f"{key}:{int(now // seconds)}"
    if hasattr(cache, "count_in_window"):
        return cache.count_in_window(window_key, seconds + 1)
    cache.add(window_key, 0, seconds + 1)
    try:
        return cache.incr(window_key)
    except ValueError:  # the window's counter expired between add and incr
        cache.set(window_key, 1, seconds + 1)
        return 1
