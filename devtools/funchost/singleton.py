"""The host's singleton lock for timer triggers: a blob lease per function, so a schedule fires on one
instance however many run the app.

The host wraps each timer listener in a singleton listener (``[Singleton(Mode = SingletonMode.Listener)]``
in the WebJobs SDK): the instance holding the lease on the blob
``azure-webjobs-hosts/locks/<host id>/<function's full name>.Listener`` in ``AzureWebJobsStorage`` runs the
timer; it renews the lease while it runs; the others try again every
``singleton.listenerLockRecoveryPollingInterval`` and one of them takes over once the lease has expired
(its holder died) or was released (its holder stopped). ``ListenerLock`` does the same with the same names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.storage.blob.aio import BlobLeaseClient, BlobServiceClient, ContainerClient

logger = logging.getLogger("funchost")

LOCK_CONTAINER = "azure-webjobs-hosts"
STORAGE_SETTING = "AzureWebJobsStorage"


def lock_blob_name(host_id: str, function_name: str) -> str:
    """Where the host keeps a timer's listener lock: ``locks/<host id>/Host.Functions.<name>.Listener``."""
    return f"locks/{host_id}/Host.Functions.{function_name}.Listener"


def blob_service(env: Mapping[str, str]) -> tuple[BlobServiceClient, Any] | None:
    """The Blob service of ``AzureWebJobsStorage`` and the credential to close with it (None with a connection
    string); None when no storage is configured (then timers run on every instance, and the harness says so)."""
    connection_string = env.get(STORAGE_SETTING)
    retry: dict[str, Any] = {"retry_total": 1, "initial_backoff": 1, "random_jitter_range": 0}
    if connection_string:
        return BlobServiceClient.from_connection_string(connection_string, **retry), None
    account = env.get(f"{STORAGE_SETTING}__accountName")
    uri = env.get(f"{STORAGE_SETTING}__blobServiceUri") or (
        f"https://{account}.blob.core.windows.net" if account else None
    )
    if uri is None:
        return None
    from azure.identity.aio import ManagedIdentityCredential

    credential = ManagedIdentityCredential(client_id=env.get(f"{STORAGE_SETTING}__clientId") or None)
    return BlobServiceClient(uri, credential=credential, **retry), credential


class ListenerLock:
    """Holds (or waits for) one function's listener lock and says when this instance gains or loses it."""

    def __init__(
        self,
        container: ContainerClient,
        blob_name: str,
        *,
        period: float,
        recovery_interval: float,
        on_acquired: Callable[[], None],
        on_lost: Callable[[], None],
    ) -> None:
        """``period`` is the lease length (15-60 s), renewed every half period; ``recovery_interval`` is how
        often a non-holder tries to take it."""
        self._container = container
        self._blob = container.get_blob_client(blob_name)
        self._lease = BlobLeaseClient(self._blob, lease_id=str(uuid.uuid4()))
        self._period = period
        self._recovery = recovery_interval
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.held = False
        self._held_until = 0.0  # monotonic time the lease surely lasts to (since the last acquire/renew)
        self._lost = False

    @property
    def name(self) -> str:
        return f"{self._blob.container_name}/{self._blob.blob_name}"

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"funchost-singleton-{self._blob.blob_name}")

    def request_stop(self) -> None:
        self._stopping.set()

    async def stop(self, timeout: float) -> None:
        """Stop trying; release the lease if held, so another instance takes over at its next attempt."""
        self.request_stop()
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout)
        if self.held:
            self.held = False
            try:
                await self._lease.release()
                logger.info("Singleton lock released (%s)", self.name)
            except AzureError as exc:  # it expires by itself within one period
                logger.warning("Singleton lock %s not released: %s", self.name, exc)

    async def _run(self) -> None:
        renewed = True
        while not self._stopping.is_set():
            if not self.held:
                if await self._try_acquire():
                    self.held = True
                    renewed = True
                    if self._stopping.is_set():  # acquired while the host stops: released by ``stop``
                        break
                    logger.info("Singleton lock acquired (%s)", self.name)
                    self._on_acquired()
                    continue
                await self._sleep(self._recovery)
                continue
            await self._sleep(self._period / 2 if renewed else self._period / 6)
            if self._stopping.is_set():
                break
            renewed = await self._renew()
            if not renewed and (self._lost or time.monotonic() >= self._held_until):
                self.held = False
                logger.warning("Singleton lock lost (%s): this instance stops scheduling it", self.name)
                self._on_lost()

    async def _try_acquire(self) -> bool:
        try:
            await self._ensure_blob()
            sent = time.monotonic()
            await self._lease.acquire(lease_duration=round(self._period))
            self._held_until = sent + self._period
            return True
        except HttpResponseError as exc:
            if exc.status_code != 409:  # 409: another instance holds it
                logger.warning("Singleton lock %s: cannot acquire: %s", self.name, exc)
            return False
        except AzureError as exc:
            logger.warning("Singleton lock %s: storage unreachable: %s", self.name, exc)
            return False

    async def _ensure_blob(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            await self._container.create_container()
        with contextlib.suppress(ResourceExistsError):
            await self._blob.upload_blob(b"", overwrite=False)

    async def _renew(self) -> bool:
        """Renew; on failure the lease still counts as ours until it would have expired, unless Storage
        said it is gone (409/412: expired and taken, or broken), so a short outage does not stop the timer."""
        sent = time.monotonic()  # the lease runs from when Storage took the request, not from the answer
        try:
            await self._lease.renew()
            self._held_until = sent + self._period
            return True
        except HttpResponseError as exc:
            self._lost = exc.status_code in (409, 412)
            logger.warning("Singleton lock %s: renewal failed: %s", self.name, exc)
            return False
        except AzureError as exc:
            logger.warning("Singleton lock %s: renewal failed: %s", self.name, exc)
            return False

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
