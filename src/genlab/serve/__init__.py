"""`genlab serve`: trained runs behind an authenticated, rate-limited HTTP API."""
