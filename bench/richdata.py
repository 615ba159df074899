"""CPU cost of rich notifications, per item and per POST, with the real code (shared/richdata) and real keys.

1. Decryption of one ``encryptedContent`` item (the simulator's Graph-side encryption of a message's
   subject + bodyPreview + importance): the whole ``decrypt_content``, and its RSA-OAEP key unwrap alone,
   for 2048- and 4096-bit certificates (Graph accepts both).
2. Validation of one ``validationTokens`` JWT with the signing keys already cached (what every POST pays).

No I/O is timed: the key set is served from memory. Single-threaded, best of ``--repeat`` rounds.

    .venv/bin/python -m bench.richdata [--items 300] [--repeat 5] [--write]

Prints the report, then its figures as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from bench.report import write_section
from devtools.encryption_certificate import generate_pem
from devtools.graphsim.rich_crypto import encrypt_resource
from devtools.graphsim.rich_tokens import TokenIssuer
from shared.richdata.decrypt import EncryptedContent, decrypt_content, unwrap_key
from shared.richdata.keyring import KeyRing, load_key
from shared.richdata.signing_keys import SigningKeys
from shared.richdata.tokens import TokenPolicy, TokenValidator

MESSAGE = {"subject": "Quarterly numbers", "bodyPreview": "See the figures attached. " * 8, "importance": "normal"}
TENANT, APP = "8d6a2c1e-4b5f-4e0a-9c3d-2f1e0b7a6c54", "3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"


def best_us(run: Callable[[], None], count: int, repeat: int) -> float:
    """Best per-call time in µs over ``repeat`` rounds of ``count`` calls."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(count):
            run()
        best = min(best, (time.perf_counter() - started) / count)
    return best * 1e6


def decryption(bits: int, items: int, repeat: int) -> tuple[float, float]:
    """(whole decrypt_content, RSA unwrap alone) in µs per item."""
    key = load_key(f"bench-{bits}", generate_pem(key_bits=bits))
    ring = KeyRing(key)
    contents = [encrypt_resource(MESSAGE, key.certificate, key.certificate_id) for _ in range(items)]
    parsed = [EncryptedContent.parse(c) for c in contents]
    assert decrypt_content(contents[0], ring) == MESSAGE
    position = iter(range(10**9))

    def whole() -> None:
        decrypt_content(contents[next(position) % items], ring)

    def unwrap() -> None:
        item = parsed[next(position) % items]
        unwrap_key(key.private_key, item.data_key, item.certificate_id)

    return best_us(whole, items, repeat), best_us(unwrap, items, repeat)


async def token_validation(count: int, repeat: int) -> float:
    """µs per token with the keys cached (the first call fetches from memory and is not timed)."""
    issuer = TokenIssuer()

    async def fetch(url: str) -> Any:
        return issuer.jwks() if url.endswith("/keys") else issuer.openid_configuration("http://bench")

    validator = TokenValidator(
        SigningKeys(fetch, "http://bench/common/.well-known/openid-configuration"),
        TokenPolicy(audiences=frozenset({APP})),
    )
    token = issuer.issue(APP, TENANT)
    await validator.validate(token, {TENANT})
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(count):
            await validator.validate(token, {TENANT})
        best = min(best, (time.perf_counter() - started) / count)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="write the results into docs/benchmarks.md")
    args = parser.parse_args()
    whole_2048, unwrap_2048 = decryption(2048, args.items, args.repeat)
    whole_4096, unwrap_4096 = decryption(4096, args.items, args.repeat)
    token_us = asyncio.run(token_validation(args.items, args.repeat))
    figures = {
        "decrypt_item_rsa2048_us": round(whole_2048, 1),
        "rsa2048_unwrap_us": round(unwrap_2048, 1),
        "decrypt_item_rsa4096_us": round(whole_4096, 1),
        "rsa4096_unwrap_us": round(unwrap_4096, 1),
        "validate_token_cached_keys_us": round(token_us, 1),
    }
    report = "\n".join(
        [
            f"{args.items} items / tokens per round, best of {args.repeat} rounds, one thread "
            "(a shared, loaded 2-core machine: other work ran meanwhile, so these are upper bounds)",
            "",
            "| operation | µs each |",
            "| --- | ---: |",
            f"| decrypt one item, RSA-2048 certificate (unwrap + HMAC + AES + JSON) | {whole_2048:,.1f} |",
            f"| of which the RSA-OAEP unwrap | {unwrap_2048:,.1f} |",
            f"| decrypt one item, RSA-4096 certificate | {whole_4096:,.1f} |",
            f"| of which the RSA-OAEP unwrap | {unwrap_4096:,.1f} |",
            f"| validate one validation token (RS256, keys cached) | {token_us:,.1f} |",
        ]
    )
    print(report)
    if args.write:
        write_section("richdata", "python -m bench.richdata --write", report)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
