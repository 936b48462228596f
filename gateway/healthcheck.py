"""``python -m gateway.healthcheck URL [URL ...]``: a container's health check of its own web
process.

The check asks for each URL (/health, and /ready in docker-compose.yml) on the loopback
interface, but under a host name the gateway answers to: a deployment's ALLOWED_HOSTS names its
public hosts only, and any other Host is a 400. Exit status 0 when every answer is 200.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from gateway.env import env_list


def host_to_ask_for(allowed_hosts: list[str]) -> str:
    for pattern in allowed_hosts:
        if pattern == "*":
            break
        return pattern.lstrip(".")  # ".example.com" also matches example.com itself
    return "localhost"


def main(*urls: str) -> int:
    host = host_to_ask_for(env_list("ALLOWED_HOSTS"))
    return max((_ask(url, host) for url in urls), default=1)


def _ask(url: str, host: str) -> int:
    request = urllib.request.Request(url, headers={"Host": host})  # noqa: S310  (our own URL)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        sys.stderr.write(f"{url} (Host: {host}): {exc}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
