"""Three instances of the app scaled out on one Azurite and one simulator, behind a round-robin front.

One cluster per test module (starting three harnesses costs seconds); tests in a module share it, so each
test works on its own users and filters what it reads by its own ids.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from devtools.azurite import Azurite
from devtools.graphsim.client import SimControl
from tests.e2e.conftest import app_env, clear_app_queues
from tests.fixtures.cluster import Cluster, start_cluster
from tests.fixtures.funchost import FuncHostLauncher
from tests.fixtures.graphsim import GraphSimServer

INSTANCES = 3
L1_BOUND_SECONDS = 1.0  # CACHE_L1_TTL_SECONDS: how late an instance may serve what another invalidated
BREAKER_STATE_LAG_SECONDS = 1.0  # the breaker's state_cache_seconds: how late an instance sees a trip


def cluster_env(azurite: Azurite, graphsim_server: GraphSimServer, mailbox_user: str) -> dict[str, str]:
    """One app's settings, shared by every instance; shortened timings so each property shows in seconds."""
    return app_env(
        azurite.connection_string,
        graphsim_server.base_url,
        AzureFunctionsWebHost__hostid="scale-" + secrets.token_hex(6),
        FUNCHOST_FUNCTION_KEY="fk-" + secrets.token_urlsafe(12),
        FUNCHOST_MASTER_KEY="mk-" + secrets.token_urlsafe(12),
        FUNCHOST_SHUTDOWN_TIMEOUT="5",
        # The directory (mirror) and one mailbox are desired subscriptions, renewed on every run.
        GRAPH_SUBSCRIPTIONS=f"users=updated,deleted; users/{mailbox_user}/messages=created,updated,deleted",
        SUBSCRIPTION_RENEWAL_SCHEDULE="*/2 * * * * *",
        SUBSCRIPTION_RENEW_BEFORE_HOURS="600",  # the maximum: a mailbox subscription (168 h) is always due
        MIRROR_DEBOUNCE_SECONDS="1",
        BREAKER_CONSECUTIVE_FAILURES="3",
        BREAKER_OPEN_SECONDS="5",  # long enough to check every instance refuses before half-open
        CACHE_L1_TTL_SECONDS=str(L1_BOUND_SECONDS),
        # A killed instance's messages come back after 3 s (the host: 10 min); a failed one after 1 s.
        FUNCHOST_QUEUE_RECEIVE_LEASE="3",
        AzureFunctionsJobHost__extensions__queues__visibilityTimeout="00:00:01",
        # A non-holder tries a timer's lock every second (the host: every minute).
        AzureFunctionsJobHost__singleton__listenerLockRecoveryPollingInterval="00:00:01",
    )


@pytest.fixture(name="sim", scope="module")
def _sim(graphsim_server: GraphSimServer) -> Iterator[SimControl]:
    """The session's simulator, reset once for the module (the cluster's subscriptions live in it)."""
    with SimControl(graphsim_server.root_url) as control:
        control.reset()
        control.configure(max_items_per_post=5)  # many small POSTs, so the front spreads them
        yield control
        control.clear_faults()


@pytest.fixture(name="cluster", scope="module")
def _cluster(
    azurite: Azurite, graphsim_server: GraphSimServer, sim: SimControl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    azurite.start()
    mailbox_user = sim.users()[0]["id"]
    env = cluster_env(azurite, graphsim_server, mailbox_user)
    clear_app_queues(env["AzureWebJobsStorage"])
    launcher = FuncHostLauncher(tmp_path_factory.mktemp("cluster"))
    try:
        cluster = start_cluster(launcher, env, INSTANCES)
        try:
            yield cluster
        finally:
            cluster.close()
    finally:
        launcher.close()
