"""The metrics directory's life: a launcher empties it before it starts the gateway's processes.

Samples of processes from an earlier run would otherwise be summed with the new ones (their
in-flight gauges, and counters that went back to zero for everyone else).
"""

from __future__ import annotations

from pathlib import Path


def reset_metrics_dir(path: Path) -> None:
    """Create ``path`` (owner only) and delete the sample files left in it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for leftover in path.glob("*.db"):
        leftover.unlink(missing_ok=True)


def main() -> None:
    """``python -m gateway.metrics_dir``: empty the configured GATEWAY_METRICS_DIR."""
    from gateway.startup import load_settings

    load_settings()
    from django.conf import settings

    reset_metrics_dir(settings.GATEWAY_METRICS_DIR)


if __name__ == "__main__":
    main()
