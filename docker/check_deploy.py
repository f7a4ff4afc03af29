#!/usr/bin/env python3
"""Offline checks of ablate's deployment files, run by scripts/lint-deploy.sh.

What a container engine or a cluster would only reject at deploy time, or
what would quietly differ from the tested build:

  Dockerfiles  every COPY source exists in the build context and is not
               dockerignored; scripts the images run are executable; base
               images are pinned (a tag, not latest) and every ARG they use
               has a default; apt packages of the build are ones
               scripts/setup.sh installs (the tested build's)
  compose      Dockerfiles exist; ABLATE_* settings are ones the entrypoint
               scripts read; depends_on and secrets name what exists
  Kubernetes   kustomization resources exist; selectors match pod labels;
               probes and Service target ports name container ports; mounts
               name volumes; ABLATE_* settings are ones the entrypoints read;
               GPU workers get a grace period long enough to checkpoint
  Slurm        #SBATCH lines come before the first command; --requeue and
               --signal are set

Usage: check_deploy.py [ROOT]   (default: the repository holding this file)
"""

import fnmatch
import glob
import json
import os
import re
import shlex
import subprocess
import sys

import yaml

# Packages an image may install beyond scripts/setup.sh's: download tools and
# the CUDA toolkit, which the CPU-only tested build has no use for.
EXTRA_PACKAGES = ["ca-certificates", "curl", "unzip", "cuda-toolkit-*"]
# A GPU worker needs this long to checkpoint, upload and release its job.
MIN_GPU_GRACE_SECONDS = 120


class Checker:
    def __init__(self, root):
        self.root = root
        self.problems = []

    def problem(self, path, message):
        self.problems.append(f"{os.path.relpath(path, self.root)}: {message}")

    def files(self, pattern):
        return sorted(glob.glob(os.path.join(self.root, pattern)))

    # --- What the repository provides ------------------------------------

    def known_settings(self):
        """ABLATE_* variables the entrypoint scripts read."""
        names = set()
        for path in self.files("scripts/*-entrypoint.sh") + self.files("docker/slurm/*.sbatch"):
            with open(path) as f:
                names.update(re.findall(r"\bABLATE_[A-Z_]+\b", f.read()))
        return names

    def setup_packages(self):
        path = os.path.join(self.root, "scripts/setup.sh")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            block = re.search(r"packages=\((.*?)\)", f.read(), re.S)
        return set(block.group(1).split()) if block else None

    def dockerignore(self):
        path = os.path.join(self.root, ".dockerignore")
        patterns = []
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    line = line.strip()
                    if line and not line.startswith("#"):
                        patterns.append(line.strip("/"))
        return patterns

    def is_executable(self, path):
        """Executable as committed (what a clone builds from), else on disk."""
        rel = os.path.relpath(path, self.root)
        try:
            out = subprocess.run(["git", "-C", self.root, "ls-files", "-s", "--", rel],
                                 capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            out = ""
        if out:
            return out.split()[0] == "100755"
        return os.access(path, os.X_OK)

    # --- Dockerfiles -----------------------------------------------------

    @staticmethod
    def instructions(path):
        """(instruction, arguments) pairs, continuation lines joined."""
        result, current = [], ""
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if line.lstrip().startswith("#"):
                    continue
                if line.endswith("\\"):
                    current += line[:-1] + " "
                    continue
                current += line
                if current.strip():
                    word, _, rest = current.strip().partition(" ")
                    result.append((word.upper(), rest.strip()))
                current = ""
        return result

    def check_dockerfile(self, path):
        ignored = self.dockerignore()
        allowed = self.setup_packages()
        args, stages, copied = {}, set(), {}
        seen_from = False
        for word, rest in self.instructions(path):
            if word == "ARG" and not seen_from:
                for item in shlex.split(rest):
                    name, _, default = item.partition("=")
                    args[name] = default
            elif word == "FROM":
                seen_from = True
                parts = rest.split()
                image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1)) or m.group(0),
                               parts[0])
                if len(parts) >= 3 and parts[1].upper() == "AS":
                    stages.add(parts[2])
                if image in stages:
                    continue
                if "${" in image or "$" in image:
                    self.problem(path, f"FROM {parts[0]}: an ARG without a default")
                elif "@sha256:" not in image and (":" not in image or image.endswith(":latest")):
                    self.problem(path, f"FROM {image}: pin a dated tag or a digest")
            elif word in ("COPY", "ADD"):
                tokens = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
                flags = [t for t in tokens if t.startswith("--")]
                paths = [t for t in tokens if not t.startswith("--")]
                if any(flag.startswith("--from=") for flag in flags):
                    continue
                for source in paths[:-1]:
                    self.check_copy_source(path, source, ignored, copied)
            elif word == "RUN":
                packages = self.apt_packages(rest)
                if packages and allowed is None:
                    self.problem(path, "installs apt packages, but scripts/setup.sh has no "
                                       "packages=(...) list to compare them with")
                    continue
                for package in packages:
                    if package not in allowed and not any(
                            fnmatch.fnmatch(package, extra) for extra in EXTRA_PACKAGES):
                        self.problem(path, f"apt package {package} is not in scripts/setup.sh: "
                                           "the image would build with what the tests did not")
            elif word in ("ENTRYPOINT", "CMD", "HEALTHCHECK"):
                command = rest
                if word == "HEALTHCHECK":
                    if rest.strip().upper() == "NONE":
                        continue
                    command = rest[rest.upper().index("CMD") + 3:].strip()
                if command.startswith("["):
                    program = json.loads(command)[0]
                    if not program.startswith("/") and program not in copied:
                        self.problem(path, f"{word} runs {program}, which no COPY provides")

    def check_copy_source(self, path, source, ignored, copied):
        source = source.rstrip("/") or "."
        if source != ".":
            for pattern in ignored:
                parts = source.split("/")
                prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
                if not pattern.startswith("!") and any(
                        fnmatch.fnmatch(p, pattern) for p in prefixes):
                    self.problem(path, f"COPY {source}: excluded by .dockerignore ({pattern})")
        matches = glob.glob(os.path.join(self.root, source))
        if not matches:
            self.problem(path, f"COPY {source}: no such file in the build context")
        for match in matches:
            if os.path.isfile(match):
                copied[os.path.basename(match)] = match
                if match.endswith(".sh") and not self.is_executable(match):
                    self.problem(path, f"COPY {source}: the script is not executable")

    @staticmethod
    def apt_packages(run):
        packages = []
        for command in re.split(r"&&|;|\|\|", run):
            tokens = shlex.split(command)
            if "apt-get" in tokens and "install" in tokens:
                after = tokens[tokens.index("install") + 1:]
                packages += [re.sub(r"\$\{\w+\}", "*", t) for t in after
                             if not t.startswith("-")]
        return packages

    # --- compose ---------------------------------------------------------

    def check_compose(self, path, known):
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
        services = doc.get("services", {})
        secrets = doc.get("secrets", {})
        for name, service in services.items():
            build = service.get("build")
            if isinstance(build, dict) and "dockerfile" in build:
                context = os.path.join(os.path.dirname(path), build.get("context", "."))
                if not os.path.exists(os.path.join(context, build["dockerfile"])):
                    self.problem(path, f"{name}: no Dockerfile {build['dockerfile']}")
            environment = service.get("environment", {})
            keys = environment.keys() if isinstance(environment, dict) else [
                entry.split("=")[0] for entry in environment]
            for key in keys:
                if key.startswith("ABLATE_") and key not in known:
                    self.problem(path, f"{name}: {key} is read by no entrypoint script")
            for dependency in service.get("depends_on", {}):
                if dependency not in services:
                    self.problem(path, f"{name}: depends on unknown service {dependency}")
            for secret in service.get("secrets", []):
                secret = secret if isinstance(secret, str) else secret.get("source")
                if secret not in secrets:
                    self.problem(path, f"{name}: unknown secret {secret}")

    # --- Kubernetes ------------------------------------------------------

    def check_kubernetes(self, folder, known):
        kustomization = os.path.join(folder, "kustomization.yaml")
        if os.path.exists(kustomization):
            with open(kustomization) as f:
                for resource in (yaml.safe_load(f) or {}).get("resources", []):
                    if not os.path.exists(os.path.join(folder, resource)):
                        self.problem(kustomization, f"no resource {resource}")
        docs = []
        for path in sorted(glob.glob(os.path.join(folder, "*.yaml"))):
            if path == kustomization:
                continue
            with open(path) as f:
                docs += [(path, doc) for doc in yaml.safe_load_all(f) if doc]
        workloads = []
        for path, doc in docs:
            for field in ("apiVersion", "kind"):
                if field not in doc:
                    self.problem(path, f"a document without {field}")
            if not doc.get("metadata", {}).get("name"):
                self.problem(path, f"a {doc.get('kind')} without metadata.name")
            if doc.get("kind") in ("Deployment", "StatefulSet", "Job", "DaemonSet"):
                workloads.append((path, doc))
                self.check_workload(path, doc, known)
        for path, doc in docs:
            if doc.get("kind") == "Service":
                self.check_service(path, doc, workloads)

    def check_workload(self, path, doc, known):
        name = doc["metadata"].get("name")
        spec = doc.get("spec", {})
        template = spec.get("template", {})
        labels = template.get("metadata", {}).get("labels", {})
        selector = spec.get("selector", {}).get("matchLabels", {})
        if any(labels.get(k) != v for k, v in selector.items()):
            self.problem(path, f"{name}: selector {selector} does not match the pod labels")
        pod = template.get("spec", {})
        volumes = {v["name"] for v in pod.get("volumes", [])}
        volumes |= {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
        for container in pod.get("containers", []):
            where = f"{name}/{container.get('name')}"
            ports = container.get("ports", [])
            numbers = {p.get("containerPort") for p in ports}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                grpc = container.get(probe, {}).get("grpc")
                if grpc and grpc.get("port") not in numbers:
                    self.problem(path, f"{where}: {probe} asks port {grpc.get('port')}, "
                                       "which the container does not declare")
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in volumes:
                    self.problem(path, f"{where}: mounts unknown volume {mount['name']}")
            for env in container.get("env", []):
                if env["name"].startswith("ABLATE_") and env["name"] not in known:
                    self.problem(path, f"{where}: {env['name']} is read by no entrypoint script")
            if "nvidia.com/gpu" in container.get("resources", {}).get("limits", {}):
                grace = pod.get("terminationGracePeriodSeconds", 30)
                if grace < MIN_GPU_GRACE_SECONDS:
                    self.problem(path, f"{where}: terminationGracePeriodSeconds {grace} is too "
                                       "short to checkpoint and release a job")

    def check_service(self, path, doc, workloads):
        name = doc["metadata"].get("name")
        selector = doc.get("spec", {}).get("selector", {})
        targets = []
        for _, workload in workloads:
            template = workload.get("spec", {}).get("template", {})
            labels = template.get("metadata", {}).get("labels", {})
            if all(labels.get(k) == v for k, v in selector.items()):
                targets.append(template.get("spec", {}))
        if not targets:
            self.problem(path, f"Service {name}: its selector matches no pod template")
            return
        port_names = {p.get("name") for pod in targets for c in pod.get("containers", [])
                      for p in c.get("ports", [])}
        port_numbers = {p.get("containerPort") for pod in targets
                        for c in pod.get("containers", []) for p in c.get("ports", [])}
        for port in doc["spec"].get("ports", []):
            target = port.get("targetPort", port.get("port"))
            if target not in port_names and target not in port_numbers:
                self.problem(path, f"Service {name}: targetPort {target} is no container port")

    # --- Slurm -----------------------------------------------------------

    def check_sbatch(self, path):
        with open(path) as f:
            lines = f.read().splitlines()
        first_command = next((i for i, line in enumerate(lines)
                              if line.strip() and not line.lstrip().startswith("#")), len(lines))
        directives = [(i, line) for i, line in enumerate(lines) if line.startswith("#SBATCH")]
        for i, line in directives:
            if i > first_command:
                self.problem(path, f"line {i + 1}: {line!r} comes after the first command, "
                                   "so Slurm ignores it")
        text = " ".join(line for _, line in directives)
        for required in ("--requeue", "--signal="):
            if required not in text:
                self.problem(path, f"no #SBATCH {required}: not requeue-safe")

    def run(self):
        known = self.known_settings()
        for path in self.files("docker/*Dockerfile"):
            self.check_dockerfile(path)
        for path in self.files("docker/compose*.yaml"):
            self.check_compose(path, known)
        for folder in self.files("docker/k8s"):
            self.check_kubernetes(folder, known)
        for path in self.files("docker/slurm/*.sbatch"):
            self.check_sbatch(path)
        return self.problems


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(__file__), ".."))
    problems = Checker(root).run()
    for problem in problems:
        print(f"check_deploy: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
