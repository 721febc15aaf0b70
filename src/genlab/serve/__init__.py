"""`genlab serve`: trained runs behind an authenticated, rate-limited HTTP API."""

from __future__ import annotations

import time


def wait_until_ready(base_url: str, seconds: float = 30.0) -> bool:
    """Poll GET /readyz of a starting server until it answers 200 (True) or `seconds` pass (False): for
    scripts that start `genlab serve` in the background."""
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False
