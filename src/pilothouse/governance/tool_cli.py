"""``pilothouse tools | approvals | audit``: the tool gateway's pins, approvals and audit log,
straight on the governance store.

The same store options as ``pilothouse orgs`` (``--store``, ``--state-dir``, ``-f``) and the
same failures: one line on stderr, exit 2 for bad input, 1 for the rest. ``audit verify``
exits 1 when the chain is broken and names the first bad row.

Everything printed that an upstream server or an agent wrote (tool definitions, reasons,
audit details) has its invisible characters escaped (``\\u200b``), so what a reviewer reads
is what the model would read, and rich's markup in such text is printed, not obeyed.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import get_args

import click

from pilothouse.governance.cli_options import (
    emit_json,
    json_option,
    print_table,
    session,
    store_options,
    when_text,
)
from pilothouse.governance.tool_store import ApprovalStatus, PinChange, ToolStore, reveal


def _shown(text: str | None) -> str:
    """Untrusted text for a rich table: invisible characters escaped, markup inert."""
    from rich.markup import escape

    return "-" if text is None else escape(reveal(text))


# -- tools ----------------------------------------------------------------------------------


@click.group()
def tools() -> None:
    """Pinned tool definitions: review what upstream MCP servers changed, approve it.

    A gateway records each server's listing; a tool whose name, description or schemas
    differ from what was approved is quarantined (not listed, calls denied) until approved.
    """


@tools.command("review")
@click.option("--server", help="Only this server's changes.")
@json_option
@store_options
def tools_review(
    server: str | None,
    as_json: bool,
    store_url: str | None,
    state_dir: Path | None,
    fleet_file: Path | None,
) -> None:
    """Show new, changed and removed tools with a diff of each definition.

    Invisible characters in a definition are shown escaped (\\u200b), so hidden
    instructions are visible.
    """
    with session(store_url, state_dir, fleet_file) as store:
        changes = ToolStore(store).review(server)
    if as_json:
        emit_json([dataclasses.asdict(c) for c in changes])
        return
    if not changes:
        click.echo("no changes: every observed tool matches its pin")
        return
    for change in changes:
        click.echo(_change_text(change))
    click.echo(
        f"{len(changes)} change(s); approve with: pilothouse tools approve SERVER --by NAME",
        err=True,
    )


def _change_text(change: PinChange) -> str:
    header = f"== {reveal(change.server)}/{reveal(change.tool)}: {change.kind}"
    return f"{header}\n{change.diff}"


@tools.command("approve")
@click.argument("server")
@click.option(
    "--tool",
    "tool_names",
    multiple=True,
    help="Approve only this tool (repeatable; default: the server's whole listing).",
)
@click.option("--by", required=True, help="Who approves (recorded with the pins).")
@store_options
def tools_approve(
    server: str,
    tool_names: tuple[str, ...],
    by: str,
    store_url: str | None,
    state_dir: Path | None,
    fleet_file: Path | None,
) -> None:
    """Pin the definitions SERVER was last seen to offer (review them first)."""
    with session(store_url, state_dir, fleet_file) as store:
        pins = ToolStore(store).approve(server, by, list(tool_names) or None)
    for pin in pins:
        click.echo(f"pinned {reveal(pin.server)}/{reveal(pin.tool)} {pin.digest[:12]}")
    if not pins:
        click.echo(f"no tools of {server} are pinned now")


@tools.command("list")
@json_option
@store_options
def tools_list(
    as_json: bool, store_url: str | None, state_dir: Path | None, fleet_file: Path | None
) -> None:
    """List the approved (pinned) tools."""
    with session(store_url, state_dir, fleet_file) as store:
        pins = sorted(ToolStore(store).pins().values(), key=lambda p: (p.server, p.tool))
    if as_json:
        emit_json([dataclasses.asdict(p) for p in pins])
        return
    rows = [
        (
            _shown(p.server),
            _shown(p.tool),
            p.digest[:12],
            _shown(p.approved_by),
            when_text(p.approved_at),
        )
        for p in pins
    ]
    print_table("pinned tools", ("server", "tool", "digest", "approved by", "approved"), rows)


# -- approvals ------------------------------------------------------------------------------


@click.group()
def approvals() -> None:
    """Tool calls waiting for a person: each approval is for one exact call (session,
    tool and arguments), used once, and expires."""


@approvals.command("list")
@click.option(
    "--status",
    type=click.Choice(get_args(ApprovalStatus)),
    help="Only approvals in this state (default: all).",
)
@json_option
@store_options
def approvals_list(
    status: ApprovalStatus | None,
    as_json: bool,
    store_url: str | None,
    state_dir: Path | None,
    fleet_file: Path | None,
) -> None:
    """List approvals, oldest first (open ones past their expiry show as expired)."""
    with session(store_url, state_dir, fleet_file) as store:
        found = ToolStore(store).list_approvals(status, now=time.time())
    if as_json:
        emit_json([dataclasses.asdict(a) for a in found])
        return
    rows = [
        (
            a.id,
            a.status,
            _shown(a.tool),
            _shown(a.principal),
            _shown(a.session),
            _shown(a.reason),
            a.args_hash[:12],
            when_text(a.created_at),
            when_text(a.expires_at),
            _shown(a.decided_by),
        )
        for a in found
    ]
    columns = (
        "id",
        "status",
        "tool",
        "principal",
        "session",
        "reason",
        "args",
        "created",
        "expires",
        "decided by",
    )
    print_table("approvals", columns, rows)


def _decide(
    approval_id: str, approve: bool, by: str, where: tuple[str | None, Path | None, Path | None]
) -> None:
    with session(*where) as store:
        decided = ToolStore(store).decide(approval_id, approve, by, time.time())
    click.echo(
        f"{decided.status} {decided.id}: {reveal(decided.tool)} (session {reveal(decided.session)})"
    )


@approvals.command("approve")
@click.argument("approval_id", metavar="ID")
@click.option("--by", required=True, help="Who approves (recorded with the decision).")
@store_options
def approvals_approve(
    approval_id: str,
    by: str,
    store_url: str | None,
    state_dir: Path | None,
    fleet_file: Path | None,
) -> None:
    """Approve the pending call ID: it may run once, with exactly its arguments."""
    _decide(approval_id, True, by, (store_url, state_dir, fleet_file))


@approvals.command("deny")
@click.argument("approval_id", metavar="ID")
@click.option("--by", required=True, help="Who denies (recorded with the decision).")
@store_options
def approvals_deny(
    approval_id: str,
    by: str,
    store_url: str | None,
    state_dir: Path | None,
    fleet_file: Path | None,
) -> None:
    """Deny the pending call ID."""
    _decide(approval_id, False, by, (store_url, state_dir, fleet_file))


# -- audit ----------------------------------------------------------------------------------


@click.group()
def audit() -> None:
    """The tool gateway's append-only, hash-chained audit log."""


@audit.command("list")
@click.option(
    "--since-seq", type=click.IntRange(min=0), default=0, help="Only rows after this seq."
)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many rows.")
@json_option
@store_options
def audit_list(
    since_seq: int,
    limit: int | None,
    as_json: bool,
    store_url: str | None,
    state_dir: Path | None,
    fleet_file: Path | None,
) -> None:
    """List audit rows in order (seq, time, what was decided and by which rule)."""
    with session(store_url, state_dir, fleet_file) as store:
        found = ToolStore(store).records(since_seq, limit)
    if as_json:
        emit_json([dataclasses.asdict(r) for r in found])
        return
    rows = [
        (
            str(r.seq),
            when_text(r.at),
            _shown(r.kind),
            _shown(r.principal),
            _shown(r.session),
            _shown(r.tool),
            _shown(r.decision),
            _shown(r.rule),
        )
        for r in found
    ]
    columns = ("seq", "at", "kind", "principal", "session", "tool", "decision", "rule")
    print_table("audit", columns, rows)


@audit.command("verify")
@store_options
def audit_verify(store_url: str | None, state_dir: Path | None, fleet_file: Path | None) -> None:
    """Recompute the hash chain; exit 1 naming the first edited, missing or moved row."""
    with session(store_url, state_dir, fleet_file) as store:
        verdict = ToolStore(store).verify()
    if not verdict.ok:
        click.echo(
            f"error: the audit log was tampered with at row {verdict.first_bad_seq}: "
            f"{verdict.problem} ({verdict.checked} rows before it are intact)",
            err=True,
        )
        raise SystemExit(1)
    click.echo(f"audit log intact: {verdict.checked} rows verified")
