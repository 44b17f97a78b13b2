"""The checked-in container files parse and agree with the project (docs/install.md).

No Docker engine or Kubernetes cluster is needed (this machine has neither; the docker
and kubectl clients cannot check anything without one), so:
- deploy/docker/Dockerfile*: a small parser of the Dockerfile syntax. Every instruction
  is a known one, only ARG comes before the first FROM, stage names are unique and
  `COPY --from` names an earlier one, every file COPY takes from the build context exists
  and is not excluded by .dockerignore, exec-form CMD/ENTRYPOINT are JSON lists of strings.
- deploy/k8s/*.yaml: parsed with python3-yaml, the kinds each file must hold are there,
  selectors match the pod labels, volume mounts name volumes, every flag passed to
  apm-agent and apm-collector is one their --help lists (the build's binaries), the
  DaemonSet has hostPID, SYS_PTRACE, the probe socket's directory on a hostPath and a token
  Secret of mode 0400, the agent's --collector is the collector Service's name and port,
  and the images are the Dockerfile's targets at version.py's version.
Each checker is also fed broken files, so that it is seen to fail.
"""

from __future__ import annotations

import copy
import fnmatch
import glob
import json
import os
import re
import shlex
import subprocess
import tempfile
import unittest
from typing import Dict, List, Tuple

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.environ.get("APM_SOURCE_DIR") or os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("APM_BUILD_DIR") or os.path.join(SOURCE, "build")
KNOWN = {"FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT",
         "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def version() -> str:
    with open(os.path.join(SOURCE, "agent", "python", "apm_probe", "version.py")) as f:
        return re.search(r'^VERSION = "([^"]+)"$', f.read(), re.M).group(1)


def dockerignore(context: str) -> List[str]:
    path = os.path.join(context, ".dockerignore")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [l.strip() for l in f if l.strip() and not l.lstrip().startswith("#")]


def ignored(rel: str, patterns: List[str]) -> bool:
    """Whether .dockerignore excludes rel or a directory above it (no `!` patterns here)."""
    parts = rel.split("/")
    for pat in patterns:
        pat = pat.lstrip("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatchcase(prefix, pat) or (pat.startswith("**/") and
                                                     fnmatch.fnmatchcase(parts[i - 1], pat[3:])):
                return True
    return False


def dockerfile_instructions(text: str, name: str) -> List[Tuple[int, str, str]]:
    """(line, INSTRUCTION, arguments), continuation lines joined and comments dropped."""
    out: List[Tuple[int, str, str]] = []
    pending, start = "", 0
    for no, line in enumerate(text.splitlines(), 1):
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue
        if not pending:
            start = no
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((start, word.upper(), rest.strip()))
    if pending:
        raise ValueError(f"{name}:{start}: the file ends inside a continued line")
    return out


def check_dockerfile(path: str, context: str) -> Dict[str, int]:
    """Checks one Dockerfile; returns its stages (name -> index). Raises ValueError."""
    name = os.path.relpath(path, context)
    with open(path) as f:
        instructions = dockerfile_instructions(f.read(), name)
    stages: Dict[str, int] = {}
    args = set()
    count = 0
    patterns = dockerignore(context)
    for no, word, rest in instructions:
        where = f"{name}:{no}: {word}"
        if word not in KNOWN:
            raise ValueError(f"{where}: unknown instruction")
        if not rest:
            raise ValueError(f"{where}: no arguments")
        if count == 0 and word not in ("FROM", "ARG"):
            raise ValueError(f"{where}: only ARG may come before the first FROM")
        if word == "ARG":
            args.add(rest.split("=", 1)[0])
        elif word == "FROM":
            words = [w for w in rest.split() if not w.startswith("--platform=")]
            if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
                raise ValueError(f"{where}: want FROM IMAGE [AS NAME]")
            for ref in re.findall(r"\$\{?(\w+)", words[0]):
                if ref not in args:
                    raise ValueError(f"{where}: ${ref} is no ARG declared before it")
            if len(words) == 3:
                if words[2] in stages:
                    raise ValueError(f"{where}: stage {words[2]} named twice")
                stages[words[2]] = count
            count += 1
        elif word in ("COPY", "ADD"):
            flags = {}
            items = shlex.split(rest) if not rest.startswith("[") else None
            if items is None:
                items = json.loads(rest)
            while items and items[0].startswith("--"):
                k, _, v = items.pop(0)[2:].partition("=")
                flags[k] = v
            if len(items) < 2:
                raise ValueError(f"{where}: want SOURCE... DEST")
            if "from" in flags:
                if flags["from"] not in stages and not (flags["from"].isdigit() and
                                                        int(flags["from"]) < count - 1):
                    raise ValueError(f"{where}: --from={flags['from']} is no earlier stage")
                continue
            for src in items[:-1]:
                rel = os.path.normpath(src).lstrip("/")
                found = [p for p in glob.glob(os.path.join(context, rel))
                         if not ignored(os.path.relpath(p, context), patterns)]
                if rel != "." and not found:
                    raise ValueError(f"{where}: {src} is not in the build context {context}"
                                     " (or .dockerignore leaves it out)")
        elif word in ("CMD", "ENTRYPOINT") and rest.startswith("["):
            try:
                value = json.loads(rest)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: exec form is not JSON: {exc}") from None
            if not (isinstance(value, list) and value and all(isinstance(v, str) for v in value)):
                raise ValueError(f"{where}: exec form must be a list of strings")
        elif word == "ENV":
            items = shlex.split(rest)
            if "=" in items[0] and not all("=" in i and i.split("=", 1)[0] for i in items):
                raise ValueError(f"{where}: want KEY=VALUE ...")
        elif word == "EXPOSE":
            for port in rest.split():
                if not re.fullmatch(r"\d{1,5}(/(tcp|udp))?", port):
                    raise ValueError(f"{where}: {port} is no port")
    if count == 0:
        raise ValueError(f"{name}: no FROM")
    return stages


def flags_of(binary: str) -> set:
    text = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10)
    return set(re.findall(r"^\s+(--[a-z0-9-]+)", text.stdout + text.stderr, re.M))


def by_kind(docs: List[dict]) -> Dict[str, dict]:
    return {d["kind"]: d for d in docs}


def check_workload(doc: dict, binary: str) -> dict:
    """Checks a DaemonSet or Deployment; returns its one container."""
    name = f"{doc['kind']} {doc['metadata']['name']}"
    pod = doc["spec"]["template"]
    labels = pod["metadata"]["labels"]
    for k, v in doc["spec"]["selector"]["matchLabels"].items():
        if labels.get(k) != v:
            raise ValueError(f"{name}: selector {k}={v} does not match the pod's labels")
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    containers = pod["spec"]["containers"]
    if len(containers) != 1:
        raise ValueError(f"{name}: want one container")
    c = containers[0]
    for m in c.get("volumeMounts", []):
        if m["name"] not in volumes:
            raise ValueError(f"{name}: volumeMount {m['name']} names no volume")
    known = flags_of(binary)
    for arg in c["args"]:
        flag = arg.split("=", 1)[0]
        if flag not in known:
            raise ValueError(f"{name}: {flag} is not an option of {os.path.basename(binary)}")
    ports = {p["name"] for p in c.get("ports", [])}
    for probe in ("readinessProbe", "livenessProbe"):
        port = c.get(probe, {}).get("httpGet", {}).get("port")
        if port is not None and port not in ports:
            raise ValueError(f"{name}: {probe} port {port} is no container port")
    return c


def arg(c: dict, flag: str) -> str:
    for a in c["args"]:
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    raise ValueError(f"container {c['name']}: no {flag}")


def mount_of(c: dict, volumes: Dict[str, dict], path: str) -> dict:
    """The volume mounted at path or at the closest directory above it."""
    best = None
    for m in c.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/")
        if (path == mp or path.startswith(mp + "/")) and (best is None or len(mp) > len(best["mountPath"])):
            best = m
    if best is None:
        raise ValueError(f"container {c['name']}: nothing mounted at {path}")
    return volumes[best["name"]]


def check_k8s(agent_docs: List[dict], collector_docs: List[dict]) -> None:
    want = {"DaemonSet": "apps/v1", "Deployment": "apps/v1", "Service": "v1",
            "PersistentVolumeClaim": "v1"}
    for docs, kinds in ((agent_docs, {"DaemonSet"}),
                        (collector_docs, {"Deployment", "Service", "PersistentVolumeClaim"})):
        got = {d["kind"] for d in docs}
        if got != kinds:
            raise ValueError(f"kinds {sorted(got)}, want {sorted(kinds)}")
        for d in docs:
            if d["apiVersion"] != want[d["kind"]]:
                raise ValueError(f"{d['kind']}: apiVersion {d['apiVersion']}, want {want[d['kind']]}")
            if not d["metadata"].get("name") or d["metadata"].get("namespace") != "apm":
                raise ValueError(f"{d['kind']}: want a name and namespace apm")
    ds, col = by_kind(agent_docs)["DaemonSet"], by_kind(collector_docs)
    dep, svc, pvc = col["Deployment"], col["Service"], col["PersistentVolumeClaim"]
    ver = version()

    agent = check_workload(ds, os.path.join(BUILD, "agent", "apm-agent"))
    pod = ds["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    if pod.get("hostPID") is not True:
        raise ValueError("DaemonSet: hostPID must be true (the node's pids, as SO_PEERCRED gives them)")
    if "SYS_PTRACE" not in agent["securityContext"]["capabilities"].get("add", []):
        raise ValueError("DaemonSet: the agent needs SYS_PTRACE")
    sock = mount_of(agent, volumes, os.path.dirname(arg(agent, "--probe-socket")))
    if sock.get("hostPath", {}).get("type") != "DirectoryOrCreate":
        raise ValueError("DaemonSet: the probe socket's directory must be a hostPath (DirectoryOrCreate)")
    token = mount_of(agent, volumes, arg(agent, "--token-file"))
    if token.get("secret", {}).get("defaultMode") != 0o400:
        raise ValueError("DaemonSet: the token must come from a Secret of mode 0400")
    for flag in ("--proc-root", "--cgroup-root", "--spool-dir"):
        mount_of(agent, volumes, arg(agent, flag))
    if agent["image"] != f"apm-agent:{ver}":
        raise ValueError(f"DaemonSet: image {agent['image']}, want apm-agent:{ver}")

    collector = check_workload(dep, os.path.join(BUILD, "server", "apm-collector"))
    pod = dep["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    if dep["spec"]["replicas"] != 1 or dep["spec"]["strategy"]["type"] != "Recreate":
        raise ValueError("Deployment: one replica, Recreate (one LMDB writer)")
    data = mount_of(collector, volumes, arg(collector, "--data-dir"))
    if data.get("persistentVolumeClaim", {}).get("claimName") != pvc["metadata"]["name"]:
        raise ValueError("Deployment: the data directory must be the PersistentVolumeClaim")
    if collector["image"] != f"apm-collector:{ver}":
        raise ValueError(f"Deployment: image {collector['image']}, want apm-collector:{ver}")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    if any(labels.get(k) != v for k, v in svc["spec"]["selector"].items()):
        raise ValueError("Service: selector does not match the collector's pods")
    ports = {p["name"]: p["containerPort"] for p in collector["ports"]}
    for p in svc["spec"]["ports"]:
        if p["targetPort"] not in ports:
            raise ValueError(f"Service: targetPort {p['targetPort']} is no container port")
    if ports["ingest"] != int(arg(collector, "--listen").rsplit(":", 1)[1]):
        raise ValueError("Deployment: the ingest port is not the one --listen takes")
    host, port = arg(agent, "--collector").rsplit(":", 1)
    ingest = [p["port"] for p in svc["spec"]["ports"] if p["targetPort"] == "ingest"]
    if host != f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc" or [int(port)] != ingest:
        raise ValueError(f"DaemonSet: --collector {host}:{port} is not the collector Service")


def load_yaml(name: str) -> List[dict]:
    with open(os.path.join(SOURCE, "deploy", "k8s", name)) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


class DeployFiles(unittest.TestCase):
    def test_dockerfiles(self) -> None:
        stages = check_dockerfile(os.path.join(SOURCE, "deploy", "docker", "Dockerfile"), SOURCE)
        self.assertLessEqual({"build", "agent", "collector"}, set(stages))
        check_dockerfile(os.path.join(SOURCE, "deploy", "docker", "Dockerfile.app"), SOURCE)
        # The app image installs the wheel by the name the build gives it.
        wheels = glob.glob(os.path.join(BUILD, "python-wheels", "*.whl"))
        self.assertTrue(wheels, f"no wheel in {BUILD}/python-wheels")
        with open(os.path.join(SOURCE, "deploy", "docker", "Dockerfile.app")) as f:
            text = f.read()
        pattern = re.search(r"/wheels/(apm_probe-\*\.whl)", text).group(1)
        self.assertTrue(all(fnmatch.fnmatchcase(os.path.basename(w), pattern) for w in wheels))

    def test_dockerfile_checker_fails_on_broken_files(self) -> None:
        bad = {
            "FRUM debian\n": "unknown instruction",
            "RUN true\nFROM debian\n": "before the first FROM",
            "FROM debian\nCOPY no/such/file /x\n": "not in the build context",
            "FROM debian\nCOPY build /x\n": "not in the build context",  # .dockerignore
            "FROM debian AS a\nCOPY --from=b /x /y\n": "no earlier stage",
            "FROM debian\nCMD [\"a\", b]\n": "not JSON",
            "FROM ${IMAGE}\n": "no ARG",
            "FROM debian AS a\nFROM debian AS a\n": "named twice",
            "FROM debian\nRUN a \\\n": "continued line",
        }
        context = tempfile.TemporaryDirectory()
        self.addCleanup(context.cleanup)
        os.mkdir(os.path.join(context.name, "build"))
        with open(os.path.join(context.name, ".dockerignore"), "w") as f:
            f.write("build*\n")
        good = os.path.join(context.name, "Dockerfile")
        with open(good, "w") as f:
            f.write("ARG IMAGE=debian\nFROM ${IMAGE} AS a\nCOPY .dockerignore /x\n"
                    "FROM debian\nCOPY --from=a /x /y\nCMD [\"true\"]\n")
        self.assertEqual(check_dockerfile(good, context.name), {"a": 0})
        for text, why in bad.items():
            with self.subTest(text=text):
                with open(good, "w") as f:
                    f.write(text)
                with self.assertRaisesRegex(ValueError, why):
                    check_dockerfile(good, context.name)

    def test_k8s_manifests(self) -> None:
        check_k8s(load_yaml("agent-daemonset.yaml"), load_yaml("collector-deployment.yaml"))

    def test_k8s_checker_fails_on_broken_manifests(self) -> None:
        agent, collector = load_yaml("agent-daemonset.yaml"), load_yaml("collector-deployment.yaml")

        def ds(docs):
            return by_kind(docs)["DaemonSet"]["spec"]["template"]["spec"]

        def dep(docs):
            return by_kind(docs)["Deployment"]["spec"]["template"]["spec"]

        def volume(docs, name):
            return [v for v in ds(docs)["volumes"] if v["name"] == name][0]

        breaks = {
            "hostPID": lambda a, c: ds(a).pop("hostPID"),
            "SYS_PTRACE": lambda a, c: ds(a)["containers"][0]["securityContext"]["capabilities"].update(add=[]),
            "not an option": lambda a, c: ds(a)["containers"][0]["args"].append("--no-such-flag=1"),
            "names no volume": lambda a, c: ds(a)["volumes"].pop(),
            "hostPath": lambda a, c: volume(a, "probe-socket").update(hostPath={"path": "/x"}),
            "0400": lambda a, c: volume(a, "token")["secret"].update(defaultMode=0o440),
            "Service: selector": lambda a, c: by_kind(c)["Service"]["spec"]["selector"].update(x="y"),
            "not the collector Service": lambda a, c: ds(a)["containers"][0]["args"].__setitem__(
                0, "--collector=elsewhere:7411"),
            "PersistentVolumeClaim": lambda a, c: dep(c)["volumes"][0].update(
                persistentVolumeClaim={"claimName": "other"}),
            "kinds": lambda a, c: c.pop(),
            "image": lambda a, c: dep(c)["containers"][0].update(image="apm-collector:latest"),
        }
        for why, brk in breaks.items():
            with self.subTest(why=why):
                a, c = copy.deepcopy(agent), copy.deepcopy(collector)
                brk(a, c)
                with self.assertRaisesRegex(ValueError, why):
                    check_k8s(a, c)


if __name__ == "__main__":
    unittest.main()
