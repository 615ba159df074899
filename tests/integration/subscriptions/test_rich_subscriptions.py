"""``+data`` entries through the real stack (simulator + Azurite): Graph gets ``includeResourceData``, the
``$select`` path and our certificate; the shorter lifetime is asked for and renewal adapts to it; a rotated
certificate reaches Graph at the next renewal; a ``+data`` entry without a certificate creates nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from devtools.encryption_certificate import generate_pem
from devtools.graphsim.client import SimControl
from shared.api.params import MESSAGE_RESOURCE_FIELDS
from shared.graph.subscriptions import EncryptionCertificate, ResourceData
from shared.richdata.keyring import load_key
from tests.integration.subscriptions.conftest import SimClock

OLD, NEW = load_key("cert-old", generate_pem()), load_key("cert-new", generate_pem())


def data_for(key: Any) -> ResourceData:
    return ResourceData(MESSAGE_RESOURCE_FIELDS, EncryptionCertificate(key.encryption_certificate, key.certificate_id))


async def test_a_data_entry_creates_a_rich_subscription_with_the_short_lifetime(
    make_stack: Any, graphsim: SimControl, mailbox: str, sim_clock: SimClock
) -> None:
    stack = make_stack(f"users/{mailbox}/messages=created,updated+data", data_for(OLD))

    result = await stack.service.reconcile()

    assert len(result.created) == 1
    [live] = graphsim.subscriptions()
    assert live["includeResourceData"] is True
    assert live["resource"] == f"users/{mailbox}/messages?$select={','.join(MESSAGE_RESOURCE_FIELDS)}"
    assert (live["encryptionCertificateId"], live["encryptionCertificate"]) == ("cert-old", OLD.encryption_certificate)
    [record] = await stack.registry.list_all()
    assert (record.resource, record.with_data, record.certificate_id) == (f"users/{mailbox}/messages", True, "cert-old")
    assert timedelta(hours=23) < record.expiration - sim_clock() <= timedelta(minutes=1_440)
    assert (await stack.service.reconcile()).unchanged == (f"users/{mailbox}/messages",)  # stable, not replaced


async def test_renewal_adapts_to_the_day_long_lifetime_and_rotates_the_certificate(
    make_stack: Any, graphsim: SimControl, mailbox: str, sim_clock: SimClock
) -> None:
    await make_stack(f"users/{mailbox}/messages=created+data", data_for(OLD)).service.reconcile()
    rotated = make_stack(f"users/{mailbox}/messages=created+data", data_for(NEW))  # the next deployment

    assert (await rotated.service.renew_due()).renewed == 0  # a fresh day-long subscription is not due
    sim_clock.advance(timedelta(hours=18, minutes=1))  # past 3/4 of its lifetime: due whatever its spread
    renewed = await rotated.service.renew_due()

    assert renewed.renewed == 1
    [live] = graphsim.subscriptions()
    assert (live["encryptionCertificateId"], live["encryptionCertificate"]) == ("cert-new", NEW.encryption_certificate)
    [record] = await rotated.registry.list_all()
    assert record.certificate_id == "cert-new"
    [view] = [v.to_dict() for v in await rotated.service.list_subscriptions()]  # what operators see
    assert (view["includeResourceData"], view["encryptionCertificateId"]) == (True, "cert-new")
    assert record.expiration - sim_clock() > timedelta(hours=23)
    assert (await rotated.service.reconcile()).unchanged  # rotation is a renewal, not a replacement


async def test_turning_data_on_replaces_the_basic_subscription(
    make_stack: Any, graphsim: SimControl, mailbox: str
) -> None:
    await make_stack(f"users/{mailbox}/messages=created").service.reconcile()
    [basic] = graphsim.subscriptions()

    await make_stack(f"users/{mailbox}/messages=created+data", data_for(OLD)).service.reconcile()

    [rich] = graphsim.subscriptions()
    assert rich["id"] != basic["id"]
    assert rich["includeResourceData"] is True


async def test_a_data_entry_without_a_certificate_creates_nothing(
    make_stack: Any, graphsim: SimControl, mailbox: str
) -> None:
    stack = make_stack(f"users/{mailbox}/messages=created+data")  # rich notifications off

    result = await stack.service.reconcile()

    assert result.failed == (f"users/{mailbox}/messages",)
    assert graphsim.subscriptions() == []
    assert await stack.registry.list_all() == []
