"""Queue triggers through the harness subprocess, against Azurite, with the sample app's host.json:
batchSize 4, newBatchThreshold 2, maxPollingInterval 200 ms, visibilityTimeout 1 s, maxDequeueCount 3."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueClient

from devtools.azurite import Azurite
from tests.fixtures.funchost import FuncHostLauncher, FuncHostProcess
from tests.integration.funchost._support import SAMPLE_APP, YEARLY, b64, records, wait_for

pytestmark = pytest.mark.integration

MAX_DEQUEUE_COUNT = 3
VISIBILITY_TIMEOUT = 1.0


class QueueHarness:
    """The harness process plus the queue it listens to and the sample app's record folder."""

    def __init__(self, process: FuncHostProcess, connection_string: str, queue: str, records_dir: Path) -> None:
        self.process = process
        self.queue_name = queue
        self.records_dir = records_dir
        self.queue = QueueClient.from_connection_string(connection_string, queue)
        self.poison = QueueClient.from_connection_string(connection_string, queue + "-poison")

    def send(self, **spec: Any) -> str:
        """Send a JSON body (base64, the default encoding); returns its test id."""
        spec.setdefault("id", uuid.uuid4().hex)
        self.queue.send_message(b64(json.dumps(spec)))
        return str(spec["id"])

    def attempts(self, test_id: str) -> list[dict[str, Any]]:
        return [r for r in records(self.records_dir, "on_message") if json.loads(r["body"]).get("id") == test_id]

    def poison_texts(self) -> list[str]:
        try:
            return [m.content for m in self.poison.peek_messages(max_messages=32)]
        except ResourceNotFoundError:
            return []


@pytest.fixture(name="qh", scope="module")
def _queue_harness(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[QueueHarness]:
    """One harness listening on a fresh queue it has to create itself (tests tell messages apart by id)."""
    workdir = tmp_path_factory.mktemp("funchost-queues")
    launcher = FuncHostLauncher(workdir)
    azurite.start()
    queue = "fh" + uuid.uuid4().hex[:16]
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "SAMPLE_QUEUE": queue,
        "TICK_SCHEDULE": YEARLY,
        "SAMPLE_RECORD_DIR": str(workdir),
    }
    try:
        harness = QueueHarness(launcher(SAMPLE_APP, env), azurite.connection_string, queue, workdir)
        wait_for(lambda: _exists(harness.queue), what="the harness to create the trigger queue")
        yield harness
    finally:
        launcher.close()


def _exists(queue: QueueClient) -> bool:
    try:
        queue.get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


def test_harness_creates_the_trigger_queue(qh: QueueHarness) -> None:
    """The trigger queue did not exist before the harness started; the harness created it (as the host does)."""
    assert _exists(qh.queue)


def test_base64_message_arrives_as_a_real_queue_message(qh: QueueHarness) -> None:
    """A base64 message is decoded and passed as azure.functions QueueMessage with id, body, dequeue_count 1,
    insertion time and pop receipt; on success it is deleted (never delivered again)."""
    test_id = qh.send(fail_times=0)
    (attempt,) = wait_for(lambda: qh.attempts(test_id), what="the delivery")
    assert json.loads(attempt["body"]) == {"fail_times": 0, "id": test_id}
    assert attempt["dequeue_count"] == 1
    assert attempt["message_type"] == "azure.functions.queue.QueueMessage"
    assert attempt["insertion_time"]
    assert attempt["pop_receipt"] is True
    assert attempt["id"]
    qh.process.wait_for_output(f"Reason='New queue message detected on '{qh.queue_name}'.'")
    wait_for(lambda: qh.queue.get_queue_properties().approximate_message_count == 0, what="deletion")


def test_failure_redelivers_after_visibility_timeout_with_next_dequeue_count(qh: QueueHarness) -> None:
    """A message whose first run fails comes back with dequeue_count 2, no sooner than visibilityTimeout."""
    test_id = qh.send(fail_times=1)
    wait_for(lambda: len(qh.attempts(test_id)) >= 2, what="redelivery")
    attempts = qh.attempts(test_id)
    assert [a["dequeue_count"] for a in attempts] == [1, 2]
    gap = attempts[1]["started"] - attempts[0]["started"]
    assert gap >= VISIBILITY_TIMEOUT * 0.9, gap
    assert gap < VISIBILITY_TIMEOUT + 3.0, gap


def test_always_failing_message_goes_to_poison_after_max_dequeue_count(qh: QueueHarness) -> None:
    """A message that always fails runs exactly maxDequeueCount (3) times, then its text is copied unchanged
    to '<queue>-poison' and it is removed from the trigger queue."""
    test_id = qh.send(fail_times=-1)
    poisoned = wait_for(
        lambda: [t for t in qh.poison_texts() if test_id in base64.b64decode(t).decode()],
        timeout=15,
        what="the poison message",
    )
    assert json.loads(base64.b64decode(poisoned[0])) == {"fail_times": -1, "id": test_id}
    assert [a["dequeue_count"] for a in qh.attempts(test_id)] == [1, 2, 3]
    qh.process.wait_for_output(f"Moving message to queue '{qh.queue_name}-poison'")


def test_message_that_is_not_base64_goes_to_poison_without_running(qh: QueueHarness) -> None:
    """With messageEncoding base64, undecodable text counts as a failure: poisoned after 3 dequeues, and the
    function never sees it."""
    marker = "not*base64*" + uuid.uuid4().hex
    qh.queue.send_message(marker)
    wait_for(lambda: marker in qh.poison_texts(), timeout=15, what="the undecodable message in poison")
    assert not [r for r in records(qh.records_dir, "on_message") if marker in r["body"]]


def test_in_flight_messages_are_bounded_by_batch_size_plus_threshold(qh: QueueHarness) -> None:
    """With batchSize 4 and newBatchThreshold 2, a new batch is fetched once only 2 are left in flight, so up
    to 6 (never more) run at once."""
    ids = [qh.send(fail_times=0, sleep=0.3 if n % 2 == 0 else 1.5) for n in range(12)]
    wait_for(lambda: all(qh.attempts(i) for i in ids), timeout=20, what="all 12 deliveries")
    spans = [(a["started"], a["t"]) for i in ids for a in qh.attempts(i)]
    peak = max(sum(1 for s, e in spans if s <= moment < e) for moment, _ in spans)
    assert 5 <= peak <= 6, peak


def test_admin_api_runs_a_queue_function_with_the_input_as_body(qh: QueueHarness) -> None:
    """POST /admin/functions/on_message with the master key answers 202 and runs it with the input as body."""
    test_id = uuid.uuid4().hex
    response = httpx.post(
        f"{qh.process.base_url}/admin/functions/on_message",
        json={"input": json.dumps({"id": test_id})},
        headers={"x-functions-key": qh.process.master_key},
    )
    assert response.status_code == 202
    (attempt,) = wait_for(lambda: qh.attempts(test_id), what="the admin invocation")
    assert attempt["dequeue_count"] == 1
