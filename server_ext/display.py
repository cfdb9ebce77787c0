"""Rich (HTML) and plain-text renderings of the core's results, for notebooks and terminals."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from typing import Any

from .records import DatasetEntry, DatasetInfo


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class Link:
    """A link: an anchor in HTML (a browser opens it, relative paths through the hub), the
    address in plain text."""

    def __init__(self, text: str, href: str) -> None:
        self.text, self.href = text, href

    def __str__(self) -> str:
        return self.href

    def html(self) -> str:
        return (
            f"<a href='{html.escape(self.href, quote=True)}' target='_blank' "
            f"rel='noopener'>{html.escape(self.text)}</a>"
        )

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return self.href


def _cell_html(cell: Any) -> str:
    return cell.html() if isinstance(cell, Link) else html.escape(str(cell))


class Table:
    """A table that renders as HTML in Jupyter and as aligned text elsewhere."""

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str = ""):
        self.columns = list(columns)
        self.cells = [["" if c is None else c for c in row] for row in rows]
        self.rows = [[str(c) for c in row] for row in self.cells]
        self.title = title

    def _repr_html_(self) -> str:
        head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>"
            + "".join(f"<td style='text-align:left'>{_cell_html(c)}</td>" for c in row)
            + "</tr>"
            for row in self.cells
        )
        caption = (
            f"<caption style='text-align:left'><b>{html.escape(self.title)}</b></caption>"
            if self.title
            else ""
        )
        return (
            f"<table class='dsdata'>{caption}<thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>"
        )

    def __str__(self) -> str:
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=False)]
        lines = [self.title] if self.title else []
        lines.append("  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True)))
        lines.append("  ".join("-" * w for w in widths))
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in self.rows
        ]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


def stages_text(stages: Mapping[str, str]) -> str:
    """``prod -> v1.0.0, staging -> v1.1.0`` (GTO stages and their versions)."""
    return ", ".join(f"{stage} -> {version}" for stage, version in sorted(stages.items()))


def datasets_table(entries: Sequence[DatasetEntry]) -> Table:
    rows = [
        (e.name, e.latest or "", stages_text(e.stages), ", ".join(e.versions),
         human_bytes(e.size) if not e.error else "?",
         f"unavailable: {e.error}" if e.error else e.description)
        for e in entries
    ]  # fmt: skip
    return Table(
        ["dataset", "latest", "stages", "versions", "size (latest)", "description"],
        rows,
        "Datasets",
    )


def info_table(info: DatasetInfo) -> Table:
    entry = info.entry
    in_stages: dict[str, list[str]] = {}
    for stage, version in entry.stages.items():
        in_stages.setdefault(version, []).append(stage)
    rows = [
        (d.version, ", ".join(sorted(in_stages.get(d.version, []))), human_bytes(d.size),
         d.nfiles, d.rev[:10], d.content_hash, "yes" if d.cached else "no")
        for d in info.versions
    ]  # fmt: skip
    kind = "one file" if entry.kind == "file" else "a directory"
    title = (
        f"{entry.name}: {entry.description} (source: {entry.registry}, path {entry.path}, {kind})"
    )
    return Table(
        ["version", "stages", "size", "files", "git rev", "content hash", "cached"], rows, title
    )


def status_table(rows: list[dict[str, Any]]) -> Table:
    return Table(
        ["path", "dataset", "version", "state", "changed files", "pulled at"],
        [
            (
                r["path"],
                r["dataset"],
                r["version"],
                r["state"],
                ", ".join(r.get("changed", [])[:5])
                + (" …" if len(r.get("changed", [])) > 5 else ""),
                r["time"],
            )
            for r in rows
        ],
        "Pulled datasets",
    )


def runs_table(rows: list[dict[str, Any]]) -> Table:
    return Table(
        ["run", "status", "message", "metrics", "datasets", "git sha", "started", "link"],
        [
            (
                (r["run_id"] or "")[:12],
                r["status"],
                r["message"],
                ", ".join(f"{k}={v:g}" for k, v in sorted(r["metrics"].items())),
                ", ".join(f"{k}@{v.split('@')[0]}" for k, v in sorted(r["datasets"].items())),
                (r["git_sha"] or "")[:10],
                r["time"],
                Link("MLflow", r["url"]) if r.get("url") else "",
            )
            for r in rows
        ],
        "Experiments",
    )


def models_table(rows: list[dict[str, Any]]) -> Table:
    return Table(
        ["model", "latest version", "aliases", "versions", "owner"],
        [
            (
                r["name"],
                r["latest_version"],
                ", ".join(f"{a}->v{v}" for a, v in sorted(r["aliases"].items())),
                ", ".join(str(v) for v in r["versions"]),
                r.get("owner") or "",
            )
            for r in rows
        ],
        "Registered models",
    )


def gates_table(gates: Sequence[Mapping[str, Any]]) -> Table:
    rows = [(g["name"], "passed" if g["passed"] else "FAILED", g["detail"]) for g in gates]
    return Table(["gate", "result", "detail"], rows, "Gates")


def history_table(events: Sequence[Mapping[str, Any]]) -> Table:
    rows = [
        (e["time"], e["event"], e["alias"], e.get("from_version") or "-",
         e.get("to_version") or "-", e["actor"], e.get("note") or "")
        for e in events
    ]  # fmt: skip
    return Table(["time", "event", "alias", "from", "to", "by", "note"], rows, "History")


def connections_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """The connections a user may use (no credential is ever in them)."""
    return Table(
        ["connection", "type", "source", "description"],
        [
            [
                r["name"],
                r["type"],
                f"s3://{r.get('bucket')}/{r.get('prefix', '')}"
                if r["type"] == "s3"
                else f"SQL, at most {r.get('max_rows')} rows",
                r.get("description", ""),
            ]
            for r in rows
        ],
        title="Connections (import with %dsdata import)",
    )


def browse_table(found: Mapping[str, Any]) -> Table:
    """One level of a lake prefix, or a warehouse's tables."""
    if found.get("type") == "sql":
        return Table(["table", "columns"],
                     [[f"{t['schema']}.{t['name']}",
                       ", ".join(f"{c['name']} {c['type']}" for c in t["columns"])]
                      for t in found.get("tables", [])],
                     title=f"{found.get('connection')}: tables")  # fmt: skip
    rows = [[p, "(prefix)", ""] for p in found.get("prefixes", [])]
    rows += [[o["key"], "object", human_bytes(o["size"])] for o in found.get("objects", [])]
    more = " (more: narrow the prefix)" if found.get("truncated") else ""
    return Table(["key", "kind", "size"], rows,
                 title=f"{found.get('connection')}:{found.get('prefix', '')}{more}")  # fmt: skip


def jobs_table(jobs: Sequence[Any]) -> Table:
    """Notebook jobs (:class:`~server_ext.notebook_jobs.JobInfo`), newest first."""
    rows = []
    for j in jobs:
        state = f"{j.state} (#{j.position})" if j.position else j.state
        took = f"{j.duration:.0f} s" if j.duration is not None else ""
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/")
        ran = j.state in ("succeeded", "failed")
        link = Link(j.output, f"{prefix}lab/tree/{j.output}") if ran else j.output
        params = ", ".join(f"{k}={v}" for k, v in j.parameters.items())
        rows.append([j.id, state, j.notebook, params, took, link, j.message])
    return Table(["job", "state", "notebook", "parameters", "took", "output", "message"], rows,
                 title="Notebook jobs (%dsdata logs JOB, %dsdata cancel JOB)")  # fmt: skip
