"""Git: roll back by reverting the bad commits on the deploy branch and pushing, the runbook's
"Method 2: Via Git Revert" (``api-contracts.md`` §7.2); the platform then deploys the push.

A "deployment" is a commit. History is only rewritten when ``allow_force_push`` asks for the
runbook's Method 3 (reset + force push), and then with a lease, so a push nobody here saw is
never overwritten. git runs without a shell; a token travels in the environment
(``GIT_CONFIG_*``), never in arguments, and is scrubbed from every message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
from asyncio.subprocess import DEVNULL, PIPE
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from email.utils import parseaddr
from pathlib import Path

from watchdog.clock import Clock
from watchdog.durations import format_duration
from watchdog.errors import ConfigError, RollbackError
from watchdog.providers.base import ProviderDeployment, Rollback
from watchdog.settings import GitProvider

TIMEOUT = timedelta(minutes=2)
"""The longest one git command (a clone, a fetch, a push) may take."""

_SHA = re.compile(r"[0-9a-f]{7,64}")
_REVERTS = re.compile(r"^This reverts commit ([0-9a-f]{40,64})\b", re.MULTILINE)
_CREDENTIALS = re.compile(r"://[^/@\s]+@")
# Inherited variables that would point git at another repository or identity (hooks set some).
_DROPPED = re.compile(
    r"GIT_(DIR|WORK_TREE|INDEX_FILE|OBJECT_DIRECTORY|COMMON_DIR|AUTHOR_.*|COMMITTER_.*)"
)


class _Abort(Exception):
    """A step that cannot go on (redacted message); ``code`` is git's exit status, if any."""

    def __init__(self, message: str, code: int = 0) -> None:
        self.code = code
        super().__init__(message)


class GitRevert:
    """One branch of one repository, through a working clone only the watchdog uses."""

    name = "git"

    def __init__(self, config: GitProvider, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._workdir = config.workdir.absolute()
        self._branch = config.branch
        self._repository = config.repository
        if "://" not in self._repository and Path(self._repository).exists():
            # a relative path would mean something else from inside the clone
            self._repository = str(Path(self._repository).absolute())
        name, email = parseaddr(config.author)
        if not name or "@" not in email:
            raise ConfigError(f"git: author: expected 'Name <email>', found {config.author!r}")
        # the robot's own clone: its identity, no signing key to ask for, no hooks, no hints
        settings = (f"user.name={name}", f"user.email={email}", "commit.gpgSign=false")
        quiet = ("core.hooksPath=/dev/null", "advice.pushUpdateRejected=false")
        self._options = tuple(arg for setting in (*settings, *quiet) for arg in ("-c", setting))
        self._lock = asyncio.Lock()  # one command at a time in the clone

    async def check(self) -> None:
        ref = f"refs/heads/{self._branch}"
        try:
            await self._git("ls-remote", "--exit-code", self._repository, ref, cwd=Path.cwd())
        except _Abort as exc:
            found = f"no branch {self._branch}" if exc.code == 2 else str(exc)
            raise ConfigError(f"git: {self._redact(self._repository)}: {found}") from None

    async def live(self) -> ProviderDeployment:
        async with self._lock, self._failing(None):
            await self._sync()
            return await self._commit("HEAD", live=True)

    async def known_good(self, before: ProviderDeployment) -> ProviderDeployment | None:
        """The first parent of ``before``: what the branch was before it (None for a root)."""
        async with self._lock, self._failing(before.id):
            await self._sync()
            parents = (await self._git("show", "-s", "--format=%P", self._rev(before.id))).split()
            return await self._commit(parents[0], live=False) if parents else None

    async def is_serving(self, to: ProviderDeployment) -> bool:
        """Whether the branch's files are ``to``'s, whatever commits got them there: after a
        revert or a reset, a second rollback finds nothing to send."""
        async with self._lock, self._failing(to.id):
            await self._sync()
            return await self._same_tree(self._rev(to.id))

    async def rollback(self, to: ProviderDeployment, reason: str) -> Rollback:
        async with self._lock:
            async with self._failing(to.id):
                await self._sync()
                target = await self._git("rev-parse", "--verify", self._rev(to.id))
                head = await self._git("rev-parse", "HEAD")
                if target != await self._git("merge-base", target, head):
                    raise _Abort(f"{target} is not in the history of {self._branch}")
                lease: tuple[str, ...] = ()
                if self._config.allow_force_push:
                    await self._git("reset", "--quiet", "--hard", target)
                    lease = (f"--force-with-lease=refs/heads/{self._branch}:{head}",)
                    note = f"{self._branch} was force-pushed back to {target}: reset every clone"
                else:
                    await self._revert(target, reason)
                    note = f"the bad commits were reverted on {self._branch}; history is unchanged"
                pushed = await self._git("rev-parse", "HEAD")
            if pushed == head:
                return Rollback(to=to, handle=head, notes=("nothing to revert",))
            try:
                await self._git("push", "-q", *lease, "origin", f"HEAD:refs/heads/{self._branch}")
            except _Abort as exc:
                with contextlib.suppress(_Abort):  # else the next _sync throws it away
                    await self._discard()
                why = "someone pushed meanwhile, or the branch is protected"
                message = f"push to {self._branch} rejected or failed ({why}); clone reset: {exc}"
                raise RollbackError(self.name, to.id, message) from None
            return Rollback(to=to, handle=pushed, notes=(note,))

    async def wait_live(self, rollback: Rollback, timeout: timedelta) -> None:
        """Returns at once: the platform deploys the push; its provider or the signals watch it."""

    async def _revert(self, to: str, reason: str) -> None:
        """Revert, newest first, each commit of the branch after ``to`` (a merge against its
        first parent) unless a later commit already reverted it; the result must be ``to``'s
        tree."""
        log = await self._git("log", "--first-parent", "--format=%x1e%H %P%x1f%B", f"{to}..HEAD")
        commits = [entry.split("\x1f", 1) for entry in log.split("\x1e") if entry.strip()]
        lines = [line.split() for line, _ in commits]
        if lines and lines[-1][1:2] != [to]:
            raise _Abort(f"{to} is not on the first-parent history of {self._branch}")
        shas = {line[0] for line in lines}
        undone: set[str] = set()
        for (sha, *parents), (_, message) in zip(lines, commits, strict=True):
            reverted = _REVERTS.search(message)
            if sha in undone:
                continue
            if reverted and reverted[1] in shas:
                undone.add(reverted[1])  # the pair cancels out: neither is sent again
                continue
            await self._git("revert", "--no-edit", *(("-m", "1") if len(parents) > 1 else ()), sha)
            text = await self._git("log", "-1", "--format=%B")
            note = f"{text}\n\nRolled back by rollback-watchdog: {reason}\n"
            await self._git("commit", "--quiet", "--amend", "--file=-", stdin=note)
        if not await self._same_tree(to):
            raise _Abort(f"reverting did not give {to}'s files back (an edited revert?)")

    async def _sync(self) -> None:
        """Make the clone the remote branch (cloning it first), throwing away what failures left."""
        if (self._workdir / ".git").is_dir():
            await self._git("remote", "set-url", "origin", self._repository)
            refspec = f"+refs/heads/{self._branch}:refs/remotes/origin/{self._branch}"
            await self._git("fetch", "--quiet", "--no-tags", "origin", refspec)
        else:
            self._workdir.parent.mkdir(parents=True, exist_ok=True)
            clone = ("clone", "--quiet", "--no-tags", "--branch", self._branch, "--")
            await self._git(*clone, self._repository, str(self._workdir), cwd=Path.cwd())
        await self._discard()

    async def _discard(self) -> None:
        await self._git("revert", "--quit")
        origin = f"refs/remotes/origin/{self._branch}"
        await self._git("checkout", "--quiet", "--force", "-B", self._branch, origin)
        await self._git("clean", "-ffdxq")

    async def _same_tree(self, rev: str) -> bool:
        trees = await self._git("rev-parse", "HEAD^{tree}", f"{rev}^{{tree}}")
        return len(set(trees.split())) == 1

    async def _commit(self, rev: str, *, live: bool) -> ProviderDeployment:
        sha, date = (await self._git("show", "-s", "--format=%H %cI", rev)).split()
        return ProviderDeployment(sha, sha, datetime.fromisoformat(date), "commit", live)

    def _rev(self, sha: str) -> str:
        """A commit id as a revision, refusing anything git could read as an option or a ref."""
        if not _SHA.fullmatch(sha):
            raise RollbackError(self.name, sha, f"not a commit sha: {sha!r}", reached=False)
        return f"{sha}^{{commit}}"

    @contextlib.asynccontextmanager
    async def _failing(self, deployment_id: str | None) -> AsyncIterator[None]:
        """Failures before a push: nothing reached the remote, and the clone is reset."""
        try:
            yield
        except _Abort as exc:
            with contextlib.suppress(_Abort):  # else the next _sync throws it away
                await self._discard()
            raise RollbackError(self.name, deployment_id, str(exc), reached=False) from None

    async def _git(self, *args: str, cwd: Path | None = None, stdin: str | None = None) -> str:
        """Run git in the clone (or ``cwd``) and return its output."""
        feed = DEVNULL if stdin is None else PIPE
        try:
            process = await asyncio.create_subprocess_exec(
                *("git", *self._options, *args),
                cwd=cwd or self._workdir,
                env=self._env(),
                stdin=feed,
                stdout=PIPE,
                stderr=PIPE,
            )
        except OSError as exc:
            raise _Abort(f"cannot run git: {exc}") from None
        try:
            async with asyncio.timeout(TIMEOUT.total_seconds()):
                out, err = await process.communicate(None if stdin is None else stdin.encode())
        except TimeoutError:
            raise _Abort(f"git {args[0]}: no answer in {format_duration(TIMEOUT)}") from None
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        if process.returncode:
            detail = self._redact(err.decode(errors="replace").strip())
            raise _Abort(
                f"git {args[0]} failed ({process.returncode}): {detail}", process.returncode
            )
        return out.decode(errors="replace").strip()

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not _DROPPED.fullmatch(k)}
        when = f"@{int(self._clock.now().timestamp())} +0000"  # the revert's dates: our clock
        env |= {"GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
        # never climb out of the clone into a repository around it (.watchdog/git is in one)
        env["GIT_CEILING_DIRECTORIES"] = str(self._workdir.parent)
        if self._config.token is not None:
            env |= {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader"}
            env["GIT_CONFIG_VALUE_0"] = f"Authorization: Basic {self._basic()}"
        return env

    def _basic(self) -> str:
        assert self._config.token is not None
        pair = f"x-access-token:{self._config.token.reveal()}"
        return base64.b64encode(pair.encode()).decode()

    def _redact(self, text: str) -> str:
        if self._config.token is not None and self._config.token.is_set:
            for secret in (self._config.token.reveal(), self._basic()):
                text = text.replace(secret, "***")
        return _CREDENTIALS.sub("://***@", text)
