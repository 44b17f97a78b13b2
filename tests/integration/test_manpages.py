"""Man pages and bash completion (issue 13, part 5), against the programs themselves.

- Every flag apm-agent and apm-collector print in --help (their option tables) appears in
  their man page; every key of the tables' sections appears in apm-agent.conf(5) or apm-collector.conf(5).
- Every flag apm-cli's sources compare an argument with ("--pid", ...) appears in apm-cli(1)
  and in the completion script, and every command apm-cli --help lists too.
- groff (-man -ww: all warnings) and man -l render each page without one warning.
- The completion runs in a real bash (with Debian's bash-completion when installed) and
  completes commands, a command's flags, the global ones and option values.
"""
from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import AGENT, BUILD, CLI, COLLECTOR, SOURCE  # noqa: E402

MAN = os.path.join(BUILD, "man")
PAGES = ("apm-agent.8", "apm-collector.8", "apm-cli.1", "apm-agent.conf.5", "apm-collector.conf.5")
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def page_text(page: str) -> str:
    """The page as a reader sees it (hyphenation off, wide, so a flag is never split)."""
    r = subprocess.run(["man", "-l", os.path.join(MAN, page)], capture_output=True, text=True,
                       env=dict(os.environ, MANWIDTH="250",
                                LC_ALL="C.UTF-8"), timeout=30)
    if r.returncode != 0:
        raise AssertionError(f"man -l {page}: {r.stderr}")
    # Bold and underline come as overstrikes ("a\\ba"): keep the letters.
    return re.sub(r".\x08", "", r.stdout).replace("\u2010", "-")


def help_flags(prog: str) -> set[str]:
    out = subprocess.run([prog, "--help"], capture_output=True, text=True, timeout=30).stdout
    return set(re.findall(r"^\s+(--[a-z0-9-]+)", out, re.M))


class ManPageTest(unittest.TestCase):
    def test_render_without_warnings(self) -> None:
        for page in PAGES:
            path = os.path.join(MAN, page)
            self.assertTrue(os.path.exists(path + ".gz"), f"{page}.gz not built")
            r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", path],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual((r.returncode, r.stderr), (0, ""), f"groff on {page}")
            r = subprocess.run(["man", "--warnings", "-l", path], capture_output=True, text=True,
                               timeout=30, env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8"))
            self.assertEqual((r.returncode, r.stderr), (0, ""), f"man --warnings -l {page}")
            text = page_text(page)
            for head in ("NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"):
                self.assertIn(f"\n{head}\n", text, f"{page} has no {head}")

    def test_every_daemon_flag_is_documented(self) -> None:
        for prog, page in ((AGENT, "apm-agent.8"), (COLLECTOR, "apm-collector.8")):
            flags = help_flags(prog)
            self.assertGreater(len(flags), 15, f"{prog} --help lists {flags}")
            self.assertTrue({"--help", "--version", "--log-format"} <= flags, flags)
            documented = set(FLAG.findall(page_text(page)))
            self.assertEqual(flags - documented, set(), f"flags missing from {page}")
        conf = {p: page_text(f"{p}.conf.5") for p in ("apm-agent", "apm-collector")}
        with open(os.path.join(MAN, "options.tsv")) as f:
            rows = [ln.split("\t") for ln in f.read().splitlines()]
        self.assertGreater(len(rows), 40)
        for prog, section, key, *_ in rows:
            self.assertRegex(conf[prog], rf"(?m)^\s+{re.escape(key)} = ", f"[{section}] {key}")

    def cli_source_flags(self) -> set[str]:
        flags: set[str] = set()
        for path in glob.glob(os.path.join(SOURCE, "cli", "*.c")):
            with open(path) as f:
                flags |= set(re.findall(r'"(--[a-z][a-z0-9-]*)[="]', f.read()))
        return flags

    def test_every_cli_flag_and_command_is_documented_and_completed(self) -> None:
        flags = self.cli_source_flags()
        self.assertTrue({"--server", "--pid", "--window", "--exact", "--tuning"} <= flags, flags)
        text = page_text("apm-cli.1")
        with open(os.path.join(MAN, "apm-cli.bash")) as f:
            completion = f.read()
        documented = set(FLAG.findall(text))
        self.assertEqual(flags - documented, set(), "apm-cli flags missing from apm-cli(1)")
        completed = set(FLAG.findall(completion))
        self.assertEqual(flags - completed, set(), "apm-cli flags missing from the completion")
        top = subprocess.run([CLI, "--help"], capture_output=True, text=True).stdout
        commands = re.findall(r"(?m)^  ([a-z]+)  ", top)
        self.assertGreaterEqual(len(commands), 9, top)
        for c in commands:
            self.assertIn(f"\n   {c}\n", text, f"command {c} has no subsection in apm-cli(1)")
            self.assertRegex(completion, rf"\b{c}\) flags=", f"command {c} not completed")


class CompletionTest(unittest.TestCase):
    def complete(self, *words: str) -> list[str]:
        """COMPREPLY for the command line `apm-cli WORDS...`, the last word being completed."""
        line = ["apm-cli", *words]
        quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in line)
        loader = "/usr/share/bash-completion/bash_completion"
        script = (f"[ -r {loader} ] && . {loader}\n"
                  f". '{os.path.join(MAN, 'apm-cli.bash')}'\n"
                  f"COMP_WORDS=({quoted}); COMP_CWORD={len(line) - 1}\n"
                  "COMP_LINE=\"${COMP_WORDS[*]}\"; COMP_POINT=${#COMP_LINE}\n"
                  "complete -p apm-cli >/dev/null || exit 3\n"
                  "_apm_cli apm-cli \"${COMP_WORDS[COMP_CWORD]}\" \"${COMP_WORDS[COMP_CWORD-1]}\"\n"
                  "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
        r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True,
                           text=True, timeout=30, cwd=MAN)
        self.assertEqual(r.returncode, 0, r.stderr)
        return sorted(x for x in r.stdout.splitlines() if x)

    def test_completes_commands_flags_and_values(self) -> None:
        self.assertEqual(self.complete("tr"), ["trace"])
        self.assertEqual(self.complete("t"), ["top", "trace"])
        self.assertIn("forecast", self.complete(""))
        self.assertEqual(self.complete("--ser"), ["--server"])
        top = self.complete("top", "--")
        self.assertTrue({"--pid", "--process", "--host", "--window", "--limit", "--json",
                         "--server", "--help"} <= set(top), top)
        self.assertNotIn("--exact", top)
        # Global options before the command, with their values, are skipped over.
        self.assertEqual(self.complete("--server", "http://h:7412", "trace", "--ex"), ["--exact"])
        self.assertEqual(self.complete("alerts", "--state", "f"), ["firing"])
        self.assertEqual(self.complete("series", "--metric", "cgroup_"),
                         ["cgroup_limit", "cgroup_usage"])
        self.assertIn("apm-cli.1", self.complete("analyze", "apm-cli."))


if __name__ == "__main__":
    unittest.main(verbosity=2)
