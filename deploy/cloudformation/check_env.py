#!/usr/bin/env python3
# Checks that each ECS task of chimewatch.yaml runs a real chimewatch command with environment variables that command reads.
"""Compare the task definitions' commands and CHIMEWATCH_* variables with the binary's own settings.

Every setting is declared once in src/config.rs (`env = "CHIMEWATCH_..."`), and src/cli.rs says which groups of
settings each command takes (`#[command(flatten)]`). This reads both, works out the variables each command reads,
and fails when a container's Environment or Secrets name a CHIMEWATCH_* variable its command does not read (a typo,
or a setting of another command, would otherwise be ignored silently), or lack one the service cannot start without.

    .venv/bin/python deploy/cloudformation/check_env.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from cfnlint.decode import decode

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TEMPLATE = HERE / "chimewatch.yaml"

# Task definition -> (the command its container runs, the clap Args struct of that command, the variables it needs).
TASKS = {
    "GatewayTaskDefinition": (["gateway"], "GatewayArgs", {"CHIMEWATCH_STREAM", "CHIMEWATCH_API_KEYS"}),
    "AggregatorTaskDefinition": (["aggregator"], "AggregatorArgs", {"CHIMEWATCH_STREAM", "CHIMEWATCH_LEASE_TABLE"}),
    "ArchiverTaskDefinition": (["archiver"], "ArchiverArgs",
                               {"CHIMEWATCH_STREAM", "CHIMEWATCH_LEASE_TABLE", "CHIMEWATCH_ARCHIVE_BUCKET"}),
    "CompactTaskDefinition": (["archive", "compact"], "CompactArgs", {"CHIMEWATCH_ARCHIVE_BUCKET"}),
}
# Read by the AWS SDK or the standard library rather than by chimewatch's settings.
OTHER_VARIABLES = {"AWS_REGION", "TMPDIR"}

STRUCT = re.compile(r"^pub struct (\w+)\s*\{\n(.*?)^\}", re.M | re.S)
FLATTENED = re.compile(r"#\[command\(flatten[^\]]*\]\s*(?:///[^\n]*\n\s*)*pub \w+: (\w+),")
ENV = re.compile(r'env\s*=\s*"(CHIMEWATCH_\w+)"')


def structs() -> dict[str, tuple[set[str], list[str]]]:
    """Each struct of src/config.rs and src/cli.rs: (the variables its fields read, the structs it flattens)."""
    found = {}
    for path in (ROOT / "src" / "config.rs", ROOT / "src" / "cli.rs"):
        for match in STRUCT.finditer(path.read_text()):
            body = match[2]
            found[match[1]] = (set(ENV.findall(body)), FLATTENED.findall(body))
    return found


def variables(name: str, known: dict) -> set[str]:
    if name not in known:
        raise SystemExit(f"check_env: no struct {name} in src/config.rs or src/cli.rs")
    own, flattened = known[name]
    result = set(own)
    for inner in flattened:
        result |= variables(inner, known)
    return result


def container_variables(container: dict) -> list[str]:
    """The names of a container's Environment and Secrets entries, both branches of a Fn::If included."""
    names = []
    for entry in container.get("Environment", []) + container.get("Secrets", []):
        if isinstance(entry, dict) and "Fn::If" in entry:
            entry_options = [e for e in entry["Fn::If"][1:] if isinstance(e, dict) and "Name" in e]
            names.extend(e["Name"] for e in entry_options)
        elif isinstance(entry, dict) and "Name" in entry:
            names.append(entry["Name"])
    return names


def main() -> int:
    known = structs()
    everywhere = variables("Cli", known)  # --config and --log are global
    template, errors = decode(str(TEMPLATE))
    if errors or template is None:
        raise SystemExit(f"check_env: cannot read {TEMPLATE}: {errors}")
    problems = []
    for logical, (command, args, required) in TASKS.items():
        resource = template["Resources"].get(logical)
        if resource is None:
            problems.append(f"{logical}: not in the template")
            continue
        containers = resource["Properties"]["ContainerDefinitions"]
        if len(containers) != 1:
            problems.append(f"{logical}: expected one container, found {len(containers)}")
            continue
        container = containers[0]
        if container.get("Command") != command:
            problems.append(f"{logical}: runs {container.get('Command')}, expected {command}")
        readable = variables(args, known) | everywhere
        names = container_variables(container)
        for name in names:
            if name not in readable and name not in OTHER_VARIABLES:
                problems.append(f"{logical}: `chimewatch {' '.join(command)}` reads no {name}")
        for name in sorted(set(n for n in names if names.count(n) > 1)):
            problems.append(f"{logical}: {name} is set twice")
        for name in sorted(required - set(names)):
            problems.append(f"{logical}: {name} is missing")
        print(f"check_env: {logical} (chimewatch {' '.join(command)}): {len(names)} variables, "
              f"{len(readable)} known to the command")
    for problem in problems:
        print(f"check_env: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
