"""The tables in docs/ that copy something from the code, generated from it.

Each table sits in its page between two markers, `<!-- BEGIN GENERATED: NAME -->` and
`<!-- END GENERATED: NAME -->`; everything between them is this module's output. Regenerate them all
after changing a setting, a pass, a command's flags or a results dataclass:

    python -m mcbench.docs_tables --write

`--check` (the default) exits 1 naming the stale pages; tests/test_docs_tables.py does the same.
Standard library only: the tables are plain Markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import io
import re
import sys
import tokenize
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # a checkout: docs/ beside mcbench/
DOCS = ROOT / "docs"
COMMAND = "python -m mcbench.docs_tables --write"


def _cell(text: object) -> str:
    """Text for one Markdown table cell: pipes escaped, on one line."""
    return " ".join(str(text).split()).replace("|", "\\|")


# --- run files ------------------------------------------------------------------------------------------------


def run_file_keys() -> str:
    from mcbench.config_file import keys_table

    return keys_table()


# --- passes ---------------------------------------------------------------------------------------------------


def _param(p) -> str:
    kind = " \\| ".join(f"`{c}`" for c in p.choices) if p.choices else p.type.__name__
    default = str(p.default).lower() if isinstance(p.default, bool) else p.default
    return f"`{p.name}`: {kind} = `{default}`"


def passes_table() -> str:
    """Every registered pass: what it takes and makes, its parameters, the data it needs, its libraries."""
    from mcbench.optimizer.passes import _FORMAT_NAMES, records

    rows = ["| pass | takes → makes | parameters | needs | libraries (cache key) | summary |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, r in sorted(records().items()):
        takes = ", ".join(_FORMAT_NAMES[f] for f in r.takes)
        makes = _FORMAT_NAMES[r.makes] if r.makes else "the same"
        params = "<br>".join(_param(p) for p in r.config) or "none"
        needs = ", ".join(r.needs) or "none"
        rows.append(f"| `{name}` | {takes} → {makes} | {params} | {needs} | {', '.join(r.libraries)} | "
                    f"{_cell((inspect.getdoc(r.fn) or '').split(chr(10) * 2)[0])} |")
    return "\n".join(rows) + "\n"


# --- the command line -----------------------------------------------------------------------------------------


def _arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
            and a.help is not argparse.SUPPRESS]


def commands() -> dict[str, argparse.ArgumentParser]:
    """Every command with arguments of its own, by its full name (`mcbench profiles show`); `mcbench` itself
    holds the options every command takes. A command that only groups others (`profiles`) is left out."""
    from mcbench.cli import build_parser

    found: dict[str, argparse.ArgumentParser] = {}

    def visit(parser: argparse.ArgumentParser) -> None:
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if _arguments(parser) or not groups:
            found[parser.prog] = parser
        for action in groups:
            for sub in action.choices.values():
                visit(sub)

    visit(build_parser())
    return found


def _help(action: argparse.Action) -> str:
    text = action.help or ""
    if "%" in text:  # argparse's own expansion of %(default)s and the like
        params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        if params.get("choices") is not None:
            params["choices"] = ", ".join(map(str, params["choices"]))
        text = text % params
    return text


def _argument(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.choices is not None:
        return "`" + " \\| ".join(map(str, action.choices)) + "`"
    metavar = action.metavar or (action.dest if not action.option_strings else action.dest.upper())
    text = f"`{_cell(metavar)}`"
    if action.nargs == "+":
        text += " ..."
    elif action.nargs == "?":
        text = f"[{text}]"
    return text


def _default(action: argparse.Action) -> str:
    d = action.default
    if d is None or d is False or d is argparse.SUPPRESS or d == [] or d == "" or action.nargs == 0:
        return ""
    return f"`{_cell(d)}`"


def cli_table(command: str) -> str:
    """The arguments and flags of one command, as its `--help` lists them: one table a group of flags."""
    parser = commands()[command]
    shown = set(map(id, _arguments(parser)))
    plain = [a for g in parser._action_groups if g.title in ("positional arguments", "options")
             for a in g._group_actions if id(a) in shown]
    groups = [(None, plain)] + [(g.title, [a for a in g._group_actions if id(a) in shown])
                                for g in parser._action_groups if g.title not in ("positional arguments", "options")]
    out: list[str] = []
    for title, actions in groups:
        if not actions:
            continue
        if title:
            out.append(f"*{_cell(title)}*\n")
        out += ["| flag | argument | default | meaning |", "| --- | --- | --- | --- |"]
        for a in actions:
            flag = " / ".join(f"`{o}`" for o in a.option_strings) or f"`{_cell(a.metavar or a.dest)}`"
            argument = _argument(a) if a.option_strings else "(positional)" + (" ..." if a.nargs == "+" else "")
            out.append(f"| {flag} | {argument} | {_default(a)} | {_cell(_help(a))} |")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n" if out else "No arguments.\n"


# --- the results schema ---------------------------------------------------------------------------------------


def _field_comments(cls: type) -> dict[str, str]:
    """A dataclass field's comment in the source: on its line and on comment-only lines right after it."""
    lines = inspect.getsource(cls).splitlines()
    on_line = {tok.start[0]: tok.string.lstrip("#").strip()
               for tok in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline)
               if tok.type == tokenize.COMMENT}
    comments: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        field = re.match(r"^    ([a-z_0-9]+): ", line)
        if field is None or number not in on_line:
            continue
        text = [on_line[number]]
        following = number + 1
        while following <= len(lines) and lines[following - 1].strip().startswith("#"):
            text.append(on_line[following])
            following += 1
        comments[field.group(1)] = " ".join(text)
    return comments


def _records(root: type) -> list[type]:
    """The dataclasses of the results file, from `root` down, in the order a reader meets them."""
    import typing

    from mcbench.reports import schema

    seen: list[type] = []

    def visit(cls: type) -> None:
        if cls in seen:
            return
        seen.append(cls)
        for f in dataclasses.fields(cls):
            for name in re.findall(r"[A-Z][A-Za-z]+", str(f.type)):
                tp = getattr(schema, name, None)
                if dataclasses.is_dataclass(tp) and tp is not typing.Any:
                    visit(tp)

    visit(root)
    return seen


def schema_tables() -> str:
    """Every record of results.json: its fields, their types, whether required, and what they hold."""
    from mcbench.reports import schema

    out: list[str] = []
    for cls in _records(schema.RunResult):
        doc = inspect.getdoc(cls) or ""
        summary = "" if doc.startswith(f"{cls.__name__}(") else ": " + _cell(doc.split("\n\n")[0])
        out += [f"**`{cls.__name__}`**{summary}", "", "| field | type | required | meaning |",
                "| --- | --- | --- | --- |"]
        comments = _field_comments(cls)
        for f in dataclasses.fields(cls):
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            out.append(f"| `{f.name}` | `{_cell(f.type)}` | {'yes' if required else 'no'} | "
                       f"{_cell(comments.get(f.name, ''))} |")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


# --- the pages ------------------------------------------------------------------------------------------------


def blocks() -> dict[str, tuple[str, Callable[[], str]]]:
    """Each generated block: its name -> (the page under docs/ that holds it, the function that makes it)."""
    out: dict[str, tuple[str, Callable[[], str]]] = {
        "run-file-keys": ("run-files.md", run_file_keys),
        "passes": ("passes.md", passes_table),
        "results-schema": ("results-schema.md", schema_tables),
    }
    for command in commands():
        out[command] = ("cli.md", lambda command=command: cli_table(command))
    return out


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- BEGIN GENERATED: {name} -->", f"<!-- END GENERATED: {name} -->"


def read_block(text: str, name: str) -> str | None:
    """What a page holds between the block's markers; None where it has no such block."""
    begin, end = _markers(name)
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        return None
    return text[i + len(begin):j].strip("\n") + "\n"


def replace_block(text: str, name: str, body: str) -> str:
    begin, end = _markers(name)
    i, j = text.find(begin), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"no block {name!r} (markers {begin} ... {end})")
    return text[:i + len(begin)] + "\n" + body.rstrip("\n") + "\n" + text[j:]


def stale(docs: Path | None = None) -> list[str]:
    """`page: block` for every generated block that is missing or differs from a fresh generation."""
    docs = docs or DOCS
    found = []
    for name, (page, make) in blocks().items():
        path = docs / page
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        held = read_block(text, name)
        if held is None:
            found.append(f"{page}: no block '{name}' (add its markers: {' ... '.join(_markers(name))})")
        elif held != make():
            found.append(f"{page}: block '{name}' is stale")
    return found


def write(docs: Path | None = None) -> tuple[list[str], list[str]]:
    """Regenerate every block in place: (the pages changed, the blocks that could not be placed)."""
    docs = docs or DOCS
    pages: dict[str, str] = {}
    missing = []
    for name, (page, make) in blocks().items():
        path = docs / page
        text = pages.get(page) or (path.read_text(encoding="utf-8") if path.exists() else "")
        if read_block(text, name) is None:
            begin, end = _markers(name)
            missing.append(f"{page}: no block '{name}' (add its markers: {begin} ... {end})")
            continue
        pages[page] = replace_block(text, name, make())
    changed = []
    for page, text in pages.items():
        path = docs / page
        if path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(page)
    return changed, missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mcbench.docs_tables", description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="regenerate the tables in docs/ (default: check them)")
    args = parser.parse_args(argv)
    if args.write:
        changed, missing = write()
        for m in missing:
            print(f"mcbench: docs/{m}", file=sys.stderr)
        print("\n".join(f"wrote docs/{p}" for p in changed) or "docs/ tables: nothing to change")
        return 1 if missing else 0
    problems = stale()
    for p in problems:
        print(f"mcbench: docs/{p}", file=sys.stderr)
    if problems:
        print(f"mcbench: regenerate them with `{COMMAND}`", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
