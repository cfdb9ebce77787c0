"""``%dsdata``: the notebook front of the data core (``%load_ext server_ext``)."""

from __future__ import annotations

import argparse
import re
import shlex
import textwrap
from collections.abc import Callable

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display

from . import dsdata
from .display import (
    Link,
    browse_table,
    connections_table,
    datasets_table,
    gates_table,
    history_table,
    info_table,
    jobs_table,
    models_table,
    runs_table,
    status_table,
)
from .errors import DsdataError
from .lineage import find_project_root
from .notebook import ensure_saved
from .params import parse_pairs
from .progress import PullBar
from .refs import shown


@magic_arguments("dsdata list")
def _list_args(line: str) -> None:
    """%dsdata list: the datasets you may pull, with their versions."""


@magic_arguments("dsdata info")
@argument("name", help="dataset name")
def _info_args(line: str) -> None:
    """%dsdata info NAME: description, versions, sizes, content hashes, source."""


@magic_arguments("dsdata pull")
@argument(
    "dataset", help="NAME or NAME@VERSION (v2 = newest v2.*, prod = the stage; default: latest)"
)
@argument("-o", "--output", default=None, help="target directory (default: data/NAME)")
@argument("--force", action="store_true", help="replace local changes in the target")
@argument("-q", "--quiet", action="store_true", help="no progress bar")
def _pull_args(line: str) -> None:
    """%dsdata pull NAME[@VERSION] [-o PATH] [--force]: fetch a dataset version atomically."""


@magic_arguments("dsdata status")
def _status_args(line: str) -> None:
    """%dsdata status: what was pulled where, and whether it changed since."""


@magic_arguments("dsdata commit")
@argument("-m", "--message", required=True, help="what this experiment changed")
@argument("--param", action="append", default=[], metavar="K=V", help="a parameter (repeat)")
@argument("--metric", action="append", default=[], metavar="K=V", help="a metric (repeat)")
@argument("--params", default=None, metavar="FILE", help="parameters from a JSON/YAML file")
@argument("--metrics", default=None, metavar="FILE", help="metrics from a JSON/YAML file")
@argument("--outputs", nargs="+", default=[], metavar="PATH", help="outputs to track with DVC")
@argument(
    "--model",
    default=None,
    metavar="PATH",
    help="the trained model (MLflow model directory or pickle): logged in this run",
)
def _commit_args(line: str) -> None:
    """%dsdata commit -m MSG [...]: code (git), data (DVC), params, metrics, env -> one run."""


@magic_arguments("dsdata log")
@argument("-n", type=int, default=10, help="how many runs (default 10)")
def _log_args(line: str) -> None:
    """%dsdata log [-n N]: recent experiments of this project."""


@magic_arguments("dsdata reproduce")
@argument("run_id", help="the MLflow run id")
@argument("-o", "--output", default=None, help="directory (default: reproduce/RUN)")
def _reproduce_args(line: str) -> None:
    """%dsdata reproduce RUN_ID [-o DIR]: same code, same data versions, same outputs."""


@magic_arguments("dsdata publish")
@argument("model", help="registered model name")
@argument("--path", default=None, help="an MLflow model directory or a pickled estimator")
@argument("--run", default=None, help="a run whose 'model' artifact to register")
@argument("--alias", default=None, help="alias to point at the new version, e.g. staging")
def _publish_args(line: str) -> None:
    """%dsdata publish MODEL (--path PATH | --run RUN_ID) [--alias ALIAS]: register a model."""


@magic_arguments("dsdata promote")
@argument("model", help="registered model name")
@argument("version", help="the version to promote, e.g. 3")
@argument("--alias", required=True, help="the protected alias, e.g. production")
@argument("--note", default="", help="why: what the approver reads")
def _promote_args(line: str) -> None:
    """%dsdata promote MODEL VERSION --alias ALIAS [--note NOTE]: request a reviewed promotion."""


@magic_arguments("dsdata history")
@argument("model", help="registered model name")
def _history_args(line: str) -> None:
    """%dsdata history MODEL: promotions, approvals, rejections and rollbacks of a model."""


@magic_arguments("dsdata models")
def _models_args(line: str) -> None:
    """%dsdata models: registered models, versions and aliases."""


@magic_arguments("dsdata sync")
def _sync_args(line: str) -> None:
    """%dsdata sync: send runs queued while MLflow was unreachable."""


@magic_arguments("dsdata connections")
def _connections_args(line: str) -> None:
    """%dsdata connections: the data lake and warehouse connections your groups may use."""


@magic_arguments("dsdata browse")
@argument("connection", help="a connection's name (see %%dsdata connections)")
@argument("prefix", nargs="?", default="", help="S3: a key prefix below the connection's")
def _browse_args(line: str) -> None:
    """%dsdata browse CONN [PREFIX]: objects and sizes (S3), or tables and columns (SQL)."""


@magic_arguments("dsdata import")
@argument("source", help="CONN:PATH (a lake prefix or object) or CONN (with --query)")
@argument("--as", dest="as_name", required=True, metavar="NAME", help="the dataset it becomes")
@argument("--query", default=None, help="SQL: the SELECT to import (read-only)")
@argument("-p", "--param", action="append", default=[], metavar="K=V",
          help="SQL: a bind parameter :K of the query (repeat)")  # fmt: skip
def _import_args(line: str) -> None:
    """%dsdata import CONN:PATH --as NAME | CONN --query SQL --as NAME: lake objects or a
    query's rows as a dataset version, with lineage."""


@magic_arguments("dsdata run")
@argument("notebook", help="a notebook in your workspace (path from here)")
@argument("--profile", default=None, help="the profile it runs on (default: this sandbox's)")
@argument("--cpu", type=float, default=None, help="CPUs, inside the profile's range")
@argument("--memory", default=None, help="memory, e.g. 4G, inside the profile's range")
@argument("--gpus", type=int, default=None, help="GPUs, inside the profile's range")
@argument("-p", "--param", action="append", default=[], metavar="K=V",
          help="a parameter injected into the notebook's 'parameters' cell (repeat)")  # fmt: skip
@argument("--wait", action="store_true", help="wait in the queue if it does not fit now")
@argument("--commit", action="store_true",
          help="commit the succeeded job as an experiment run")  # fmt: skip
@argument("--timeout", type=int, default=None, help="seconds it may run")
def _run_args(line: str) -> None:
    """%dsdata run NOTEBOOK [--profile P] [--cpu N] [--memory M] [--gpus G] [-p K=V ...]
    [--wait] [--commit]: run a notebook as a job (papermill), under your quotas."""


@magic_arguments("dsdata jobs")
def _jobs_args(line: str) -> None:
    """%dsdata jobs: your notebook jobs with state, duration and output."""


@magic_arguments("dsdata logs")
@argument("job", help="a job id (or its first characters)")
@argument("-n", "--tail", type=int, default=None, help="only the last N lines")
def _logs_args(line: str) -> None:
    """%dsdata logs JOB [-n N]: a job's log (its cells' output and errors)."""


@magic_arguments("dsdata cancel")
@argument("job", help="a job id (or its first characters)")
def _cancel_args(line: str) -> None:
    """%dsdata cancel JOB: stop a job (its processes) or take it out of the queue."""


SUBCOMMANDS: dict[str, Callable[[str], None]] = {
    "list": _list_args,
    "info": _info_args,
    "pull": _pull_args,
    "status": _status_args,
    "commit": _commit_args,
    "log": _log_args,
    "reproduce": _reproduce_args,
    "publish": _publish_args,
    "promote": _promote_args,
    "history": _history_args,
    "models": _models_args,
    "sync": _sync_args,
    "connections": _connections_args,
    "browse": _browse_args,
    "import": _import_args,
    "run": _run_args,
    "jobs": _jobs_args,
    "logs": _logs_args,
    "cancel": _cancel_args,
}


def _summary(command: str) -> str:
    """The first line of a subcommand's help (its docstring)."""
    parser = SUBCOMMANDS[command].parser  # type: ignore[attr-defined]
    doc = (parser.description or "").strip().splitlines()[0]
    return doc.split(": ", 1)[1] if ": " in doc else doc


def _usage() -> str:
    """``%dsdata`` alone: every subcommand, a line each."""
    width = max(len(c) for c in SUBCOMMANDS)
    lines = [
        "%dsdata SUBCOMMAND ...: datasets, experiments and models, versioned and reproducible.",
        "",
        *(f"  {c.ljust(width)}  {_summary(c)}" for c in SUBCOMMANDS),
        "",
        "%dsdata SUBCOMMAND --help, %dsdata help SUBCOMMAND or %dsdata SUBCOMMAND? for its "
        "options.",
    ]
    return "\n".join(lines)


def subcommand_help(command: str) -> str:
    """A subcommand's options, as ``%dsdata SUB --help`` prints them."""
    parser = SUBCOMMANDS[command].parser  # type: ignore[attr-defined]
    text = str(parser.format_help())
    if text.startswith("::"):  # IPython's reST usage block: shown as plain text here
        usage, _, rest = text[2:].lstrip("\n").partition("\n\n")
        text = "usage: " + textwrap.dedent(usage).strip() + "\n\n" + rest
    return text.rstrip()


def _full_help() -> str:
    """The magic's docstring (``%dsdata?``): the summary, then every subcommand's options."""
    return "\n\n".join([_usage(), *(subcommand_help(c) for c in SUBCOMMANDS)])


HELP_LINE = re.compile(r"^(\s*)%dsdata\s+([a-z]+)\s*\?{1,2}\s*$")


def help_lines(lines: list[str]) -> list[str]:
    """IPython input transformer: ``%dsdata commit?`` -> ``%dsdata help commit`` (IPython's
    own ``?`` would look for an object named ``commit``)."""
    return [HELP_LINE.sub(r"\1%dsdata help \2", line.rstrip("\n")) + "\n"
            if HELP_LINE.match(line.rstrip("\n")) else line for line in lines]  # fmt: skip


def _unknown(command: str) -> str:
    return f"Unknown %dsdata command {shown(command)}; commands: {', '.join(SUBCOMMANDS)}"


@magics_class
class DsdataMagics(Magics):
    """The ``%dsdata`` line magic."""

    @line_magic
    def dsdata(self, line: str) -> None:
        try:
            words = shlex.split(line)
        except ValueError as e:  # an unclosed quote
            print(f"dsdata: {e}")
            return None
        if not words or words[0] in ("-h", "--help"):
            print(_usage())
            return None
        command, rest = words[0], line.strip()[len(words[0]) :]
        if command == "help":
            wanted = words[1] if len(words) > 1 else ""
            if not wanted:
                print(_usage())
            else:
                print(subcommand_help(wanted) if wanted in SUBCOMMANDS else _unknown(wanted))
            return None
        if command not in SUBCOMMANDS:
            print(_unknown(command))
            return None
        if "-h" in words[1:] or "--help" in words[1:]:
            print(subcommand_help(command))  # before the required arguments are checked
            return None
        try:
            # shlex, not IPython's arg_split: that keeps the quotes of -m "my message"
            args = SUBCOMMANDS[command].parser.parse_args(shlex.split(rest))  # type: ignore[attr-defined]
        except (SystemExit, argparse.ArgumentError, UsageError) as e:
            if not isinstance(e, SystemExit):  # argparse printed its own message
                print(f"dsdata {command}: {e}\n(%dsdata {command} --help for its options)")
            return None
        try:
            return getattr(self, f"_{command}")(args)
        except DsdataError as e:
            print(f"dsdata {command}: {e.message}")
            return None

    def _list(self, args: argparse.Namespace) -> None:
        display(datasets_table(dsdata.service().list_datasets()))

    def _info(self, args: argparse.Namespace) -> None:
        display(info_table(dsdata.service().info(args.name)))

    def _pull(self, args: argparse.Namespace) -> None:
        bar = PullBar(disable=args.quiet)
        try:
            result = dsdata.pull(args.dataset, args.output, force=args.force, on_progress=bar)
        finally:
            bar.close()
        how = (
            "from the shared cache"
            if result.from_cache
            else f"downloaded {result.downloaded_objects} objects"
        )
        print(
            f"{result.dataset}@{result.version} -> {result.path} "
            f"({result.files} files, {how}, {result.seconds:.2f}s; rev {result.rev[:10]})"
        )

    def _status(self, args: argparse.Namespace) -> None:
        display(status_table(dsdata.status()))

    def _commit(self, args: argparse.Namespace) -> None:
        saved = ensure_saved(lambda bundle: display(bundle, raw=True), find_project_root())
        if saved:
            print(f"saved {', '.join(path.name for path in saved)}")
        result = dsdata.commit(
            args.message,
            params=parse_pairs(args.param, "param"),
            metrics=parse_pairs(args.metric, "metric"),
            params_file=args.params,
            metrics_file=args.metrics,
            outputs=args.outputs,
            model=args.model,
        )
        where = f"run {result.run_id}" if result.run_id else "run queued"
        print(f"committed {result.git_sha[:10]} ({where}) in {result.experiment}")
        if result.url:  # a link a browser can open (through the hub in a sandbox)
            display(Link(f"run {result.run_id} in MLflow", result.url))
        if result.note:
            print(result.note)

    def _connections(self, args: argparse.Namespace) -> None:
        display(connections_table(dsdata.connections()))

    def _browse(self, args: argparse.Namespace) -> None:
        display(browse_table(dsdata.browse(args.connection, args.prefix)))

    def _import(self, args: argparse.Namespace) -> None:
        from .connections import import_data

        params = parse_pairs(args.param, "param")
        result = import_data(args.source, as_name=args.as_name, query=args.query,
                             params=params or None)  # fmt: skip
        lineage = result.lineage
        what = (f"{lineage.get('rows')} rows" if "rows" in lineage
                else f"{len(lineage.get('objects', []))} objects")  # fmt: skip
        if result.created:
            source = lineage.get("connection")
            print(f"{result.dataset}@{result.version}: a new version from {source} ({what}); "
                  f"%dsdata pull {result.dataset}")  # fmt: skip
        else:
            print(f"{result.dataset}@{result.version}: unchanged, the source is as it was "
                  f"then ({what}); no new version")  # fmt: skip

    def _run(self, args: argparse.Namespace) -> None:
        from . import notebook_jobs as nj

        saved = ensure_saved(display, find_project_root())  # the job runs the file on disk
        if saved:
            print("saved " + ", ".join(str(p) for p in saved))
        job = nj.submit(args.notebook, profile=args.profile, cpu=args.cpu, memory=args.memory,
                        gpus=args.gpus, parameters=nj.parse_parameters(args.param),
                        wait=args.wait, commit=args.commit, timeout=args.timeout)  # fmt: skip
        where = f", position {job.position} in the queue" if job.position else ""
        print(f"job {job.id}: {job.state}{where} ({job.notebook} -> {job.output}); "
              f"%dsdata logs {job.id}, %dsdata cancel {job.id}")  # fmt: skip

    def _jobs(self, args: argparse.Namespace) -> None:
        from . import notebook_jobs as nj

        display(jobs_table(nj.jobs()))

    def _logs(self, args: argparse.Namespace) -> None:
        from . import notebook_jobs as nj

        print(nj.logs(args.job, args.tail))

    def _cancel(self, args: argparse.Namespace) -> None:
        from . import notebook_jobs as nj

        job = nj.cancel(args.job)
        print(f"job {job.id}: {job.state}")

    def _log(self, args: argparse.Namespace) -> None:
        display(runs_table(dsdata.log(args.n)))

    def _reproduce(self, args: argparse.Namespace) -> None:
        result = dsdata.reproduce(args.run_id, args.output)
        same = "identical" if result["identical"] else "DIFFERENT"
        print(
            f"run {args.run_id} reproduced in {result['directory']} at {result['git_sha'][:10]}: "
            f"{len(result['datasets'])} dataset(s), {len(result['outputs'])} output(s), "
            f"content hashes {same}"
        )
        differ = [d["path"] for d in [*result["datasets"], *result["outputs"]]
                  if not d["identical"]]  # fmt: skip
        print(
            "checked: the code is git commit "
            f"{result['git_sha'][:10]} as committed (files, notebooks with their saved outputs); "
            "data and outputs by content hash"
            + (f"; different: {', '.join(differ)}" if differ else "")
            + ". Not checked: that running the code again gives the same results."
        )

    def _publish(self, args: argparse.Namespace) -> None:
        result = dsdata.publish(args.model, path=args.path, run_id=args.run, alias=args.alias)
        print(f"registered {result['name']} version {result['version']} -> {result['uri']}")
        if result.get("note"):
            print(result["note"])

    def _promote(self, args: argparse.Namespace) -> None:
        found = dsdata.promote(args.model, args.version, alias=args.alias, note=args.note)
        print(
            f"requested {found['model']} version {found['version']} -> {found['alias']} "
            f"({found['state']}, id {found['id']}); an approver decides"
        )
        display(gates_table(found["gates"]))

    def _history(self, args: argparse.Namespace) -> None:
        display(history_table(dsdata.model_history(args.model)["events"]))

    def _models(self, args: argparse.Namespace) -> None:
        display(models_table(dsdata.models()))

    def _sync(self, args: argparse.Namespace) -> None:
        sent = dsdata.sync()
        left = len(dsdata.experiments().queued())
        print(f"sent {len(sent)} queued run(s); {left} still queued")


DsdataMagics.dsdata.__doc__ = _full_help()
