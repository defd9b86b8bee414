"""The Render stand-in failing while the daemon rolls a bad deploy back: a 500 to the rollback
itself, 503s while it waits for the rollback to go live, and a rollback whose answer never
comes. Whatever happens, the stand-in sees one rollback request at most, and the watch ends
saying truthfully what production serves."""

from __future__ import annotations

from tests.daemons import MakeDaemon, read_store, wait_for
from watchdog.sandbox import stack
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE


def test_a_500_to_the_rollback_is_not_resent_and_the_watch_closes_rollback_failed(
    sandbox: stack.Stack, make_daemon: MakeDaemon
) -> None:
    """A 500 may come after the provider acted, so the send is never repeated: the daemon
    looks, sees production still on the bad deploy, and says the rollback failed."""
    daemon = make_daemon().start()
    sandbox.backend_faults.fail_next(1, 500, operation="rollback")
    watch_id = daemon.announce()

    summary = daemon.closed(watch_id)

    assert summary["verdict"] == "rollback_failed", summary
    [action] = summary["actions"]
    assert (action["status"], action["to"]) == ("failed", "dep-1")
    assert "HTTP 500" in action["error"]
    failed = daemon.wait_event("rollback.failed", deployment="dep-2")
    assert "HTTP 500" in failed["error"]
    # The post-mortem of the failed rollback is written, and still nothing was resent.
    report = wait_for(lambda: daemon.summary(watch_id)["incident_report"], 20, "the report")
    assert "rollback" in report
    assert sandbox.backend.count("rollback") == 1
    assert sandbox.app.live == BAD_RELEASE  # what the watch says: production is still bad
    stored = read_store(daemon.state_url, watch_id)
    assert [a.status for a in stored.rollbacks] == ["failed"]
    assert stored.unaccounted() == []


def test_503s_while_the_rollback_goes_live_are_retried_and_it_is_rolled_back_once(
    sandbox: stack.Stack, make_daemon: MakeDaemon
) -> None:
    """Reads are safe to retry (stamina, with backoff): three 503s to the reads of the
    rollback's deploy cost a moment, not the rollback."""
    daemon = make_daemon().start()
    sandbox.backend_faults.fail_next(3, 503, operation="get_deploy")
    watch_id = daemon.announce()

    summary = daemon.closed(watch_id)

    assert summary["verdict"] == "rolled_back", summary
    assert [a["status"] for a in summary["actions"]] == ["done"]
    assert sandbox.backend.count("rollback") == 1
    assert sandbox.app.live == GOOD_RELEASE
    retried = daemon.events("stamina.retry_scheduled", caused_by="ProviderRefused('HTTP 503')")
    assert len(retried) == 3
    assert len(daemon.events("rollback.executed")) == 1
    assert daemon.events("rollback.failed") == []
    assert [a.status for a in read_store(daemon.state_url, watch_id).rollbacks] == ["done"]


def test_a_rollback_whose_answer_never_comes_is_reconciled_with_the_provider_not_resent(
    sandbox: stack.Stack, make_daemon: MakeDaemon
) -> None:
    """The stand-in holds the rollback request past the client's timeout, then carries it
    out: the request reached Render, its answer never reached the daemon. The daemon must not
    send it again; asking Render what it serves, it finds the rollback going live."""
    daemon = make_daemon().start()
    sandbox.backend_faults.stall_next(1, 2.0, operation="rollback")
    watch_id = daemon.announce()

    summary = daemon.closed(watch_id)

    assert sandbox.backend.count("rollback") == 1
    live = wait_for(
        lambda: (d := sandbox.backend.live()) and d.release == GOOD_RELEASE and d,
        20,
        "the held rollback to go live",
    )
    assert live.id == "dep-3"  # the one rollback, carried out after the daemon gave up waiting
    assert summary["verdict"] == "rolled_back", summary
    assert [a["status"] for a in summary["actions"]] == ["done"]
    assert [a.status for a in read_store(daemon.state_url, watch_id).rollbacks] == ["done"]
