"""Deterministic fake tenant data: the same seed always yields the same ids and content.

Ids imitate Graph's: users get GUIDs, messages and folders get long URL-safe base64 ids
(with ``-``, ``_`` and a trailing ``=``) so clients that mangle such characters fail here
as they would against Graph.
"""

from __future__ import annotations

import base64
import hashlib
import random
import uuid
from datetime import UTC, datetime, timedelta

from devtools.graphsim.clock import graph_time
from devtools.graphsim.wire import JsonObj

TENANT_ID = "8d6a2c1e-4b5f-4e0a-9c3d-2f1e0b7a6c54"
APPLICATION_ID = "3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
CREATOR_ID = "9a8b7c6d-5e4f-4321-8fed-cba987654321"
DOMAIN = "contoso.onmicrosoft.com"
# Seeded mail is dated before this instant so a seed never depends on today's date.
SEED_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
WELL_KNOWN_FOLDERS = ("inbox", "sentitems", "drafts", "deleteditems", "archive")
FOLDER_DISPLAY_NAMES = {
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "drafts": "Drafts",
    "deleteditems": "Deleted Items",
    "archive": "Archive",
}


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


GIVEN_NAMES = _words(
    "Adele Alex Allan Christie Debra Diego Emily Enrico Grady Henrietta Irvin Isaiah Johanna Joni "
    "Lee Lidia Lynne Megan Miriam Nestor Patti Pradeep Raul Sanjay Tess Wendy Ximena Yuki Zoe Omar"
)
SURNAMES = _words(
    "Vance Wilber Jacobs Cline Berg Siciliani Braun Giordano Archie Gonzalez Bellinger Langer Lauer "
    "Sherman Gu Holloway Robinson Bowen Hooper Wilke Fernandez Gupta Rios Patel Kowalski Okafor Tanaka"
)
JOB_TITLES = (
    "Product Manager",
    "Developer",
    "Marketing Manager",
    "Sales Representative",
    "IT Admin",
    "Director",
    "Designer",
    "Support Engineer",
    "Attorney",
    "Accountant",
)
DEPARTMENTS = ("Engineering", "Marketing", "Sales", "Legal", "Finance", "Operations", "IT")
OFFICES = ("18/2111", "20/1101", "12/1110", "131/1104", "19/3123", "23/2102", None)
CITIES = (("Seattle", "United States", "US"), ("London", "United Kingdom", "GB"), ("Berlin", "Germany", "DE"))
SUBJECT_WORDS = _words(
    "Quarterly review budget launch plan roadmap invoice contract meeting notes follow-up update "
    "draft proposal feedback schedule release incident report design offsite hiring onboarding"
)
BODY_WORDS = _words(
    "please review the attached document before our meeting tomorrow and let me know if anything "
    "needs to change we agreed to ship next week after the final checks thanks for the quick turnaround"
)

# Three bytes that encode to "e-T_": every message id then contains '-' and '_'.
_URLSAFE_MARK = base64.urlsafe_b64decode("e-T_")


def digest(*parts: object, size: int = 32) -> bytes:
    """Stable bytes from any values (the seed is always one of the parts)."""
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=size).digest()


def outlook_id(kind: bytes, *parts: object) -> str:
    """A Graph-looking Outlook id: 104 bytes -> 140 URL-safe base64 chars ending in '='."""
    # 42 bytes of prefix keep the mark on a 3-byte boundary, so it encodes as "e-T_".
    raw = b"\x00\x00\x8d\x00" + kind + digest("mbx", *parts[:2], size=37)
    raw += _URLSAFE_MARK + digest("item", *parts, size=59)
    return base64.urlsafe_b64encode(raw).decode()


def guid(rng: random.Random) -> str:
    """A version-4 GUID drawn from ``rng`` (deterministic, unlike uuid4)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def make_user(rng: random.Random, index: int, taken_upns: set[str]) -> JsonObj:
    """One user with Graph's default properties plus a few selectable extras."""
    given = rng.choice(GIVEN_NAMES)
    surname = rng.choice(SURNAMES)
    nickname = f"{given}.{surname}".lower()
    if f"{nickname}@{DOMAIN}" in taken_upns:
        nickname = f"{nickname}{index}"
    upn = f"{nickname}@{DOMAIN}"
    taken_upns.add(upn)
    city, country, usage = rng.choice(CITIES)
    created = SEED_EPOCH - timedelta(days=rng.randint(30, 1500), seconds=rng.randint(0, 86_399))
    return {
        "id": guid(rng),
        "businessPhones": [f"+1 425 555 {rng.randint(100, 9999):04d}"] if rng.random() < 0.8 else [],
        "displayName": f"{given} {surname}",
        "givenName": given,
        "jobTitle": rng.choice(JOB_TITLES),
        "mail": upn,
        "mobilePhone": f"+1 206 555 {rng.randint(100, 9999):04d}" if rng.random() < 0.4 else None,
        "officeLocation": rng.choice(OFFICES),
        "preferredLanguage": rng.choice(("en-US", "en-GB", "de-DE")),
        "surname": surname,
        "userPrincipalName": upn,
        # Not in the default set; reachable through $select.
        "accountEnabled": rng.random() < 0.95,
        "department": rng.choice(DEPARTMENTS),
        "companyName": "Contoso",
        "city": city,
        "country": country,
        "usageLocation": usage,
        "mailNickname": nickname,
        "employeeId": f"{100000 + index}",
        "createdDateTime": graph_time(created),
    }


def folder_id(user_id: str, well_known: str) -> str:
    """The id of a user's well-known folder (stable for a user id)."""
    return outlook_id(b"\x01", "folder", user_id, well_known)


def make_message(
    rng: random.Random,
    *,
    seed: object,
    user: JsonObj,
    sender: JsonObj,
    serial: int,
    folder: str,
    parent_folder_id: str,
    received: datetime,
    overrides: JsonObj | None = None,
) -> JsonObj:
    """One message with the fields Graph returns by default (values drawn from ``rng``)."""
    msg_id = outlook_id(b"\x46", seed, user["id"], serial)
    subject = " ".join(rng.choices(SUBJECT_WORDS, k=rng.randint(2, 6))).capitalize()
    text = " ".join(rng.choices(BODY_WORDS, k=rng.randint(12, 60))).capitalize() + "."
    outgoing = folder in ("sentitems", "drafts")
    author = user if outgoing else sender
    recipient = sender if outgoing else user
    change_key = "CQAAABYAAAA" + base64.urlsafe_b64encode(digest("ck", msg_id, 0, size=15)).decode()
    message: JsonObj = {
        "id": msg_id,
        "createdDateTime": graph_time(received),
        "lastModifiedDateTime": graph_time(received + timedelta(seconds=rng.randint(0, 120))),
        "changeKey": change_key,
        "categories": [] if rng.random() < 0.85 else [rng.choice(("Blue category", "Red category"))],
        "receivedDateTime": graph_time(received),
        "sentDateTime": graph_time(received - timedelta(seconds=rng.randint(1, 30))),
        "hasAttachments": rng.random() < 0.2,
        "internetMessageId": f"<{digest('imid', msg_id, size=12).hex()}@{DOMAIN}>",
        "subject": subject,
        "bodyPreview": text[:255],
        "importance": rng.choices(("normal", "high", "low"), (8, 1, 1))[0],
        "parentFolderId": parent_folder_id,
        "conversationId": "AAQkA" + base64.urlsafe_b64encode(digest("conv", msg_id, size=33)).decode(),
        "conversationIndex": base64.b64encode(digest("ci", msg_id, size=22)).decode(),
        "isDeliveryReceiptRequested": None if outgoing else False,
        "isReadReceiptRequested": False,
        "isRead": outgoing or rng.random() < 0.6,
        "isDraft": folder == "drafts",
        "webLink": "https://outlook.office365.com/owa/?ItemID="
        + msg_id.replace("=", "%3D")  # ids are URL-safe base64: only '=' needs quoting
        + "&exvsurl=1&viewmodel=ReadMessageItem",
        "inferenceClassification": "focused" if rng.random() < 0.8 else "other",
        "body": {"contentType": "html", "content": f"<html><body><p>{text}</p></body></html>"},
        "sender": _address(author),
        "from": _address(author),
        "toRecipients": [_address(recipient)],
        "ccRecipients": [],
        "bccRecipients": [],
        "replyTo": [],
        "flag": {"flagStatus": "notFlagged"},
    }
    if overrides:
        message.update(overrides)
    return message


def _address(user: JsonObj) -> JsonObj:
    return {"emailAddress": {"name": user["displayName"], "address": user["mail"]}}
