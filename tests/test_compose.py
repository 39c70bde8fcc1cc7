"""Static checks of docker-compose.yml, Dockerfile, .dockerignore and .env.example (there is no Docker engine here).

The compose file is validated against the Compose Specification JSON schema shipped in tests/data/compose-spec.json
(vendored by the check-jsonschema 0.39.0 wheel from compose-spec/compose-spec `schema/compose-spec.json`, Apache-2.0,
licence beside it). Every command a service runs must exist here and answer `--help`, and every environment variable
the stack passes must mean something to the kit (Settings), to Locust, or to the locustfiles.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shlex
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import jsonschema
import pytest
import yaml

from memload.config import REPO_ROOT, Settings

COMPOSE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"
LOCUSTFILE = "locustfiles/memory_users.py"
LOCUST = str(Path(sys.executable).with_name("locust"))

# Services that run the kit image (the db service runs the pgvector image with its own POSTGRES_* variables).
DB_IMAGE_VARS = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}
INTERPOLATION_RE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?::?[-?+][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def kit_services(compose: dict) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items() if "build" in svc}


def settings_env_names() -> set[str]:
    return {f.name.upper() for f in fields(Settings) if f.name != "extra"}


def settings_defaults() -> dict[str, str]:
    return Settings().as_env()


# ------------------------------------------------------------------ schema


def test_compose_validates_against_the_compose_spec(compose: dict) -> None:
    schema = json.loads(SCHEMA.read_text())
    assert schema["title"] == "Compose Specification"
    validator = jsonschema.Draft202012Validator(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []

    # The validator really enforces the spec: a wrong depends_on condition and an unknown service key are rejected.
    broken = copy.deepcopy(compose)
    broken["services"]["api"]["depends_on"]["migrate"]["condition"] = "service_finished"
    assert not validator.is_valid(broken)
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["replicas_count"] = 2
    assert not validator.is_valid(broken)


def test_services_dependencies_and_healthchecks(compose: dict) -> None:
    services = compose["services"]
    assert {"db", "migrate", "api", "worker", "locust-master", "locust-worker"} <= set(services)

    def condition(svc: str, dep: str) -> str:
        return services[svc]["depends_on"][dep]["condition"]

    assert condition("migrate", "db") == "service_healthy"
    for svc in ("api", "worker"):
        assert condition(svc, "db") == "service_healthy"
        assert condition(svc, "migrate") == "service_completed_successfully"
    assert condition("locust-master", "api") == "service_healthy"
    assert condition("locust-worker", "locust-master") == "service_healthy"
    assert condition("seed", "api") == "service_healthy"  # it writes the source vector through the API
    for svc in ("db", "api", "locust-master"):
        assert services[svc]["healthcheck"]["test"], svc
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert "3001/health" in " ".join(services["api"]["healthcheck"]["test"])
    assert "8089" in " ".join(services["locust-master"]["healthcheck"]["test"])
    assert services["migrate"]["command"] == ["memload", "migrate"]
    assert services["migrate"].get("restart") == "no"
    assert services["api"]["command"] == ["memload", "api", "--host", "0.0.0.0", "--port", "3001"]
    assert services["locust-master"]["command"][:3] == ["locust", "-f", LOCUSTFILE]
    assert "--master" in services["locust-master"]["command"]
    assert any(p.endswith(":8089") for p in services["locust-master"]["ports"])
    worker_cmd = services["locust-worker"]["command"]
    assert "--worker" in worker_cmd and worker_cmd[worker_cmd.index("--master-host") + 1] == "locust-master"
    # scalable with `--scale`: no fixed container name, no published host port
    for svc in ("worker", "locust-worker"):
        assert "container_name" not in services[svc] and "ports" not in services[svc], svc
    # every kit service reads .env
    for name, svc in kit_services(compose).items():
        assert any(e == ".env" or (isinstance(e, dict) and e["path"] == ".env") for e in svc["env_file"]), name


def test_db_image_is_pinned_pgvector_at_least_0_8_4(compose: dict) -> None:
    image = compose["services"]["db"]["image"]
    m = re.fullmatch(r"pgvector/pgvector:(\d+)\.(\d+)\.(\d+)-pg(\d+)(?:-[a-z]+)?", image)
    assert m, f"db image {image!r} is not a pinned pgvector/pgvector:<version>-pg<major> tag"
    assert tuple(int(x) for x in m.groups()[:3]) >= (0, 8, 4)
    assert int(m[4]) >= 16


# ------------------------------------------------------------------ commands


def _service_commands(compose: dict) -> list[tuple[str, list[str]]]:
    """(service, argv) for every program a kit service runs; `sh -c "a && exec b"` yields a and b."""
    out: list[tuple[str, list[str]]] = []
    for name, svc in kit_services(compose).items():
        command = svc["command"]
        if command[:2] == ["sh", "-c"]:
            for i, part in enumerate(command[2].split("&&")):
                argv = shlex.split(part)
                out.append((f"{name}.{i}", argv[1:] if argv[0] == "exec" else argv))
        else:
            out.append((name, command))
    return out


COMPOSE_COMMANDS = _service_commands(yaml.safe_load(COMPOSE.read_text()))


@pytest.mark.parametrize(("service", "command"), COMPOSE_COMMANDS, ids=[s for s, _ in COMPOSE_COMMANDS])
def test_service_command_exists_and_answers_help(service: str, command: list[str]) -> None:
    """Runs `<command with its args> --help` here: the program, the subcommand and every flag value must parse."""
    program, args = command[0], command[1:]
    if program == "python":
        _assert_python_snippet_imports(service, args)
        return
    if program == "memload":
        argv = [sys.executable, "-m", "scripts.cli", *args, "--help"]
    elif program == "locust":
        argv = [LOCUST, *args, "--help"]
    else:
        pytest.fail(f"{service}: unexpected program {program!r}")
    proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{service}: {' '.join(command)} --help failed:\n{proc.stdout}\n{proc.stderr}"
    assert "usage" in proc.stdout.lower(), proc.stdout
    if program == "memload":
        _assert_memload_args_parse(service, args)
    else:
        _assert_locust_args_parse(service, args)


def _assert_memload_args_parse(service: str, args: list[str]) -> None:
    """The service's exact arguments (not only --help) are accepted by the subcommand's parser."""
    code = (
        "import sys; from scripts.cli import build_parser; "
        f"a = build_parser().parse_args({args!r}); print(a.command)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{service}: memload {' '.join(args)} does not parse:\n{proc.stderr}"
    assert proc.stdout.strip() == args[0]


def _assert_python_snippet_imports(service: str, args: list[str]) -> None:
    """`python -c "from M import F; F(...)"`: M.F exists here (the call itself needs the running stack)."""
    assert args[0] == "-c", f"{service}: only `python -c` snippets are expected"
    imports = re.findall(r"from ([\w.]+) import (\w+)", args[1])
    assert imports, f"{service}: snippet imports nothing: {args[1]}"
    code = "; ".join(f"from {module} import {name}" for module, name in imports)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{service}: {code} fails:\n{proc.stderr}"


def _assert_locust_args_parse(service: str, args: list[str]) -> None:
    """The locustfile loads, and Locust's parser (with the locustfile's custom options) accepts the arguments.

    (`locust --help` exits before loading the locustfile, so it proves neither.)"""
    locustfile = args[args.index("-f") + 1]
    assert (REPO_ROOT / locustfile).is_file(), f"{service}: {locustfile} does not exist"
    code = (
        "from locust.util.load_locustfile import load_locustfile\n"
        f"users, _ = load_locustfile({locustfile!r})\n"
        "from locust.argument_parser import get_parser\n"
        f"opts = get_parser().parse_args({args!r})\n"
        "print(sorted(users), opts.scope)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{service}: locust {' '.join(args)} does not load/parse:\n{proc.stderr}"
    assert proc.stdout.startswith("['"), f"{service}: {locustfile} defines no User class: {proc.stdout}"


# ------------------------------------------------------------------ environment variables


@pytest.fixture(scope="module")
def locust_env_vars() -> set[str]:
    """Environment variables Locust reads: its own options plus the locustfile's custom options."""
    code = (
        "import json, sys\n"
        "from locust.util.load_locustfile import load_locustfile\n"
        f"load_locustfile({LOCUSTFILE!r})\n"
        "from locust.argument_parser import get_parser\n"
        "p = get_parser()\n"
        "print(json.dumps(sorted({a.env_var for a in p._actions if getattr(a, 'env_var', None)})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"cannot load {LOCUSTFILE} to list its options:\n{proc.stderr}"
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def locustfile_env_reads() -> set[str]:
    """Upper-case names the locustfiles read from the environment directly, and the shared client's auth variables
    (the users take their headers from memload.client)."""
    from memload.client import AUTH_ENV_VARS

    names: set[str] = set(AUTH_ENV_VARS)
    for path in (REPO_ROOT / "locustfiles").glob("*.py"):
        names |= set(re.findall(r"[\"']([A-Z][A-Z0-9_]{2,})[\"']", path.read_text()))
    return names


def test_every_env_var_passed_to_the_kit_is_known(compose: dict, locust_env_vars: set[str]) -> None:
    known = settings_env_names() | locust_env_vars | locustfile_env_reads()
    for name, svc in kit_services(compose).items():
        env = svc.get("environment", {})
        keys = env.keys() if isinstance(env, dict) else [e.split("=", 1)[0] for e in env]
        unknown = sorted(set(keys) - known)
        assert not unknown, f"{name}: environment variables unknown to Settings, Locust and the locustfiles: {unknown}"
    assert set(compose["services"]["db"]["environment"]) <= DB_IMAGE_VARS


def _env_example() -> tuple[dict[str, str], set[str]]:
    """(active NAME=value lines, names only mentioned in comments as `# NAME=`)."""
    active: dict[str, str] = {}
    commented: set[str] = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        if m := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            assert m[1] not in active, f".env.example sets {m[1]} twice"
            active[m[1]] = m[2]
        elif m := re.fullmatch(r"#\s*([A-Z][A-Z0-9_]*)=.*", line):
            commented.add(m[1])
    return active, commented


def test_env_example_lists_every_setting_with_its_default() -> None:
    active, commented = _env_example()
    defaults = settings_defaults()
    for name in sorted(settings_env_names()):
        assert name in active or name in commented, f".env.example does not list {name}"
        if name in active and name in defaults:
            assert active[name] == defaults[name], f".env.example: {name}={active[name]!r}, default {defaults[name]!r}"
    # path-like and connection settings are documented but left commented (their defaults depend on the host)
    assert {"DATABASE_URL", "MEMLOAD_HOME"} <= commented


def test_env_example_has_no_unknown_variables(compose: dict, locust_env_vars: set[str]) -> None:
    active, _ = _env_example()
    interpolated = set(INTERPOLATION_RE.findall(COMPOSE.read_text()))
    known = settings_env_names() | locust_env_vars | locustfile_env_reads() | DB_IMAGE_VARS | interpolated
    assert sorted(set(active) - known) == []


def test_every_compose_interpolation_is_documented() -> None:
    active, commented = _env_example()
    deploy = (REPO_ROOT / "docs" / "DEPLOY.md").read_text()
    for name in sorted(set(INTERPOLATION_RE.findall(COMPOSE.read_text()))):
        assert name in active or name in commented or name in deploy, f"${{{name}}} is not documented"


# ------------------------------------------------------------------ Dockerfile


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics, enough for our file: last matching pattern wins, `!` re-includes."""
    ignored = False
    for pat in patterns:
        negate = pat.startswith("!")
        pat = pat[1:] if negate else pat
        pat = pat.removeprefix("**/")
        parts = Path(path).parts
        hit = any(fnmatch.fnmatch("/".join(parts[: i + 1]), pat) for i in range(len(parts)))
        hit = hit or any(fnmatch.fnmatch(p, pat) for p in parts)
        if hit:
            ignored = not negate
    return ignored


def test_dockerfile_builds_the_kit_from_existing_sources() -> None:
    instructions = _dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(rest for op, rest in instructions if op == "RUN")
    assert "pip install -r requirements.txt" in runs
    assert re.search(r"pip install (--no-deps )?-e \.", runs)
    patterns = [p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")]
    copied: set[str] = set()
    for op, rest in instructions:
        if op in ("COPY", "ADD"):
            args = [a for a in rest.split() if not a.startswith("--")]
            for src in args[:-1]:
                assert (REPO_ROOT / src).exists(), f"COPY source {src} does not exist"
                assert not _ignored(src, patterns), f"COPY source {src} is excluded by .dockerignore"
                copied.add(src.rstrip("/"))
    # the editable install needs every package pyproject.toml declares, and the SQL migrations
    for package in ("memload", "memory_api", "seeding", "locustfiles", "analysis", "scripts", "sql"):
        assert package in copied, f"Dockerfile does not COPY {package}/"
    assert {"requirements.txt", "pyproject.toml", "README.md"} <= copied
    # local state never enters the build context
    for path in (".venv", ".memload", "artifacts", ".git", ".env"):
        assert _ignored(path, patterns), f"{path} is not in .dockerignore"
    assert not _ignored(".env.example", patterns)
