"""GitRevert against real repositories in tmp_path: a bare "origin" and a developer's clone.

git runs with no global or system config. A ``git`` wrapper first on PATH records each command
line the provider runs and can push for someone else just before the provider's push.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response

from watchdog.clock import ManualClock
from watchdog.errors import ConfigError, RollbackError
from watchdog.providers.base import ProviderDeployment, Rollback
from watchdog.providers.git import GitRevert
from watchdog.sandbox.server import serve
from watchdog.secrets import Secret
from watchdog.settings import GitProvider

T0 = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)
AUTHOR = "rollback-watchdog <rollback-watchdog@localhost>"
TOKEN = "ghp_s3cr3tT0kenThatMustNeverShow"
REAL_GIT = shutil.which("git") or "git"
WRAPPER = """#!/bin/sh
printf '%s\\n' "$*" >> "$ARGV_LOG"
case " $* " in *" push "*) if [ -n "$BEFORE_PUSH" ]; then sh -c "$BEFORE_PUSH"; fi ;; esac
exec {git} "$@"
"""

Make = Callable[..., GitRevert]


def git(cwd: Path, *args: str) -> str:
    """Run git as a developer would (its own identity, never the provider's wrapper)."""
    who = ("-c", "user.name=Dev", "-c", "user.email=dev@example.com")
    done = subprocess.run(
        [REAL_GIT, *who, *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.strip()


@dataclass
class Repo:
    remote: Path  # the bare repository everyone pushes to
    dev: Path  # a developer's clone

    def commit(self, message: str, **files: str) -> str:
        for name, text in files.items():
            (self.dev / name).write_text(text)
        git(self.dev, "add", "--all")
        git(self.dev, "commit", "--quiet", "--allow-empty", "-m", message)
        git(self.dev, "push", "--quiet", "origin", "HEAD:refs/heads/main")
        return git(self.dev, "rev-parse", "HEAD")

    def head(self) -> str:
        return git(self.remote, "rev-parse", "refs/heads/main")

    def tree(self, rev: str) -> str:
        return git(self.remote, "rev-parse", f"{rev}^{{tree}}")

    def show(self, rev: str, format: str) -> str:
        return git(self.remote, "show", "-s", f"--format={format}", rev)

    def is_ancestor(self, older: str, newer: str) -> bool:
        check = [REAL_GIT, "merge-base", "--is-ancestor", older, newer]
        return subprocess.run(check, cwd=self.remote, check=False, timeout=30).returncode == 0


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No machine git config, no inherited repository; the wrapper first on PATH."""
    for name in [n for n in os.environ if n.startswith("GIT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Someone Else")  # the provider must not take it
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").write_text(WRAPPER.format(git=REAL_GIT))
    (bin_dir / "git").chmod(0o755)
    argv_log = tmp_path / "argv.log"
    argv_log.touch()
    monkeypatch.setenv("ARGV_LOG", str(argv_log))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    return argv_log


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    remote, dev = tmp_path / "remote.git", tmp_path / "dev"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(remote))
    git(tmp_path, "clone", "--quiet", str(remote), str(dev))
    git(dev, "symbolic-ref", "HEAD", "refs/heads/main")
    return Repo(remote, dev)


@pytest.fixture
def history(repo: Repo) -> dict[str, str]:
    """base → good → bad, all pushed."""
    return {
        "base": repo.commit("base", **{"app.txt": "v1\n", "README": "acme\n"}),
        "good": repo.commit("good", **{"app.txt": "v2\n"}),
        "bad": repo.commit("bad", **{"app.txt": "v3 broken\n", "bug.txt": "oops\n"}),
    }


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "git"


@pytest.fixture
def make(repo: Repo, workdir: Path) -> Make:
    def build(**overrides: Any) -> GitRevert:
        fields = {"kind": "git", "repository": str(repo.remote), "workdir": workdir}
        config = GitProvider(**(fields | {"author": AUTHOR} | overrides))
        return GitRevert(config, ManualClock(T0))

    return build


def race(monkeypatch: pytest.MonkeyPatch, repo: Repo) -> None:
    """Someone pushes a hotfix between the provider's fetch and its push."""
    hotfix = f"{REAL_GIT} -c user.name=Other -c user.email=other@example.com"
    monkeypatch.setenv(
        "BEFORE_PUSH",
        f"cd {repo.dev} && {hotfix} commit -q --allow-empty -m hotfix "
        f"&& {REAL_GIT} push -q origin HEAD:refs/heads/main",
    )


def commands(argv_log: Path) -> str:
    """Every command line the provider ran so far."""
    return argv_log.read_text()


def assert_clean(workdir: Path, at: str) -> None:
    assert git(workdir, "status", "--porcelain") == ""
    assert git(workdir, "rev-parse", "HEAD") == at
    assert not (workdir / ".git" / "sequencer").exists()


async def good_of(provider: GitRevert) -> ProviderDeployment:
    found = await provider.known_good(await provider.live())
    assert found is not None
    return found


async def test_live_is_the_head_and_known_good_its_first_parent(
    make: Make, history: dict[str, str]
) -> None:
    provider = make()
    live = await provider.live()
    assert (live.id, live.release, live.live) == (history["bad"], history["bad"], True)
    assert live.created_at.tzinfo is not None
    good = await good_of(provider)
    assert (good.id, good.release, good.live) == (history["good"], history["good"], False)
    base = await provider.known_good(good)
    assert base is not None
    assert base.id == history["base"]
    assert await provider.known_good(base) is None


async def test_rollback_reverts_the_bad_commit_and_pushes_without_rewriting_history(
    make: Make, repo: Repo, history: dict[str, str], workdir: Path
) -> None:
    provider = make()
    good = await good_of(provider)
    assert not await provider.is_serving(good)

    done = await provider.rollback(good, "error rate 12% > 5%")

    head = repo.head()
    assert done.handle == head
    assert "reverted" in done.notes[0]
    assert repo.show(head, "%P") == history["bad"]
    assert repo.is_ancestor(history["bad"], head)
    assert repo.tree(head) == repo.tree(history["good"])
    message = repo.show(head, "%B")
    assert f"This reverts commit {history['bad']}." in message
    assert "error rate 12% > 5%" in message
    assert repo.show(head, "%an <%ae>") == AUTHOR
    assert repo.show(head, "%ct %at") == f"{int(T0.timestamp())} {int(T0.timestamp())}"
    assert_clean(workdir, head)

    assert await provider.is_serving(good)
    again = await provider.rollback(good, "error rate 12% > 5%")
    assert (again.handle, again.notes, repo.head()) == (head, ("nothing to revert",), head)


async def test_every_bad_commit_is_reverted_unless_already_reverted(
    make: Make, repo: Repo, history: dict[str, str]
) -> None:
    worse = repo.commit("worse", **{"app.txt": "v4 broken\n"})
    git(repo.dev, "revert", "--no-edit", worse)
    git(repo.dev, "push", "--quiet", "origin", "HEAD:refs/heads/main")
    reverted_by_hand = git(repo.dev, "rev-parse", "HEAD")
    good = ProviderDeployment(history["good"], history["good"], T0, "commit", False)

    await make().rollback(good, "drill")

    head = repo.head()
    assert repo.show(head, "%P") == reverted_by_hand
    assert f"This reverts commit {history['bad']}." in repo.show(head, "%B")
    assert repo.tree(head) == repo.tree(history["good"])


async def test_a_merge_commit_is_reverted_against_its_first_parent(
    make: Make, repo: Repo, history: dict[str, str]
) -> None:
    git(repo.dev, "reset", "--quiet", "--hard", history["good"])
    git(repo.dev, "push", "--quiet", "--force", "origin", "HEAD:refs/heads/main")
    git(repo.dev, "checkout", "--quiet", "-b", "feature")
    features = [repo.commit(f"feature {n}", **{f"f{n}.txt": "new\n"}) for n in (1, 2)]
    git(repo.dev, "checkout", "--quiet", "main")
    git(repo.dev, "merge", "--quiet", "--no-ff", "-m", "merge feature", "feature")
    git(repo.dev, "push", "--quiet", "origin", "HEAD:refs/heads/main")
    merge = repo.head()
    provider = make()
    good = await good_of(provider)
    assert good.id == history["good"]

    side = ProviderDeployment(features[0], features[0], T0, "commit", False)
    with pytest.raises(RollbackError, match="not on the first-parent history") as caught:
        await provider.rollback(side, "drill")
    assert caught.value.reached is False
    assert repo.head() == merge

    await provider.rollback(good, "drill")

    head = repo.head()
    assert repo.show(head, "%P") == merge
    assert f"This reverts commit {merge}, reversing" in repo.show(head, "%B")
    assert repo.tree(head) == repo.tree(history["good"])
    assert all(repo.is_ancestor(sha, head) for sha in features)


async def test_a_push_someone_made_meanwhile_refuses_ours_and_the_clone_is_reset(
    make: Make,
    repo: Repo,
    history: dict[str, str],
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = make()
    good = await good_of(provider)
    race(monkeypatch, repo)
    with pytest.raises(RollbackError, match="rejected") as caught:
        await provider.rollback(good, "drill")
    assert caught.value.reached is True
    assert repo.show(repo.head(), "%s %P") == f"hotfix {history['bad']}"
    assert_clean(workdir, history["bad"])


async def test_a_protected_branch_refuses_the_push(
    make: Make, repo: Repo, history: dict[str, str], workdir: Path
) -> None:
    hook = repo.remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'protected branch: main needs a review' >&2\nexit 1\n")
    hook.chmod(0o755)
    provider = make()
    with pytest.raises(RollbackError, match="protected branch: main needs a review"):
        await provider.rollback(await good_of(provider), "drill")
    assert repo.head() == history["bad"]
    assert_clean(workdir, history["bad"])


async def test_force_push_resets_and_pushes_with_a_lease(
    make: Make, repo: Repo, history: dict[str, str], isolated: Path
) -> None:
    provider = make(allow_force_push=True)
    good = await good_of(provider)

    done = await provider.rollback(good, "drill")

    assert repo.head() == done.handle == history["good"]
    assert "force-pushed" in done.notes[0]
    assert f"--force-with-lease=refs/heads/main:{history['bad']}" in commands(isolated)
    assert await provider.is_serving(good)


async def test_the_lease_refuses_to_overwrite_a_push_nobody_saw(
    make: Make, repo: Repo, history: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = make(allow_force_push=True)
    good = await good_of(provider)
    race(monkeypatch, repo)
    with pytest.raises(RollbackError, match="stale info"):
        await provider.rollback(good, "drill")
    assert repo.show(repo.head(), "%s") == "hotfix"


async def test_the_clone_is_brought_back_to_the_remote_branch(
    make: Make, history: dict[str, str], workdir: Path
) -> None:
    provider = make()
    await provider.live()
    (workdir / "app.txt").write_text("local edit\n")
    (workdir / "stray.txt").write_text("junk\n")
    git(workdir, "commit", "--quiet", "--allow-empty", "-m", "local only")
    assert (await provider.live()).id == history["bad"]
    assert_clean(workdir, history["bad"])


async def test_wait_live_returns_at_once(make: Make, history: dict[str, str]) -> None:
    to = ProviderDeployment(history["good"], history["good"], T0, "commit", False)
    await make().wait_live(Rollback(to=to), timedelta(0))


@pytest.mark.parametrize("bad_id", ["--upload-pack=touch pwned", "main", "0" * 40])
async def test_an_id_that_is_not_a_known_commit_is_refused(
    make: Make, history: dict[str, str], bad_id: str, repo: Repo, isolated: Path
) -> None:
    to = ProviderDeployment(bad_id, None, T0, "commit", False)
    with pytest.raises(RollbackError) as caught:
        await make().rollback(to, "drill")
    assert (caught.value.reached, caught.value.deployment_id) == (False, bad_id)
    assert repo.head() == history["bad"]
    assert "pwned" not in commands(isolated)


async def test_check_proves_access_to_the_branch(
    make: Make, history: dict[str, str], tmp_path: Path
) -> None:
    await make().check()
    assert "clone" not in commands(tmp_path / "argv.log")  # a check changes nothing
    with pytest.raises(ConfigError, match="no branch release"):
        await make(branch="release").check()
    with pytest.raises(ConfigError, match="ls-remote failed"):
        await make(repository=str(tmp_path / "missing.git")).check()


@pytest.fixture
def seen_auth() -> Iterator[tuple[str, list[str | None]]]:
    """A git host that refuses everyone, remembering the Authorization header it was sent."""
    seen: list[str | None] = []
    app = FastAPI()

    @app.get("/{path:path}")
    async def refuse(request: Request, path: str) -> Response:
        seen.append(request.headers.get("authorization"))
        return Response(status_code=403)

    with serve(app) as url:
        yield url, seen


async def test_a_token_goes_in_a_header_and_never_in_arguments_or_errors(
    make: Make, seen_auth: tuple[str, list[str | None]], isolated: Path
) -> None:
    url, seen = seen_auth
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    provider = make(repository=f"{url}/acme/api.git", token=Secret(TOKEN))
    with pytest.raises(ConfigError, match="403") as checked:
        await provider.check()
    with pytest.raises(RollbackError) as lived:
        await provider.live()
    assert seen
    assert set(seen) == {f"Basic {basic}"}
    for text in (str(checked.value), str(lived.value), commands(isolated)):
        assert TOKEN not in text
        assert basic not in text


async def test_credentials_written_into_the_url_are_redacted(make: Make) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"https://x-access-token:{TOKEN}@127.0.0.1:{port}/acme/api.git"
    with pytest.raises(ConfigError) as caught:
        await make(repository=url, token=Secret(TOKEN)).check()
    assert TOKEN not in str(caught.value)
    assert "://***@127.0.0.1" in str(caught.value)
