#!/usr/bin/env python3
"""Makes the man pages and apm-cli's bash completion from one source each.

    mkman.py --options OPTIONS.tsv --cli PATH/apm-cli --src deploy/man --out DIR --version V

Each page has a markdown-ish source, deploy/man/NAME.SECTION.txt:

    name: apm-agent                 header lines, then a blank line
    section: 8
    summary: one line for NAME

    ## HEADING                      a section (.SH)
    ### Subheading                  a subsection (.SS)
    text, `literal`, *argument*     a paragraph (blank lines separate them)
        indented by four            a literal block
    - item                          a bullet
    @options PROG                   PROG's flags, from its option table (OPTIONS.tsv, written
                                    by optdump from the tables the program parses with), and
                                    the action flags its --help prints beside them (--backup)
    @config PROG SECTION            every key of [SECTION] in PROG's table, flag or not
    @cli-globals / @cli-commands    apm-cli's global options and its commands with their
                                    usage and options, from `apm-cli --help` and
                                    `apm-cli COMMAND --help`

So a flag the program accepts cannot be missing from its page: the page is made from the
table the program parses with (apm-cli: from the help it prints, which
tests/integration/test_manpages.py checks against every flag its sources accept).
The completion (apm-cli.bash) is made from the same apm-cli help.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from typing import Optional

FLAG_RE = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def roff_text(s: str) -> str:
    """Escapes text for roff and turns `x` into bold, *x* into italics."""
    s = s.replace("\\", "\\e").replace("-", "\\-")
    s = re.sub(r"`([^`]+)`", r"\\fB\1\\fR", s)
    s = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"\\fI\1\\fR", s)
    # A line may not start with a control character.
    return "\n".join("\\&" + ln if ln.startswith((".", "'")) else ln for ln in s.split("\n"))


def roff_literal(s: str) -> str:
    s = s.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + s if s.startswith((".", "'")) else s


class Options:
    """OPTIONS.tsv: PROGRAM, SECTION, KEY, ARG, FLAG, HELP."""

    def __init__(self, path: str) -> None:
        self.rows: list[tuple[str, str, str, str, bool, str]] = []
        self.actions: dict[str, list[tuple[str, str, str]]] = {}
        with open(path) as f:
            for n, line in enumerate(f, 1):
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 6:
                    sys.exit(f"{path}:{n}: expected 6 fields, found {len(parts)}")
                prog, section, key, arg, flag, help_ = parts
                self.rows.append((prog, section, key, arg, flag == "1", help_))
        if not self.rows:
            sys.exit(f"{path}: no options")

    def flags(self, prog: str) -> list[tuple[str, str, str]]:
        table = [(k, a, h) for p, _, k, a, f, h in self.rows if p == prog and f]
        return table + self.actions.get(prog, [])

    def add_actions(self, prog: str, path: str) -> None:
        """Flags PROG's --help prints beside its table (actions such as --backup DIR)."""
        r = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            sys.exit(f"{path} --help exited {r.returncode}: {r.stderr}")
        known = {k for p, _, k, _, f, _ in self.rows if p == prog and f} | {"help", "version"}
        for m in re.finditer(r"(?m)^  --([a-z][a-z0-9-]*)(?: ([A-Z][A-Z:-]*))?\s+(\S.*)$", r.stdout):
            if m.group(1) not in known:
                self.actions.setdefault(prog, []).append((m.group(1), m.group(2) or "", m.group(3)))

    def keys(self, prog: str, section: str) -> list[tuple[str, str, str, bool]]:
        out = [(k, a, h, f) for p, s, k, a, f, h in self.rows if p == prog and s == section]
        if not out:
            sys.exit(f"@config {prog} {section}: no such section in the option table")
        return out


class Cli:
    """apm-cli's commands and options, as its --help texts give them."""

    def __init__(self, path: str) -> None:
        self.path = path
        top = self.run("--help")
        self.commands: list[tuple[str, str]] = []
        self.globals: list[tuple[str, str]] = []
        part = ""
        for line in top.splitlines():
            if line.startswith("Commands:"):
                part = "commands"
                continue
            if line.startswith("Options"):
                part = "options"
                continue
            if not line.strip():
                if part == "options" and self.globals:
                    part = ""
                continue
            if part == "commands":
                m = re.match(r"\s+(\S+)\s+(.*)", line)
                if m:
                    self.commands.append((m.group(1), m.group(2)))
            elif part == "options":
                m = re.match(r"\s+(--?[a-z-]+(?: [A-Z]+)?)\s+(.*)", line)
                if m:
                    self.globals.append((m.group(1), m.group(2)))
                elif self.globals and line.startswith("    "):
                    o, h = self.globals[-1]
                    self.globals[-1] = (o, h + " " + line.strip())
        if not self.commands or not self.globals:
            sys.exit(f"{path} --help: found no commands or no options")
        self.help: dict[str, str] = {c: self.run(c, "--help") for c, _ in self.commands}

    def run(self, *args: str) -> str:
        env = dict(os.environ)
        env.pop("APM_SERVER", None)
        r = subprocess.run([self.path, *args], capture_output=True, text=True, env=env,
                           timeout=30)
        if r.returncode != 0:
            sys.exit(f"{self.path} {' '.join(args)} exited {r.returncode}: {r.stderr}")
        return r.stdout

    def usage_and_text(self, cmd: str) -> tuple[list[str], list[str]]:
        """The usage lines ("usage: ..." and its deeper-indented continuations), then the text."""
        usage: list[str] = []
        text: list[str] = []
        for line in self.help[cmd].splitlines():
            if line.startswith("usage: "):
                usage.append(line.removeprefix("usage: ").strip())
            elif usage and not text and line.startswith(" " * 8):
                usage.append(" " * 4 + line.strip())
            else:
                text.append(line.strip())
        return usage, text

    def command_flags(self, cmd: str) -> list[str]:
        flags: list[str] = []
        for f in FLAG_RE.findall(self.help[cmd]):
            if f not in flags:
                flags.append(f)
        if "--help" not in flags:
            flags.append("--help")
        return flags

    def global_flags(self) -> list[str]:
        return [o.split()[0] for o, _ in self.globals if o.startswith("--")]


def synopsis_options(opts: Options, prog: str) -> str:
    out = [f"\\fB{prog}\\fR"]
    for key, arg, _ in opts.flags(prog):
        out.append(f"[\\fB\\-\\-{roff_literal(key)}\\fR" +
                   (f" \\fI{roff_literal(arg)}\\fR]" if arg else "]"))
    out += ["[\\fB\\-\\-help\\fR]", "[\\fB\\-\\-version\\fR]"]
    return ".nh\n.ad l\n" + "\n".join(out) + "\n.ad\n.hy"


def option_list(opts: Options, prog: str) -> str:
    out = []
    for key, arg, help_ in opts.flags(prog):
        out.append(".TP")
        head = f"\\fB\\-\\-{roff_literal(key)}\\fR"
        if arg:
            head += f" \\fI{roff_literal(arg)}\\fR"
        out.append(head)
        out.append(roff_text(help_[0].upper() + help_[1:] + ("" if help_.endswith(".") else ".")))
    out += [".TP", "\\fB\\-\\-help\\fR, \\fB\\-h\\fR", "Print the options and exit.",
            ".TP", "\\fB\\-\\-version\\fR", "Print the version and the commit, and exit."]
    return "\n".join(out)


def config_list(opts: Options, prog: str, section: str) -> str:
    out = []
    for key, arg, help_, flag in opts.keys(prog, section):
        out.append(".TP")
        value = arg or "true|false"
        out.append(f"\\fB{roff_literal(key)}\\fR = \\fI{roff_literal(value)}\\fR")
        text = help_[0].upper() + help_[1:] + ("" if help_.endswith(".") else ".")
        if not flag:
            text += " File only (no flag)."
        out.append(roff_text(text))
    return "\n".join(out)


def cli_globals(cli: Cli) -> str:
    out = []
    for opt, help_ in cli.globals:
        parts = opt.split()
        head = f"\\fB{roff_literal(parts[0])}\\fR"
        if len(parts) > 1:
            head += f" \\fI{roff_literal(parts[1])}\\fR"
        out += [".TP", head, roff_text(help_)]
    return "\n".join(out)


def cli_commands(cli: Cli) -> str:
    out = []
    for cmd, summary in cli.commands:
        usage, text = cli.usage_and_text(cmd)
        out.append(f".SS {roff_literal(cmd)}")
        out.append(roff_text(summary[0].upper() + summary[1:] + "."))
        out.append(".PP")
        out.append(".nf")
        out += [roff_literal(u) for u in usage]
        out.append(".fi")
        para = " ".join(t for t in text if t)
        if para:
            out.append(".PP")
            out.append(roff_text(para))
    return "\n".join(out)


def render(src: str, opts: Options, cli: Optional[Cli], version: str) -> tuple[str, str, str]:
    with open(src) as f:
        lines = f.read().split("\n")
    head: dict[str, str] = {}
    i = 0
    while i < len(lines) and lines[i].strip():
        k, sep, v = lines[i].partition(":")
        if not sep:
            sys.exit(f"{src}:{i + 1}: header line without ':'")
        head[k.strip()] = v.strip()
        i += 1
    for k in ("name", "section", "summary"):
        if k not in head:
            sys.exit(f"{src}: header '{k}' missing")
    name, section = head["name"], head["section"]
    out = [f'.TH {name.upper()} {section} "" "apm {version}" "apm"',
           ".SH NAME", f"{roff_literal(name)} \\- {roff_text(head['summary'])}"]
    para: list[str] = []
    literal: list[str] = []

    def flush() -> None:
        if para:
            out.append(".PP")
            out.append(roff_text(" ".join(para)))
            para.clear()
        if literal:
            out.extend([".PP", ".RS 4", ".nf"] + [roff_literal(x) for x in literal] + [".fi", ".RE"])
            literal.clear()

    for n, line in enumerate(lines[i:], i + 1):
        if line.startswith("    ") and not para:
            literal.append(line[4:])
            continue
        if literal:
            flush()
        if not line.strip():
            flush()
        elif line.startswith("## "):
            flush()
            out.append(".SH " + roff_literal(line[3:].strip().upper()))
        elif line.startswith("### "):
            flush()
            out.append(".SS " + roff_literal(line[4:].strip()))
        elif line.startswith("- "):
            flush()
            out += [".IP \\(bu 2", roff_text(line[2:].strip())]
        elif line.startswith("@"):
            flush()
            words = line[1:].split()
            if words[0] == "synopsis":
                out.append(synopsis_options(opts, words[1]))
            elif words[0] == "options":
                out.append(option_list(opts, words[1]))
            elif words[0] == "config":
                out.append(config_list(opts, words[1], words[2]))
            elif words[0] == "cli-globals" and cli is not None:
                out.append(cli_globals(cli))
            elif words[0] == "cli-commands" and cli is not None:
                out.append(cli_commands(cli))
            else:
                sys.exit(f"{src}:{n}: unknown directive {line!r}")
        else:
            para.append(line.strip())
    flush()
    return name, section, "\n".join(out) + "\n"


def completion(cli: Cli) -> str:
    cmds = " ".join(c for c, _ in cli.commands)
    glob = " ".join(cli.global_flags())
    cases = []
    for cmd, _ in cli.commands:
        cases.append(f"        {cmd}) flags=\"{' '.join(cli.command_flags(cmd))}\" ;;")
    values = {"--state": "firing pending resolved active all",
              "--sensitivity": "early balanced quiet",
              "--metric": "rss pss uss swap cgroup_usage cgroup_limit mem_available mem_total "
                          "traced site_size site_count"}
    value_cases = "\n".join(f"        {k}) COMPREPLY=($(compgen -W \"{v}\" -- \"$cur\")); return ;;"
                            for k, v in values.items())
    return f"""# bash completion for apm-cli -*- shell-script -*-
# Generated by deploy/man/mkman.py from apm-cli's own --help texts; do not edit.

_apm_cli()
{{
    local cur prev cmd="" i flags
    cur=${{COMP_WORDS[COMP_CWORD]}}
    prev=${{COMP_WORDS[COMP_CWORD-1]}}
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${{COMP_WORDS[i]}} in
        --server|--token-file|--cacert) ((i++)) ;;
        -*) ;;
        *) cmd=${{COMP_WORDS[i]}}; break ;;
        esac
    done
    case $prev in
        --token-file|--cacert) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --server) COMPREPLY=($(compgen -W "http://127.0.0.1:7412" -- "$cur")); return ;;
{value_cases}
    esac
    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "{glob} --help --version" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "{cmds}" -- "$cur"))
        fi
        return
    fi
    case $cmd in
{chr(10).join(cases)}
        *) flags="" ;;
    esac
    if [[ $cur == -* || $cmd != analyze ]]; then
        COMPREPLY=($(compgen -W "$flags {glob}" -- "$cur"))
    else
        COMPREPLY=($(compgen -f -- "$cur"))
    fi
}} &&
    complete -F _apm_cli apm-cli

# ex: filetype=sh
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--options", required=True)
    ap.add_argument("--cli", required=True)
    ap.add_argument("--agent", required=True)
    ap.add_argument("--collector", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--version", required=True)
    a = ap.parse_args()
    opts = Options(a.options)
    opts.add_actions("apm-agent", a.agent)
    opts.add_actions("apm-collector", a.collector)
    cli = Cli(a.cli)
    os.makedirs(a.out, exist_ok=True)
    for fn in sorted(os.listdir(a.src)):
        if not re.fullmatch(r"[\w.-]+\.\d\.txt", fn):
            continue
        name, section, text = render(os.path.join(a.src, fn), opts, cli, a.version)
        with open(os.path.join(a.out, f"{name}.{section}"), "w") as f:
            f.write(text)
    with open(os.path.join(a.out, "apm-cli.bash"), "w") as f:
        f.write(completion(cli))
    return 0


if __name__ == "__main__":
    sys.exit(main())
