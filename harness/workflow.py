"""GitHub Actions workflows run here: every `run:` step, in order, as a runner runs it.

What is real:
- The repository: a local bare git repository holding a snapshot of this working
  tree as `main` (`Repository`). Each job checks it out afresh into its own
  workspace at GITHUB_SHA, pushes go to it, and the workflow files are read from it
  at that commit, as GitHub reads them.
- Each `run:` script, under bash as GitHub runs it (`bash -e {0}`, or `bash
  --noprofile --norc -eo pipefail {0}` for `shell: bash`), with the variables a
  runner sets (CI, GITHUB_SHA, GITHUB_REF, GITHUB_REPOSITORY, GITHUB_WORKSPACE,
  GITHUB_EVENT_NAME, GITHUB_EVENT_PATH, GITHUB_ENV, GITHUB_OUTPUT, RUNNER_TEMP, ...)
  and the workflow's, job's and step's `env:`, whose `${{ }}` expressions are
  evaluated from the `github`, `inputs`, `secrets`, `vars`, `env`, `runner`,
  `steps` and `needs` contexts. Secrets and variables are the repository's merged
  with the job's environment's, as on GitHub; a missing one is the empty string.
- Jobs in `needs` order; a job whose needs failed is skipped.
- Triggers: `Runner.triggered` says which workflows a push to a branch starts,
  from their `on.push` branch, `paths` and `paths-ignore` filters and the files
  the push changed.

What is not (GitHub's, out of reach here):
- A `uses:` step runs only if USES knows what it stands for: actions/checkout is
  done with git (no token is stored, as with persist-credentials: false), and
  actions/setup-python is replaced by the project's own .venv (built by `make
  setup`, linked into the workspace and marked ready, so make does not rebuild it;
  building needs the network). Any other action is refused, so a new one is a
  decision made here.
- `gh` is a recorded fake (`Runner.pull_requests`): it needs GH_TOKEN, checks that
  the head branch was pushed, and opens nothing.
- Environment protection rules (required reviewers), `permissions:`,
  `concurrency:`, and secret masking: instead of masking, `WorkflowRun.leaked`
  lists the secrets whose value appears in any step's output. Expressions other
  than context look-ups, literals and `||`, and `if:`, matrices, reusable
  workflows, services and containers are refused rather than guessed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "flywheel-harness",
    "GIT_AUTHOR_EMAIL": "harness@flywheel.invalid",
    "GIT_COMMITTER_NAME": "flywheel-harness",
    "GIT_COMMITTER_EMAIL": "harness@flywheel.invalid",
}


class Unsupported(NotImplementedError):
    """Something in a workflow this harness will not pretend to run."""


# --- the repository ------------------------------------------------------------------


def _git(*args: str, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **GIT_IDENTITY, **(env or {})},
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def tracked_files(source: Path) -> list[str]:
    """The files of a working tree git would commit (tracked or new, not ignored)."""
    listed = _git("ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=source)
    return [name for name in listed.split("\0") if name and (source / name).is_file()]


class Repository:
    """The GitHub repository: a bare git repository whose `main` starts as a snapshot
    of `source`'s working tree (committed or not)."""

    def __init__(self, root: Path, source: Path = REPO) -> None:
        self.path = root / "origin.git"
        self.scratch = root / "scratch"
        _git("init", "--quiet", "--bare", "--initial-branch=main", str(self.path))
        seed = root / "seed"
        _git("init", "--quiet", "--initial-branch=main", str(seed))
        for name in tracked_files(source):
            target = seed / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target)
        _git("add", "--all", cwd=seed)
        _git("commit", "--quiet", "-m", "The working tree under test", cwd=seed)
        _git("push", "--quiet", str(self.path), "main", cwd=seed)
        shutil.rmtree(seed)

    def head(self, branch: str = "main") -> str:
        """The commit a branch points at."""
        return _git("rev-parse", f"refs/heads/{branch}", cwd=self.path).strip()

    def branches(self) -> list[str]:
        """Every branch, by name."""
        out = _git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=self.path)
        return sorted(out.split())

    def show(self, commit: str, path: str) -> str:
        """A file's text at a commit."""
        return _git("show", f"{commit}:{path}", cwd=self.path)

    def changed(self, before: str, after: str) -> list[str]:
        """The files that differ between two commits."""
        return _git("diff", "--name-only", before, after, cwd=self.path).split()

    def merge(self, branch: str, message: str) -> tuple[str, str]:
        """Merge `branch` into main with a merge commit, as GitHub's merge button does;
        return main's commit before and after."""
        before = self.head()
        if self.scratch.exists():
            shutil.rmtree(self.scratch)
        _git("clone", "--quiet", str(self.path), str(self.scratch))
        _git("merge", "--quiet", "--no-ff", "-m", message, f"origin/{branch}", cwd=self.scratch)
        _git("push", "--quiet", "origin", "main", cwd=self.scratch)
        return before, self.head()

    def commit(self, files: Mapping[str, str], message: str) -> tuple[str, str]:
        """Commit new contents of `files` straight to main; main before and after."""
        before = self.head()
        if self.scratch.exists():
            shutil.rmtree(self.scratch)
        _git("clone", "--quiet", str(self.path), str(self.scratch))
        for name, text in files.items():
            (self.scratch / name).write_text(text)
        _git("commit", "--quiet", "-am", message, cwd=self.scratch)
        _git("push", "--quiet", "origin", "main", cwd=self.scratch)
        return before, self.head()


# --- expressions ---------------------------------------------------------------------

_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_PATH = re.compile(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*")


def _operand(text: str, contexts: Mapping[str, Any]) -> Any:
    if re.fullmatch(r"'(?:[^']|'')*'", text):
        return text[1:-1].replace("''", "'")
    if text in ("true", "false"):
        return text == "true"
    if text == "null":
        return None
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return float(text) if "." in text else int(text)
    if not _PATH.fullmatch(text):
        raise Unsupported(f"expression {text!r}: only context look-ups, literals and ||")
    value: Any = contexts
    for part in text.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def evaluate(text: str, contexts: Mapping[str, Any]) -> str:
    """`text` with every `${{ }}` replaced by its value, as GitHub writes values into
    strings (a missing value is the empty string)."""

    def one(match: re.Match[str]) -> str:
        value: Any = None
        for operand in match.group(1).split("||"):
            value = _operand(operand.strip(), contexts)
            if value:  # `a || b`: the first truthy operand, else the last one
                break
        if value is None:
            return ""
        if isinstance(value, bool):
            return str(value).lower()
        return value if isinstance(value, str) else json.dumps(value)

    return _EXPRESSION.sub(one, text)


# --- triggers -----------------------------------------------------------------------


def _glob(pattern: str) -> re.Pattern[str]:
    """GitHub's filter pattern: `**` crosses `/`, `*` and `?` do not."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _any_match(patterns: Iterable[str], names: Iterable[str]) -> bool:
    compiled = [_glob(p) for p in patterns]
    return any(c.fullmatch(n) for c in compiled for n in names)


def load_workflow(text: str) -> dict[str, Any]:
    """A workflow file's mapping, with `on` as a key (YAML 1.1 reads it as True)."""
    data: dict[str, Any] = yaml.safe_load(text)
    if True in data:
        data["on"] = data.pop(True)
    return data


def push_triggers(workflow: Mapping[str, Any], branch: str, changed: list[str]) -> bool:
    """Whether a push of `changed` files to `branch` starts this workflow."""
    on = workflow.get("on")
    if isinstance(on, str):
        on = {on: None}
    elif isinstance(on, list):
        on = dict.fromkeys(on)
    if not isinstance(on, Mapping) or "push" not in on:
        return False
    filters = on["push"] or {}
    if "branches" in filters and not _any_match(filters["branches"], [branch]):
        return False
    if "branches-ignore" in filters and _any_match(filters["branches-ignore"], [branch]):
        return False
    if "branches" not in filters and "branches-ignore" not in filters and "tags" in filters:
        return False  # only tags: a branch push does not start it
    if "paths" in filters and not _any_match(filters["paths"], changed):
        return False
    ignored = filters.get("paths-ignore")
    return not (ignored and all(_any_match(ignored, [name]) for name in changed))


# --- results -------------------------------------------------------------------------

Outcome = Literal["success", "failure", "skipped"]


@dataclass
class StepResult:
    """One step: what ran (or what the harness did instead) and how it ended."""

    job: str
    name: str
    kind: Literal["run", "uses"]
    outcome: Outcome
    output: str = ""  # stdout and stderr, interleaved
    note: str = ""  # for a `uses:` step: what the harness did in its place


@dataclass
class JobResult:
    """One job's steps and how it ended."""

    name: str
    outcome: Outcome
    environment: str | None
    workspace: Path
    steps: list[StepResult] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class WorkflowRun:
    """One run of a workflow."""

    workflow: str
    event: str
    sha: str
    jobs: dict[str, JobResult]
    secrets: dict[str, str]  # every secret the run could read, by name

    @property
    def succeeded(self) -> bool:
        return all(job.outcome == "success" for job in self.jobs.values())

    def step(self, job: str, name: str) -> StepResult:
        """A step by its job and its name (or its action, for an unnamed `uses:` step)."""
        (found,) = [s for s in self.jobs[job].steps if s.name == name]
        return found

    def log(self) -> str:
        """Every step's output, headed by job and step, for assertion messages."""
        return "\n".join(
            f"--- {s.job} / {s.name}: {s.outcome} {s.note}\n{s.output[-4000:]}"
            for job in self.jobs.values()
            for s in job.steps
        )

    def leaked(self) -> list[str]:
        """The secrets whose value appears in some step's output (GitHub would mask them)."""
        outputs = [s.output for job in self.jobs.values() for s in job.steps]
        return sorted(
            name
            for name, value in self.secrets.items()
            if len(value) >= 6 and any(value in out for out in outputs)
        )


@dataclass(frozen=True)
class Environment:
    """A GitHub environment's own secrets and variables."""

    secrets: Mapping[str, str] = field(default_factory=dict)
    vars: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StepContext:
    """What a callback given to `Runner.run(during=...)` sees of the step it runs beside."""

    env: Mapping[str, str]
    workspace: Path
    process: subprocess.Popen[bytes]
    log: Path  # the step's output so far (stdout and stderr)

    def output(self) -> str:
        """What the step has printed so far."""
        return self.log.read_text(errors="replace")


During = Mapping[str, Callable[[StepContext], None]]


# --- uses: steps ----------------------------------------------------------------------


@dataclass
class _Job:
    name: str
    workspace: Path
    temp: Path
    ref: str
    sha: str


def _checkout(runner: Runner, job: _Job, step: Mapping[str, Any]) -> str:
    with_ = step.get("with") or {}
    unknown = set(with_) - {"persist-credentials"}
    if unknown or with_.get("persist-credentials") is not False:
        raise Unsupported(f"actions/checkout with {dict(with_)}: only persist-credentials: false")
    _git("clone", "--quiet", "--no-checkout", str(runner.repo.path), str(job.workspace))
    if job.ref.startswith("refs/heads/"):
        _git(
            "checkout",
            "--quiet",
            "-B",
            job.ref.removeprefix("refs/heads/"),
            job.sha,
            cwd=job.workspace,
        )
    else:
        _git("checkout", "--quiet", "--detach", job.sha, cwd=job.workspace)
    return f"cloned the repository at {job.sha[:12]} with git; no token stored"


def _setup_python(runner: Runner, job: _Job, step: Mapping[str, Any]) -> str:
    wanted = str((step.get("with") or {}).get("python-version", ""))
    config = dict(
        line.split(" = ", 1) for line in (runner.venv / "pyvenv.cfg").read_text().splitlines()
    )
    have = config.get("version", config.get("version_info", ""))
    if not wanted or not (have == wanted or have.startswith(f"{wanted}.")):
        raise Unsupported(f"setup-python {wanted!r}: the harness has Python {have} only")
    if not (job.workspace / ".git").is_dir():
        raise Unsupported(
            "setup-python before actions/checkout: the harness links .venv into a checkout"
        )
    # A directory of links to the project's .venv with its own fresh .ready: make sees
    # the environment as built, and nothing here can write into the real one's marker.
    linked = job.temp.parent / "venv"
    linked.mkdir()
    for entry in runner.venv.iterdir():
        if entry.name != ".ready":
            (linked / entry.name).symlink_to(entry)
    (linked / ".ready").touch()
    (job.workspace / ".venv").symlink_to(linked)
    return f"the project's .venv (Python {have}) linked into the workspace, ready"


USES: dict[str, Callable[[Runner, _Job, Mapping[str, Any]], str]] = {
    "actions/checkout": _checkout,
    "actions/setup-python": _setup_python,
}


# --- the fake gh ----------------------------------------------------------------------

_FAKE_GH = '''\
"""gh, as far as the workflows use it: `gh pr create` is recorded, nothing is opened."""
import hashlib, json, os, subprocess, sys

args = sys.argv[1:]
token = os.environ.get("GH_TOKEN", "")
if not token:
    sys.exit("gh: To use GitHub CLI in a GitHub Actions workflow, set the GH_TOKEN environment variable.")
if args[:2] != ["pr", "create"]:
    sys.exit(f"gh (harness fake): {' '.join(args)} is not faked")
options = dict(zip(args[2::2], args[3::2]))
head = options.get("--head", "")
pushed = subprocess.run(
    ["git", "ls-remote", "--exit-code", "origin", f"refs/heads/{head}"],
    capture_output=True,
).returncode == 0
if not pushed:
    sys.exit(f"pull request create failed: head branch {head!r} is not on the remote")
with open(os.environ["HARNESS_GH_LOG"], "a") as log:
    log.write(json.dumps({
        "args": args,
        "base": options.get("--base"),
        "head": head,
        "title": options.get("--title"),
        "body": options.get("--body"),
        "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
    }) + "\\n")
with open(os.environ["HARNESS_GH_LOG"]) as log:
    number = sum(1 for _ in log)
print(f"https://github.com/{os.environ['GITHUB_REPOSITORY']}/pull/{number}")
'''


# --- the runner ----------------------------------------------------------------------


class Runner:
    """Runs a repository's workflows here, one job after another."""

    def __init__(
        self,
        repo: Repository,
        work: Path,
        *,
        repository: str = "flywheel-mlops/flywheel",
        secrets: Mapping[str, str] | None = None,
        variables: Mapping[str, str] | None = None,
        environments: Mapping[str, Environment] | None = None,
        venv: Path = VENV,
    ) -> None:
        self.repo = repo
        self.work = work
        self.repository = repository
        self.secrets = dict(secrets or {})
        self.variables = dict(variables or {})
        self.environments = dict(environments or {})
        self.venv = venv
        self.github_token = f"ghs_harness{uuid.uuid4().hex}"
        self.bin = work / "bin"
        self.bin.mkdir(parents=True)
        gh = self.bin / "gh"
        gh.write_text(f"#!{sys.executable}\n{_FAKE_GH}")
        gh.chmod(0o755)
        self.gh_log = work / "gh.jsonl"
        self.home = work / "home"
        self.home.mkdir()
        self.count = 0

    # --- what GitHub would show ---

    def pull_requests(self) -> list[dict[str, Any]]:
        """Every pull request `gh pr create` was asked for, in order, with whether it
        carried the run's GITHUB_TOKEN."""
        if not self.gh_log.exists():
            return []
        wanted = hashlib.sha256(self.github_token.encode()).hexdigest()
        records = [json.loads(line) for line in self.gh_log.read_text().splitlines()]
        return [{**r, "with_github_token": r.pop("token_sha256") == wanted} for r in records]

    def triggered(self, before: str, after: str, branch: str = "main") -> list[str]:
        """The workflow files (at `after`) that a push moving `branch` from `before`
        to `after` starts."""
        changed = self.repo.changed(before, after)
        names = _git("ls-tree", "--name-only", f"{after}:.github/workflows", cwd=self.repo.path)
        return [
            name
            for name in names.split()
            if name.endswith((".yml", ".yaml"))
            and push_triggers(
                load_workflow(self.repo.show(after, f".github/workflows/{name}")), branch, changed
            )
        ]

    # --- running ---

    def run(
        self,
        workflow: str,
        *,
        event: str,
        sha: str | None = None,
        ref: str = "refs/heads/main",
        inputs: Mapping[str, str] | None = None,
        payload: Mapping[str, Any] | None = None,
        during: During | None = None,
    ) -> WorkflowRun:
        """Run `workflow` (a file name under .github/workflows, read at `sha`, main's head
        by default) for `event`. `during` maps a step's name to a callback run beside it
        while it runs (an operator's action)."""
        sha = sha or self.repo.head(ref.removeprefix("refs/heads/"))
        spec = load_workflow(self.repo.show(sha, f".github/workflows/{workflow}"))
        on = spec.get("on") or {}
        if event not in (on if isinstance(on, Mapping | list) else [on]):
            raise Unsupported(f"{workflow} is not triggered by {event}")
        self.count += 1
        run_dir = self.work / f"run-{self.count}-{workflow.rsplit('.', 1)[0]}"
        run_dir.mkdir()
        declared = ((on.get(event) or {}) if isinstance(on, Mapping) else {}).get("inputs") or {}
        resolved_inputs = {
            name: (inputs or {}).get(name, str(spec_.get("default", "")))
            for name, spec_ in declared.items()
        }
        missing = [n for n, s in declared.items() if s.get("required") and not resolved_inputs[n]]
        if missing:
            raise ValueError(f"{workflow}: required inputs missing: {missing}")
        event_payload = {
            **(payload or {}),
            "ref": ref,
            "repository": {"full_name": self.repository},
            **({"inputs": resolved_inputs} if event == "workflow_dispatch" else {}),
        }
        (run_dir / "event.json").write_text(json.dumps(event_payload))
        github = {
            "sha": sha,
            "ref": ref,
            "ref_name": ref.rsplit("/", 1)[-1],
            "ref_type": "tag" if ref.startswith("refs/tags/") else "branch",
            "repository": self.repository,
            "repository_owner": self.repository.split("/")[0],
            "event_name": event,
            "event": event_payload,
            "actor": "flywheel-harness",
            "workflow": spec.get("name", workflow),
            "run_id": str(self.count),
            "run_number": str(self.count),
            "run_attempt": "1",
            "server_url": "https://github.com",
            "api_url": "https://api.github.com",
            "token": self.github_token,
        }
        for key in ("defaults",):
            if key in spec:
                raise Unsupported(f"{workflow}: workflow-level {key}")
        jobs: dict[str, JobResult] = {}
        readable: dict[str, str] = {"GITHUB_TOKEN": self.github_token}
        for name in _job_order(spec["jobs"]):
            job = spec["jobs"][name]
            result = self._job(
                workflow,
                spec,
                name,
                job,
                github,
                resolved_inputs,
                jobs,
                run_dir,
                readable,
                during or {},
            )
            jobs[name] = result
        return WorkflowRun(workflow=workflow, event=event, sha=sha, jobs=jobs, secrets=readable)

    def _job(
        self,
        workflow: str,
        spec: Mapping[str, Any],
        name: str,
        job: Mapping[str, Any],
        github: Mapping[str, Any],
        inputs: Mapping[str, str],
        done: Mapping[str, JobResult],
        run_dir: Path,
        readable: dict[str, str],
        during: During,
    ) -> JobResult:
        for key in ("if", "uses", "strategy", "services", "container", "defaults"):
            if key in job:
                raise Unsupported(f"{workflow} job {name}: {key}")
        needs = job.get("needs") or []
        needs = [needs] if isinstance(needs, str) else list(needs)
        job_dir = run_dir / name
        workspace, temp = job_dir / "workspace", job_dir / "temp"
        temp.mkdir(parents=True)
        environment = job.get("environment")
        if isinstance(environment, Mapping):
            environment = environment.get("name")
        base_contexts = {
            "github": {**github, "job": name, "workspace": str(workspace)},
            "inputs": inputs,
            "needs": {n: {"result": done[n].outcome, "outputs": done[n].outputs} for n in needs},
            "runner": {"os": "Linux", "arch": "X64", "temp": str(temp)},
        }
        if environment is not None:
            environment = evaluate(str(environment), base_contexts)
        result = JobResult(
            name=name, outcome="success", environment=environment, workspace=workspace
        )
        if any(done[n].outcome != "success" for n in needs):
            result.outcome = "skipped"
            return result
        own = self.environments.get(environment or "", Environment())
        secrets = {**self.secrets, **own.secrets, "GITHUB_TOKEN": self.github_token}
        readable.update(secrets)
        contexts: dict[str, Any] = {
            **base_contexts,
            "secrets": secrets,
            "vars": {**self.variables, **own.vars},
            "steps": {},
        }
        files = {
            n: temp / f"_{n.lower()}"
            for n in ("GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_PATH")
        }
        runner_env = {
            "PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKFLOW": str(github["workflow"]),
            "GITHUB_JOB": name,
            "GITHUB_RUN_ID": str(github["run_id"]),
            "GITHUB_RUN_NUMBER": str(github["run_number"]),
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_SHA": str(github["sha"]),
            "GITHUB_REF": str(github["ref"]),
            "GITHUB_REF_NAME": str(github["ref_name"]),
            "GITHUB_REF_TYPE": str(github["ref_type"]),
            "GITHUB_REPOSITORY": self.repository,
            "GITHUB_REPOSITORY_OWNER": str(github["repository_owner"]),
            "GITHUB_EVENT_NAME": str(github["event_name"]),
            "GITHUB_EVENT_PATH": str(run_dir / "event.json"),
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_ACTOR": str(github["actor"]),
            "GITHUB_SERVER_URL": str(github["server_url"]),
            "GITHUB_API_URL": str(github["api_url"]),
            "RUNNER_OS": "Linux",
            "RUNNER_ARCH": "X64",
            "RUNNER_TEMP": str(temp),
            "HARNESS_GH_LOG": str(self.gh_log),
            **{n: str(p) for n, p in files.items()},
        }
        env: dict[str, str] = {}
        for layer in (spec.get("env") or {}, job.get("env") or {}):
            for key, value in layer.items():
                env[key] = evaluate(str(value), {**contexts, "env": env})
        timeout = float(job.get("timeout-minutes", 360)) * 60
        this = _Job(
            name=name,
            workspace=workspace,
            temp=temp,
            ref=str(github["ref"]),
            sha=str(github["sha"]),
        )
        workspace.mkdir()
        for index, step in enumerate(job.get("steps") or []):
            label = step.get("name") or step.get("uses") or f"step {index + 1}"
            if result.outcome == "failure":
                result.steps.append(
                    StepResult(name, label, "run" if "run" in step else "uses", "skipped")
                )
                continue
            if "if" in step:
                raise Unsupported(f"{workflow} {name} / {label}: if")
            if "uses" in step:
                action = step["uses"].split("@", 1)[0]
                if action not in USES:
                    raise Unsupported(
                        f"{workflow} {name} / {label}: the action {action} cannot run here"
                    )
                note = USES[action](self, this, step)
                result.steps.append(StepResult(name, label, "uses", "success", note=note))
                continue
            step_env = dict(env)
            for key, value in (step.get("env") or {}).items():
                step_env[key] = evaluate(str(value), {**contexts, "env": env})
            outcome, output = self._script(
                step, {**runner_env, **step_env}, workspace, temp, timeout, during.get(label)
            )
            env.update(_read_pairs(files["GITHUB_ENV"]))
            files["GITHUB_ENV"].write_text("")
            outputs = _read_pairs(files["GITHUB_OUTPUT"])
            files["GITHUB_OUTPUT"].write_text("")
            if "id" in step:
                contexts["steps"][step["id"]] = {"outputs": outputs, "outcome": outcome}
            result.steps.append(StepResult(name, label, "run", outcome, output))
            if outcome == "failure":
                result.outcome = "failure"
        if result.outcome == "success":
            result.outputs = {
                k: evaluate(str(v), {**contexts, "env": env})
                for k, v in (job.get("outputs") or {}).items()
            }
        return result

    def _script(
        self,
        step: Mapping[str, Any],
        env: Mapping[str, str],
        workspace: Path,
        temp: Path,
        timeout: float,
        beside: Callable[[StepContext], None] | None,
    ) -> tuple[Outcome, str]:
        shell = step.get("shell")
        if shell is None:
            command = ["bash", "-e"]
        elif shell == "bash":
            command = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]
        else:
            raise Unsupported(f"shell: {shell}")
        if "${{" in step["run"]:
            raise Unsupported("an expression inside a run script (the workflows keep them out)")
        script = temp / f"step-{uuid.uuid4().hex[:8]}.sh"
        script.write_text(step["run"])
        cwd = workspace / step.get("working-directory", ".")
        log = temp / f"{script.stem}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*command, str(script)],
                cwd=cwd,
                env=dict(env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                if beside is not None:
                    beside(StepContext(env=env, workspace=workspace, process=process, log=log))
                code = process.wait(timeout)
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, 9)
                    process.wait()
        return ("success" if code == 0 else "failure"), log.read_text(errors="replace")


def _job_order(jobs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Job names so that each comes after every job it needs (file order otherwise)."""
    order: list[str] = []
    pending = list(jobs)
    while pending:
        for name in pending:
            needs = jobs[name].get("needs") or []
            needs = [needs] if isinstance(needs, str) else needs
            if all(n in order for n in needs):
                order.append(name)
                pending.remove(name)
                break
        else:
            raise ValueError(f"jobs with unmet or circular needs: {pending}")
    return order


def _read_pairs(path: Path) -> dict[str, str]:
    """NAME=value and NAME<<DELIMITER lines, as steps write GITHUB_ENV and GITHUB_OUTPUT."""
    if not path.exists():
        return {}
    pairs: dict[str, str] = {}
    lines = iter(path.read_text().splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delimiter = line.split("<<", 1)
            value = []
            for body in lines:
                if body == delimiter:
                    break
                value.append(body)
            pairs[key] = "\n".join(value)
        elif "=" in line:
            key, value_ = line.split("=", 1)
            pairs[key] = value_
    return pairs
