"""Rich notifications end to end: the app subscribes a mailbox with ``+data`` itself (handshake answered by its
own webhook), the simulator encrypts each created message into the notification and signs validation tokens,
and the event reaches ``graph-events`` with the message's fields and no Graph call for it. Every simulated
fault is refused or poisoned without a 5xx to Graph; a certificate rotation decrypts both certificates' items
during the overlap."""

from __future__ import annotations

from typing import Any

import httpx

from devtools.azurite import free_port
from devtools.encryption_certificate import generate_pem
from devtools.graphsim.client import SimControl
from devtools.graphsim.rich import ITEM_FAULTS, TOKEN_FAULTS
from devtools.graphsim.seed import APPLICATION_ID
from tests.e2e.conftest import RunningApp, StartApp
from tests.e2e.pipeline import EventSink, drain_queue
from tests.waiting import wait_until

OLD_PEM, NEW_PEM = generate_pem().decode(), generate_pem().decode()


def rich_settings(graphsim: SimControl, mailbox: str, port: int, pem: str, certificate_id: str) -> dict[str, str]:
    return {
        "GRAPH_SUBSCRIPTIONS": f"users/{mailbox}/messages=created+data",
        "WEBHOOK_BASE_URL": f"http://127.0.0.1:{port}/api",
        "RICH_NOTIFICATIONS": "true",
        "RICH_NOTIFICATIONS_CERTIFICATE": pem,
        "RICH_NOTIFICATIONS_CERTIFICATE_ID": certificate_id,
        "RICH_NOTIFICATIONS_AUDIENCE": APPLICATION_ID,
        "RICH_NOTIFICATIONS_OPENID_CONFIGURATION": graphsim.openid_configuration_url,
        "FORWARD_ENRICH": "true",  # a message without data would cost a Graph call: none may happen
    }


def subscribed_app(start_app: StartApp, graphsim: SimControl, mailbox: str) -> RunningApp:
    """The app with one ``+data`` subscription it made itself, its start-up renewal done."""
    port = free_port()
    app = start_app(port=port, **rich_settings(graphsim, mailbox, port, OLD_PEM, "cert-old"))
    app.host.wait_for_output("created subscription", timeout=30)
    app.host.wait_for_output("renewal: renewed", timeout=30)
    return app


def admin(app: RunningApp) -> httpx.Client:
    return httpx.Client(base_url=app.host.base_url, headers={"x-functions-key": app.host.master_key}, timeout=30)


def create_message(graphsim: SimControl, mailbox: str, subject: str) -> dict[str, Any]:
    [message] = graphsim.create_message(mailbox, subject=subject)
    graphsim.wait_deliveries_idle()
    return message


def test_a_created_message_arrives_with_its_fields_and_no_graph_call(start_app: StartApp, graphsim: SimControl) -> None:
    mailbox = graphsim.users()[0]["id"]
    app = subscribed_app(start_app, graphsim, mailbox)
    [live] = graphsim.subscriptions()
    assert live["includeResourceData"] is True
    graphsim.clear_requests()

    message = create_message(graphsim, mailbox, "Quarterly numbers")
    events = EventSink(app).wait_for_matching({message["id"]})

    [event] = [e for e in events if e.get("message_id") == message["id"]]
    assert event["type"] == "messages.created"
    assert event["data"]["subject"] == "Quarterly numbers"
    assert event["data"]["bodyPreview"] == message["bodyPreview"]
    assert graphsim.requests(path_regex=r"^/users/[^/]+/messages/(?!delta)") == []  # no Graph call for a message
    assert "Quarterly numbers" not in app.host.output  # plaintext never logged


def test_the_api_serves_a_notified_message_from_its_data_and_follows_its_updates(
    start_app: StartApp, graphsim: SimControl
) -> None:
    """``GET users/{id}/messages/{message_id}`` answers from the cache the notification filled, also after an
    update (the newer version replaces it); Graph is never asked for the message."""
    mailbox = graphsim.users()[3]["id"]
    port = free_port()
    settings = rich_settings(graphsim, mailbox, port, OLD_PEM, "cert-old")
    app = start_app(port=port, **{**settings, "GRAPH_SUBSCRIPTIONS": f"users/{mailbox}/messages=created,updated+data"})
    app.host.wait_for_output("renewal: renewed", timeout=30)
    graphsim.clear_requests()
    sink = EventSink(app)
    message = create_message(graphsim, mailbox, "First draft")
    sink.wait_for_matching({message["id"]})

    with admin(app) as client:
        url = f"/api/users/{mailbox}/messages/{message['id']}"
        first = client.get(url)
        assert (first.status_code, first.json()["subject"]) == (200, "First draft")
        assert first.headers["X-Cache"] in ("hit-l1", "hit-l2")
        graphsim.advance_clock(2)  # Outlook versions messages by the second
        graphsim.update_message(mailbox, message["id"], subject="Final")
        graphsim.wait_deliveries_idle()
        sink.wait_for(2)
        second = client.get(url)
        assert (second.json()["subject"], second.headers["X-Cache"]) == ("Final", "hit-l1")
        assert second.headers["ETag"] != first.headers["ETag"]
        assert client.get(f"/api/users/{mailbox}/messages/a%2Fb").status_code in (400, 404)
        assert client.get(f"/api/users/{mailbox}/messages/{'A' * 600}").status_code == 400
    assert [e["type"] for e in sink.events] == ["messages.created", "messages.updated"]
    assert graphsim.requests(path_regex=r"^/users/[^/]+/messages/(?!delta)") == []


def test_every_fault_is_refused_or_poisoned_and_graph_never_sees_a_5xx(
    start_app: StartApp, graphsim: SimControl
) -> None:
    """Token faults, and a signing key rotated within the keys' refresh interval (60 s: an unknown key id
    cannot make the app fetch more often): the POST is acknowledged (202), logged with its code, nothing
    enqueued. Item faults: the item is poisoned with its reason, nothing published."""
    mailbox = graphsim.users()[1]["id"]
    app = subscribed_app(start_app, graphsim, mailbox)
    sink = EventSink(app)
    control = create_message(graphsim, mailbox, "control")  # the pipeline works (and the keys are fetched)
    sink.wait_for_matching({control["id"]})
    graphsim.clear_deliveries()

    for fault in TOKEN_FAULTS + ITEM_FAULTS:
        graphsim.add_rich_fault(fault)
        create_message(graphsim, mailbox, f"secret-{fault}")
    graphsim.rotate_signing_key()
    create_message(graphsim, mailbox, "secret-rotated-signing-key")
    poisoned = wait_until(lambda: drain_queue(app, "graph-notifications-poison"), timeout=30)
    sink.wait_for(0, settle=3.0)

    assert [e["data"]["subject"] for e in sink.events] == ["control"]
    statuses = [d["status"] for d in graphsim.deliveries(kind="notification")]
    assert statuses == [202] * (len(TOKEN_FAULTS) + len(ITEM_FAULTS) + 1)
    output = app.host.output
    assert output.count("refused a POST of 1 notifications") == len(TOKEN_FAULTS) + 1
    assert "token_unknown_key" in output  # the rotated key's tokens
    assert len(poisoned) + len(drain_queue(app, "graph-notifications-poison")) == len(ITEM_FAULTS)
    assert all("secret-" not in text for text in [*poisoned, output])  # no plaintext in logs or poison
    assert "PRIVATE KEY" not in output
    with admin(app) as client:
        counted = client.get("/api/status").json()["stats"]["events"]  # the status page's window
    assert counted["notifications.dropped"]["total"] == len(TOKEN_FAULTS) + 1
    assert counted["notifications.dropped.unverified:token_unknown_key"]["total"] == 1  # and why, per code
    assert counted["notifications.poisoned"]["total"] == len(ITEM_FAULTS)


def test_certificate_rotation_decrypts_both_certificates_during_the_overlap(
    start_app: StartApp, graphsim: SimControl
) -> None:
    """Deploy a new certificate with the old one as previous: until the subscription is renewed Graph still
    encrypts with the old one (decrypted by the previous key); after the renewal, with the new one."""
    mailbox = graphsim.users()[2]["id"]
    first = subscribed_app(start_app, graphsim, mailbox)
    port = int(first.env["WEBHOOK_BASE_URL"].split(":")[2].split("/")[0])
    first.host.stop()
    rotated_env = {
        **first.env,
        **rich_settings(graphsim, mailbox, port, NEW_PEM, "cert-new"),
        "RICH_NOTIFICATIONS_PREVIOUS_CERTIFICATE": OLD_PEM,
        "RICH_NOTIFICATIONS_PREVIOUS_CERTIFICATE_ID": "cert-old",
    }
    app = start_app(rotated_env, port=port)
    app.host.wait_for_output("renewal: renewed", timeout=30)
    [live] = graphsim.subscriptions()
    assert live["encryptionCertificateId"] == "cert-old"  # not due yet: Graph keeps the old certificate
    sink = EventSink(app)

    before = create_message(graphsim, mailbox, "encrypted for the old certificate")
    sink.wait_for_matching({before["id"]})
    with admin(app) as client:
        assert client.post(f"/api/subscriptions/{live['id']}/renew").status_code == 200
    assert wait_until(lambda: graphsim.subscriptions()[0]["encryptionCertificateId"] == "cert-new")
    after = create_message(graphsim, mailbox, "encrypted for the new certificate")
    events = sink.wait_for_matching({after["id"]})

    assert [e["data"]["subject"] for e in events] == [
        "encrypted for the old certificate",
        "encrypted for the new certificate",
    ]
