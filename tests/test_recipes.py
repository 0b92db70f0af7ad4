"""The deployment recipes in examples/recipes: parsed and checked, their shell parts run.

No container engine here: the YAML files are loaded and their structure checked; the Dockerfile
is read instruction by instruction; the entrypoint really runs the pre-start step against a
SQLite file; the shell of the CI steps and of the Kubernetes probes runs with a stand-in for the
tool that exits with the code under test.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sqlite3
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from orchestrator_migrate.cli import COMMANDS, build_parser
from orchestrator_migrate.config.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "examples" / "recipes"
DOCKERFILE = RECIPES / "Dockerfile"
ENTRYPOINT = RECIPES / "entrypoint.sh"
EXAMPLE_DIR = ROOT / "examples" / "task_server"
V1 = "task_server.models:Base"
DB_RELATIVE = Path(".task_orchestrator") / "task_orchestrator.db"
TOOL_NAMES = {"orchestrator-migrate", "orchestrator_migrate"}


# ---------------------------------------------------------------- helpers


def load_yaml(name: str) -> Any:
    return yaml.safe_load((RECIPES / name).read_text(encoding="utf-8"))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        keyword, _, rest = (pending + text).partition(" ")
        found.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return found


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in dockerfile_instructions():
        if keyword != "ENV":
            continue
        words = shlex.split(rest)
        if "=" not in words[0]:  # the legacy form ENV KEY VALUE
            env[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            key, _, value = word.partition("=")
            env[key] = value
    return env


def exec_form(keyword: str) -> list[str]:
    values = [rest for kw, rest in dockerfile_instructions() if kw == keyword]
    assert values, f"no {keyword} in the Dockerfile"
    form = json.loads(values[-1])  # the last one wins; the exec form is a JSON list
    assert isinstance(form, list) and form, f"{keyword} is not in exec form: {values[-1]}"
    return form


def env_list(container: dict[str, Any]) -> dict[str, Any]:
    """A Kubernetes container's env as name -> value (or the valueFrom mapping)."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def tool_invocations(script: str) -> list[list[str]]:
    """The argument lists of every orchestrator-migrate / python -m orchestrator_migrate call
    in a shell script (comments skipped; arguments end at a shell operator)."""
    calls = []
    for line in script.splitlines():
        if line.strip().startswith("#"):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
        for i, token in enumerate(tokens):
            start = None
            if token == "orchestrator-migrate":
                start = i + 1
            elif token == "-m" and i + 1 < len(tokens) and tokens[i + 1] == "orchestrator_migrate":
                start = i + 2
            if start is None:
                continue
            args = []
            rest = tokens[start:]
            for j, word in enumerate(rest):
                if set(word) <= set("|&;<>()"):
                    break
                following = rest[j + 1] if j + 1 < len(rest) else ""
                if word.isdigit() and following[:1] in ("<", ">"):  # 2>&1
                    break
                args.append(word)
            calls.append(args)
    return calls


def command_of(args: list[str]) -> str:
    """The CLI command an argument list runs (run when none), parsed by the real parser."""
    try:
        parsed = vars(build_parser().parse_args(args))
    except SystemExit as exc:  # argparse's way of refusing
        raise AssertionError(f"orchestrator-migrate rejects {args}") from exc
    return parsed.get("command") or "run"


def fake_tool(directory: Path, name: str) -> Path:
    """A stand-in for a command: logs its arguments and exits with $FAKE_<COMMAND>_RC."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(
        "#!/bin/sh\n"
        'echo "$*" >> "$FAKE_LOG"\n'
        'for word in "$@"; do case "$word" in -*|orchestrator_migrate) ;; *) cmd=$word; break;;'
        " esac; done\n"
        'case "$cmd" in\n'
        '  plan) echo "## fake plan: $*";;\n'
        '  rehearse) echo "fake rehearsal output";;\n'
        "esac\n"
        'eval "exit \\${FAKE_$(echo "$cmd" | tr a-z A-Z)_RC:-0}"\n'
    )
    path.chmod(0o755)
    return path


def entrypoint_env(base_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """An environment like the image's: `python` is this venv's, the example importable."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENV_PREFIX)}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = str(EXAMPLE_DIR)
    # Uninstalled, the example's entry point is missing: name its models instead.
    env[ENV_PREFIX + "MODELS"] = V1
    env[ENV_PREFIX + "BASE_DIR"] = str(base_dir)
    env.update(extra or {})
    return env


def run_entrypoint(
    base_dir: Path, *command: str, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ENTRYPOINT), *command],
        cwd=base_dir,
        env=entrypoint_env(base_dir, extra),
        capture_output=True,
        text=True,
        timeout=60,
    )


def tables(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()


# ---------------------------------------------------------------- Dockerfile and entrypoint


def test_dockerfile_builds_the_example_with_the_entrypoint():
    instructions = dockerfile_instructions()
    keywords = [kw for kw, _ in instructions]
    assert keywords[0] == "FROM"
    assert {"ENTRYPOINT", "CMD"} <= set(keywords)

    # Every COPY source exists in the build context, the repository root.
    copies: dict[str, str] = {}
    for kw, rest in instructions:
        if kw == "COPY":
            words = [w for w in shlex.split(rest) if not w.startswith("--")]
            for source in words[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                copies[source] = words[-1]
    assert "examples/recipes/entrypoint.sh" in copies
    assert exec_form("ENTRYPOINT") == [copies["examples/recipes/entrypoint.sh"]]

    # The package (with its readme, which its pyproject names) and the example are installed,
    # after they were copied in.
    assert {"pyproject.toml", "README.md", "orchestrator_migrate", "examples/task_server"} <= set(
        copies
    )
    installs = [shlex.split(rest) for kw, rest in instructions if kw == "RUN" and "pip" in rest]
    words = [w for words in installs for w in words]
    assert "./examples/task_server" in words
    assert any(w == "." or w.startswith(".[") for w in words)
    first_install = next(i for i, (kw, r) in enumerate(instructions) if "pip install" in r)
    last_copy = max(
        i for i, (kw, r) in enumerate(instructions) if kw == "COPY" and "task_server" in r
    )
    assert last_copy < first_install

    # CMD runs the example's console script.
    scripts = tomllib.loads((EXAMPLE_DIR / "pyproject.toml").read_text())["project"]["scripts"]
    assert exec_form("CMD")[0] in scripts

    # BASE_DIR is set to a declared volume.
    env = dockerfile_env()
    volumes = [json.loads(r) for kw, r in instructions if kw == "VOLUME"]
    assert [env[ENV_PREFIX + "BASE_DIR"]] in volumes


def test_entrypoint_is_an_executable_shell_script():
    mode = ENTRYPOINT.stat().st_mode
    assert mode & stat.S_IXUSR, "chmod +x examples/recipes/entrypoint.sh"
    try:
        staged = subprocess.run(
            ["git", "ls-files", "-s", "--", str(ENTRYPOINT.relative_to(ROOT))],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except FileNotFoundError:  # no git: the file mode above is what git would record
        staged = ""
    if staged:
        assert staged.split()[0] == "100755", f"git records {staged.split()[0]}"
    text = ENTRYPOINT.read_text()
    assert text.startswith("#!/bin/sh\n")
    for shell in ("sh", "bash"):
        checked = subprocess.run([shell, "-n", str(ENTRYPOINT)], capture_output=True, text=True)
        assert checked.returncode == 0, f"{shell} -n: {checked.stderr}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert re.fullmatch(r"set -e\w*", lines[0]), lines[0]
    assert lines[-1] == 'exec "$@"'


def test_entrypoint_migrates_before_the_server_starts(tmp_path):
    db = tmp_path / DB_RELATIVE
    # The stand-in server reports which tables exist when it starts.
    server = (
        "import sqlite3, sys;"
        f"c = sqlite3.connect({str(db)!r});"
        "names = [r[0] for r in c.execute(\"SELECT name FROM sqlite_master WHERE type='table'\")];"
        "print('server started with', ','.join(sorted(names)))"
    )
    done = run_entrypoint(tmp_path, "python", "-c", server)
    assert done.returncode == 0, done.stderr
    assert "server started with" in done.stdout
    seen = set(done.stdout.split("server started with", 1)[1].strip().split(","))
    assert {"projects", "tasks", "orchestrator_migrate_history"} <= seen
    assert {"projects", "tasks"} <= tables(db)
    assert "Database migration completed" in done.stderr


def test_entrypoint_runs_the_image_cmd_with_the_image_env(tmp_path):
    """CMD (the console script, run as its module here) with the Dockerfile's ENV values."""
    env = {k: v for k, v in dockerfile_env().items() if k.startswith(ENV_PREFIX)}
    env[ENV_PREFIX + "BASE_DIR"] = str(tmp_path)  # /data in the image
    script, *args = exec_form("CMD")
    scripts = tomllib.loads((EXAMPLE_DIR / "pyproject.toml").read_text())["project"]["scripts"]
    module = scripts[script].split(":")[0]
    done = run_entrypoint(tmp_path, "python", "-m", module, *args, "--add-task", "hello", extra=env)
    assert done.returncode == 0, done.stderr
    assert "added task 'hello'" in done.stdout
    conn = sqlite3.connect(tmp_path / DB_RELATIVE)
    try:
        assert conn.execute("SELECT title FROM tasks").fetchall() == [("hello",)]
        outcomes = conn.execute("SELECT outcome FROM orchestrator_migrate_history").fetchall()
    finally:
        conn.close()
    assert outcomes == [("applied",)]  # the entrypoint migrated; the server's hook had nothing


def test_a_failing_pre_start_step_stops_before_the_server(tmp_path):
    marker = tmp_path / "server-ran"
    done = run_entrypoint(
        tmp_path,
        "python",
        "-c",
        f"open({str(marker)!r}, 'w').close()",
        extra={ENV_PREFIX + "MIGRATION_TIMEOUT": "soon"},
    )
    assert done.returncode == 2, done.stderr  # the tool's exit code: a bad setting
    assert "MIGRATION_TIMEOUT" in done.stderr
    assert not marker.exists()
    assert not (tmp_path / DB_RELATIVE).exists()


def test_entrypoint_without_a_command_refuses_before_migrating(tmp_path):
    done = run_entrypoint(tmp_path)
    assert done.returncode != 0
    assert "no server command" in done.stderr
    assert not (tmp_path / DB_RELATIVE).exists()


# ---------------------------------------------------------------- compose


def server_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from the recipe's Dockerfile."""
    found = {}
    for name, service in compose["services"].items():
        build = service.get("build")
        if isinstance(build, dict):
            path = RECIPES / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
            if path.resolve() == DOCKERFILE:
                found[name] = service
    return found


@pytest.mark.parametrize("name", ["compose.yaml", "compose.postgres.yaml"])
def test_compose_runs_three_replicas_on_one_volume(name):
    compose = load_yaml(name)
    services = server_services(compose)
    assert services, "no service is built from examples/recipes/Dockerfile"
    replicas = sum((s.get("deploy") or {}).get("replicas", 1) for s in services.values())
    assert replicas == 3

    mounts = set()
    for service in services.values():
        base_dir = compose_env(service)[ENV_PREFIX + "BASE_DIR"]
        for volume in service.get("volumes", []):
            source, target = (
                volume.split(":")[:2]
                if isinstance(volume, str)
                else (volume["source"], volume["target"])
            )
            if target == base_dir:
                mounts.add((source, target))
    assert len(mounts) == 1, f"the replicas do not share one volume at BASE_DIR: {mounts}"
    ((source, _),) = mounts
    assert source in (compose.get("volumes") or {}), f"{source} is not a named volume"
    volume = compose["volumes"][source] or {}
    assert volume.get("driver", "local") == "local"


def test_compose_sqlite_has_no_database_url():
    for service in server_services(load_yaml("compose.yaml")).values():
        env = compose_env(service)
        assert ENV_PREFIX + "DB_URL" not in env and ENV_PREFIX + "DB_PATH" not in env


def test_compose_postgres_waits_for_a_healthy_server_it_points_at():
    compose = load_yaml("compose.postgres.yaml")
    ((pg_name, pg),) = (
        (n, s) for n, s in compose["services"].items() if s["image"].startswith("postgres")
    )
    test = pg["healthcheck"]["test"]
    assert "pg_isready" in (test if isinstance(test, str) else " ".join(test))
    pg_env = compose_env(pg)

    for service in server_services(compose).values():
        assert service["depends_on"][pg_name]["condition"] == "service_healthy"
        url = make_url(compose_env(service)[ENV_PREFIX + "DB_URL"])
        assert url.get_backend_name() == "postgresql"
        assert url.host == pg_name and (url.port or 5432) == 5432
        assert url.username == pg_env["POSTGRES_USER"]
        assert url.password == pg_env["POSTGRES_PASSWORD"]
        assert url.database == pg_env["POSTGRES_DB"]

    # Backups run the image's pg_dump, which refuses a newer server: bookworm's is 15.
    base_image = dockerfile_instructions()[0][1].split()[0]
    if "bookworm" in base_image:
        major = int(re.match(r"postgres:(\d+)", pg["image"]).group(1))
        assert major <= 15


# ---------------------------------------------------------------- Kubernetes


def deployment() -> dict[str, Any]:
    docs = list(yaml.safe_load_all((RECIPES / "kubernetes.yaml").read_text()))
    (found,) = [d for d in docs if d and d.get("kind") == "Deployment"]
    return found


def test_kubernetes_migrates_in_an_init_container():
    spec = deployment()["spec"]
    assert spec["replicas"] == 3
    pod = spec["template"]["spec"]
    (init,) = pod["initContainers"]
    command = [*init.get("command", []), *init.get("args", [])]
    assert command == ["python", "-m", "orchestrator_migrate"]
    (server,) = pod["containers"]
    assert init["image"] == server["image"]

    for container in (init, server):
        env = env_list(container)
        ref = env[ENV_PREFIX + "DB_URL"]
        assert isinstance(ref, dict) and ref["secretKeyRef"]["name"] and ref["secretKeyRef"]["key"]
        mounted = {m["mountPath"] for m in container.get("volumeMounts", [])}
        assert env[ENV_PREFIX + "BASE_DIR"] in mounted
    assert (
        env_list(init)[ENV_PREFIX + "MIGRATION_TIMEOUT"]
        == env_list(server)[ENV_PREFIX + "MIGRATION_TIMEOUT"]
    )


def test_kubernetes_startup_budget_exceeds_the_migration_timeout():
    (server,) = deployment()["spec"]["template"]["spec"]["containers"]
    env = env_list(server)
    timeout_s = int(env[ENV_PREFIX + "MIGRATION_TIMEOUT"]) / 1000  # milliseconds
    lock_s = (
        int(env.get(ENV_PREFIX + "LOCK_TIMEOUT", Settings.model_fields["lock_timeout"].default))
        / 1000
    )
    assert timeout_s > 0, "MIGRATION_TIMEOUT=0 means no limit: no probe budget covers it"
    probe = server["startupProbe"]
    budget = probe.get("failureThreshold", 3) * probe.get("periodSeconds", 10)
    assert budget > timeout_s
    assert budget > timeout_s + lock_s  # what the recipe's header promises


@pytest.mark.parametrize("probe_name", ["readinessProbe", "startupProbe"])
def test_kubernetes_health_probe_fails_only_on_critical(tmp_path, probe_name):
    (server,) = deployment()["spec"]["template"]["spec"]["containers"]
    probe = server[probe_name]
    assert probe.get("timeoutSeconds", 1) >= 5, "a Python start does not fit in the default 1 s"
    command = probe["exec"]["command"]
    log = tmp_path / "calls"
    fake_tool(tmp_path / "bin", "python")
    verdicts = {}
    for rc in (0, 1, 2, 3):
        env = {
            **os.environ,
            "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "FAKE_LOG": str(log),
            "FAKE_HEALTH_RC": str(rc),
        }
        verdicts[rc] = subprocess.run(command, env=env, capture_output=True).returncode == 0
    assert verdicts == {0: True, 1: True, 2: False, 3: False}
    assert log.read_text().splitlines() == ["-m orchestrator_migrate health"] * 4


# ---------------------------------------------------------------- CI


def ci_job() -> tuple[dict[str, Any], dict[str, Any]]:
    workflow = load_yaml("ci-review.yml")
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert "pull_request" in (triggers if not isinstance(triggers, str) else [triggers])
    (job,) = workflow["jobs"].values()
    return workflow, job


def step_with(job: dict[str, Any], words: str) -> tuple[int, dict[str, Any]]:
    for index, step in enumerate(job["steps"]):
        for args in tool_invocations(step.get("run", "")):
            if " ".join(args).startswith(words):
                return index, step
    raise AssertionError(f"no step runs orchestrator-migrate {words}")


def run_step(workflow, job, step, tmp_path: Path, **rcs: int) -> subprocess.CompletedProcess:
    """Run a step's script as GitHub's runner does, with a stand-in orchestrator-migrate."""
    shell = step.get("shell") or (job.get("defaults") or {}).get("run", {}).get("shell")
    shell = shell or (workflow.get("defaults") or {}).get("run", {}).get("shell")
    script = tmp_path / "step.sh"
    script.write_text(step["run"])
    argv = {
        None: ["bash", "-e", str(script)],  # GitHub's default: no pipefail
        "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        "sh": ["sh", "-e", str(script)],
    }[shell]
    fake_tool(tmp_path / "bin", "orchestrator-migrate")
    env = {
        **os.environ,
        **{k: str(v) for k, v in (step.get("env") or {}).items()},
        "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "FAKE_LOG": str(tmp_path / "calls"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        **{f"FAKE_{k.upper()}_RC": str(v) for k, v in rcs.items()},
    }
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True)


def markdown_file(step: dict[str, Any]) -> str:
    """Where the plan step writes `plan --format markdown`."""
    for line in step["run"].splitlines():
        for args in tool_invocations(line):
            if args[:3] == ["plan", "--format", "markdown"]:
                match = re.search(r"plan --format markdown\s*>\s*(\S+)", line)
                assert match, f"the markdown is not written to a file: {line}"
                return match.group(1).strip("\"'")
    raise AssertionError("no plan --format markdown")


def test_ci_runs_check_rehearse_and_posts_the_markdown_plan():
    _, job = ci_job()
    steps = job["steps"]
    install = next(
        i for i, s in enumerate(steps) if re.search(r"pip install .*\.(\[|\s|$)", s.get("run", ""))
    )
    check_at, _ = step_with(job, "check")
    rehearse_at, _ = step_with(job, "rehearse")
    plan_at, plan_step = step_with(job, "plan --format markdown")
    assert install < check_at and install < rehearse_at and install < plan_at

    path = markdown_file(plan_step)
    posting = [
        (i, s)
        for i, s in enumerate(steps)
        if (
            s.get("uses", "").startswith("marocchino/sticky-pull-request-comment")
            and (s.get("with") or {}).get("path") == path
        )
        or re.search(rf"gh pr comment .*--body-file[ =]\"?{re.escape(path)}", s.get("run", ""))
    ]
    assert posting, f"no step posts {path} as a pull-request comment"
    assert posting[0][0] > plan_at
    permissions = {
        **(load_yaml("ci-review.yml").get("permissions") or {}),
        **(job.get("permissions") or {}),
    }
    assert permissions.get("pull-requests") == "write"


def test_every_tool_call_in_the_recipes_is_a_real_command():
    _, job = ci_job()
    scripts = [s.get("run", "") for s in job["steps"]]
    pod = deployment()["spec"]["template"]["spec"]
    for container in [*pod["initContainers"], *pod["containers"]]:
        scripts.append(shlex.join([*container.get("command", []), *container.get("args", [])]))
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe in container:
                scripts.extend(container[probe]["exec"]["command"])
    scripts.append(ENTRYPOINT.read_text())
    calls = [args for script in scripts for args in tool_invocations(script)]
    used = {command_of(args) for args in calls}
    assert used <= set(COMMANDS)
    assert {"run", "check", "rehearse", "plan", "health"} <= used


def test_every_setting_named_in_the_recipes_exists():
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    named = set()
    for path in RECIPES.iterdir():
        named |= set(re.findall(ENV_PREFIX + r"[A-Z0-9_]+", path.read_text(encoding="utf-8")))
    named = {n.rstrip("_") for n in named}
    assert ENV_PREFIX + "BASE_DIR" in named
    assert named <= known, f"not settings (ignored without a word): {named - known}"


def test_ci_check_step_fails_only_beyond_migration_needed(tmp_path):
    workflow, job = ci_job()
    _, step = step_with(job, "check")
    codes = {rc: run_step(workflow, job, step, tmp_path, check=rc).returncode for rc in range(6)}
    assert codes == {0: 0, 1: 0, 2: 2, 3: 3, 4: 4, 5: 5}


def test_ci_rehearse_failure_reaches_the_comment_and_fails_the_job(tmp_path):
    workflow, job = ci_job()
    rehearse_at, rehearse = step_with(job, "rehearse")
    # The step's exit code is rehearse's, also through a pipe (tee).
    assert run_step(workflow, job, rehearse, tmp_path, rehearse=0).returncode == 0
    assert run_step(workflow, job, rehearse, tmp_path, rehearse=4).returncode != 0
    assert rehearse.get("continue-on-error") is True, "the plan is posted after a failure"
    (tmp_path / "calls").unlink()

    # The plan step writes the tool's markdown, with the rehearsal's output when it failed.
    _, plan = step_with(job, "plan --format markdown")
    plan = {**plan, "env": {k: "failure" for k in plan.get("env", {})}}
    done = run_step(workflow, job, plan, tmp_path)
    assert done.returncode == 0, done.stderr
    body = (tmp_path / markdown_file(plan)).read_text()
    assert body.startswith("## fake plan: plan --format markdown")
    assert "fake rehearsal output" in body
    assert (tmp_path / "calls").read_text().splitlines() == ["plan --format markdown"]

    # A later step fails the job when the rehearsal failed.
    step_id = rehearse["id"]
    failing = [
        s
        for s in job["steps"][rehearse_at + 1 :]
        if re.search(rf"steps\.{step_id}\.outcome\s*==\s*'failure'", str(s.get("if", "")))
    ]
    assert failing and run_step(workflow, job, failing[0], tmp_path).returncode != 0
