"""The drill's table, for the terminal and for ``RELIABILITY.md``; raw JSON beside it in
``drill/results.json``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drill.observe import DRILL_SETTINGS
from harness import runs

REPO = Path(__file__).resolve().parent.parent
REPORT = REPO / "RELIABILITY.md"
RAW = Path(__file__).resolve().parent / "results.json"

COLUMNS = (
    "#",
    "scenario",
    "submitted",
    "accepted (202)",
    "completed",
    "failed (by code)",
    "lost",
    "duplicated",
    "charged twice",
    "unanswered",
    "refused (by status)",
    "own condition",
    "result",
)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{what}: {n:,}" for what, n in counts.items()) or "0"


def _charged(data: dict[str, Any]) -> str:
    """Charges beyond one per charged job; and completed jobs never charged, if any."""
    uncharged = data.get("completed_uncharged", 0)
    twice = str(data.get("charged_twice", "-"))
    return f"{twice} ({uncharged:,} completed uncharged)" if uncharged else twice


def row(number: str, title: str, data: dict[str, Any] | None) -> list[str]:
    """One table row; a scenario that was not run or raised says so."""
    if data is None:
        return [number, title, *["-"] * 10, "not run"]
    if "error" in data:
        return [number, title, *["-"] * 9, f"error: {data['error']}", "FAILED"]
    return [
        number,
        title,
        f"{data['submitted']:,}",
        f"{data['accepted']:,}",
        f"{data['completed']:,}",
        _counts(data["failed"]),
        str(data["lost"]),
        str(data["duplicated"]),
        _charged(data),
        f"{data['unanswered']:,}",
        _counts(data["refused"]),
        f"{data['extra_condition']}: {'yes' if data['extra_ok'] else 'NO'}",
        "passed" if data["passed"] else "FAILED",
    ]


def table(results: dict[str, Any], titles: dict[str, str]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for number, title in titles.items():
        cells = row(number, title, results["scenarios"].get(number))
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    return "\n".join(lines)


def _load(averages: Any) -> str:
    return "/".join(f"{value:.2f}" for value in averages) if averages else "?"


def _last_refusal(s3: dict[str, Any]) -> str:
    after = s3["last_refusal_after_restart_s"]
    if after <= 0:
        return "no submit was refused once it was back"
    return f"the last refusal came {after} s after it was back"


def _worker_without_broker(s7: dict[str, Any]) -> str:
    said = s7["worker_log_while_down"]
    claims = "; ".join(
        f"{engine or '(none)'}: " + ", ".join(f"{n:,} claimed {a}x" for a, n in by.items())
        for engine, by in s7["claims"].items()
    )
    done, ready = s7["completed_after_worker_start_s"], s7["ready_after_redis_s"]
    failed = [name.replace("_", " ") for name, ok in s7["checks"].items() if not ok]
    return (
        "- 7: both workers stopped on SIGTERM (exit codes "
        f"{'/'.join(str(code) for code in s7['worker_exit_codes'].values())}); with Redis down the "
        f"web log has {s7['web_bells_not_rung_lines']:,} 'broker unavailable' lines; "
        f"{s7['pending_after_wait']:,} jobs still pending before a worker started; "
        + (
            f"it completed them {done} s after its start"
            if done is not None
            else "it had not completed them by the deadline"
        )
        + f" (claims by engine: {claims}; {s7['upstream_calls']:,} upstream calls); its log while "
        f"Redis was down: {said['engines_started']} engine started, "
        f"{said['broker_refused_lines']} 'Cannot connect' lines, {said['ready_lines']} 'ready.' "
        "lines; "
        + (
            f"'ready.' came {ready} s after Redis was back."
            if ready is not None
            else "no 'ready.' by the deadline after Redis was back."
        )
        + (f" Failed checks: {', '.join(failed)}." if failed else "")
    )


def _webhooks_through_worker_kill(s8: dict[str, Any]) -> str:
    hooks = s8["webhooks"]
    failed = [name.replace("_", " ") for name, ok in s8["checks"].items() if not ok]
    return (
        f"- 8: at the kill the receiver held {s8['held_at_kill']} notices unanswered (delivery "
        f"rows by status: {_counts(s8['deliveries_at_kill'])}); {hooks['jobs_notified']:,} of "
        f"{s8['accepted']:,} jobs' notices arrived with a valid signature, "
        f"{hooks['unnotified']} never did; {hooks['received']:,} POSTs in all, "
        f"{hooks['duplicates']:,} duplicates ({hooks['jobs_notified_more_than_once']:,} jobs "
        f"notified more than once), {hooks['invalid_signatures']} invalid signatures; "
        f"{s8['held_arrived_again']} of the {s8['held_at_kill']} held notices arrived again; "
        f"{s8['all_delivered_after_kill_s']} s after the kill the rows were "
        f"{_counts(s8['deliveries_at_end'])} (by attempts: {_counts(s8['delivery_attempts'])})."
        + (f" Failed checks: {', '.join(failed)}." if failed else "")
    )


def _details(results: dict[str, Any]) -> list[str]:
    """The figures behind each row that the table has no column for."""
    scenarios = results["scenarios"]
    lines: list[str] = []
    if (s1 := scenarios.get("1")) and "at_kill" in s1:
        lines.append(
            f"- 1: at the kill the worker held {s1['at_kill']['processing']} jobs "
            f"({s1['at_kill']['upstream_in_flight']} calls in flight at the upstream); all "
            f"were completed again, the last {s1['at_kill']['last_completed_after_s']} s after "
            "the kill; "
            + ", ".join(f"{n} jobs claimed {a}x" for a, n in s1["attempts"].items())
            + "."
        )
    if (s2 := scenarios.get("2")) and "outage_seconds" in s2:
        lines.append(
            f"- 2: Redis was down {s2['outage_seconds']} s; {s2['completed_during_outage']:,} "
            "jobs completed during the outage (engines claim from the table without bells)."
        )
        for name, line in s2.get("dead_workers_last_critical_line", {}).items():
            lines.append(f"  - {name} died during the outage; its log: `{line}`")
    if (s3 := scenarios.get("3")) and "down_seconds" in s3:
        lines.append(
            f"- 3: Postgres was down {s3['down_seconds']} s; {_last_refusal(s3)}; "
            f"refused submits not in the error shape: {s3['refused_not_in_error_shape']}, "
            f"that created a job: {s3['created_without_202']['after_refusal']}; polls of one "
            f"job meanwhile, by status: {_counts(s3['polls_of_one_job'])}."
        )
    if (s4 := scenarios.get("4")) and "restart_seconds" in s4:
        lines.append(
            f"- 4: the web server took {s4['restart_seconds']} s from SIGTERM to answering "
            f"again; unanswered submits that still created a job: "
            f"{s4['created_without_202']['after_no_answer']} (not finished: "
            f"{s4['created_without_202']['unfinished']})."
        )
    if (s5 := scenarios.get("5")) and "faults" in s5:
        lines.append("- 5: what each misbehaving upstream's jobs ended with:")
        for name, fault in s5["faults"].items():
            lines.append(
                f"  - `{name}`: {'/'.join(fault['statuses'])}, status "
                f"{'/'.join(map(str, fault['status_codes']))}, "
                f"`{'/'.join(fault['error_codes'])}`: {fault['message']}"
            )
    if (s6 := scenarios.get("6")) and "memory" in s6:
        memory = s6["memory"]
        lines.append(
            f"- 6: maximum {s6['max_submit_rate']:.0f} submits/s, soak at {s6['soak_rate']:.0f}/s "
            f"for {s6['soak_seconds']:g} s; RSS after the {s6['warmup_seconds']:g} s warm-up -> "
            f"end: web {memory['web']['after_warmup_mib']} -> {memory['web']['end_mib']} MiB "
            f"({memory['web']['growth']:+.1%}), workers {memory['workers']['after_warmup_mib']} "
            f"-> {memory['workers']['end_mib']} MiB ({memory['workers']['growth']:+.1%})."
        )
    if (s7 := scenarios.get("7")) and "checks" in s7:
        lines.append(_worker_without_broker(s7))
    if (s8 := scenarios.get("8")) and "webhooks" in s8:
        lines.append(_webhooks_through_worker_kill(s8))
    errors = {n: data.get("postgres_errors") for n, data in scenarios.items()}
    lines.append(
        "- ERROR lines in the drill's Postgres log, by scenario: "
        + "; ".join(f"{n}: {_counts(e) if e else 'none'}" for n, e in errors.items())
        + "."
    )
    return lines


def render(results: dict[str, Any], titles: dict[str, str]) -> str:
    info = results["machine"]
    shortened = ", ".join(f"`{k}={v}`" for k, v in DRILL_SETTINGS.items())
    return "\n".join(
        [
            "# Reliability drill",
            "",
            "The promise: once a client got a 202, the job reaches `completed` or `failed`,",
            "whatever crashes in between. Each scenario injects a fault into real processes on",
            "127.0.0.1 (the drill's own Postgres cluster and Redis server, the gateway's granian",
            "web server, two Celery workers and beat) and accounts for every submit. How to run",
            "it: the README's *Reliability drill*.",
            "",
            f"- Date: {results['finished_at']}",
            f"- Machine: {info.get('cpus')} CPUs ({info.get('cpu_model')}), Python "
            f"{info.get('python')}, load average (1, 5, 15 min) at start "
            f"{_load(info.get('load_average_at_start'))}, at the end "
            f"{_load(results.get('load_average_at_end'))}",
            f"- Command: `{results['command']}` ({results['seconds']:.0f} s)",
            f"- Shortened for the drill: {shortened}; beat re-queues lapsed jobs every 15 s.",
            "",
            table(results, titles),
            "",
            "**lost**: accepted, but not `completed`/`failed` at the final poll after the",
            "deadline. **duplicated**: a finished job whose outcome changed after a poll had",
            "shown it, or a second job row from one submit. **charged twice**: charges in the",
            "keys' spend ledger beyond one per job that carries a cost (every completed job must",
            "carry one; the drill's model is priced). **unanswered**: no HTTP answer at",
            "all (not counted as accepted). **refused**: any answer but 202.",
            "",
            *_details(results),
            "",
        ]
    )


def write(results: dict[str, Any], titles: dict[str, str]) -> Path:
    results["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    runs.write(REPORT, render(results, titles), RAW, results)
    return REPORT
