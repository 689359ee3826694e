"""The e-mail corpus of tests/email: raw messages written for these tests, each beside a
`.expected.json` sidecar saying what the pure layer must read from it and which outcome the
intake gives it when the accounts 100000..100199 (`user<ID>@example.com`) exist and nothing
else is stored (`dependsOn` names the earlier files a duplicate or a reply needs first).
Files are received in name order.

The 2 MB attachment is built here at test time rather than committed.
"""

import base64
import json
import random
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "email"
AUTHSERV_ID = "mx.claimdesk.example"
SUPPORT_EMAIL = "support@claimdesk.example"
MARKETS = frozenset(
    {"SOL_USDC", "BTC_USDC", "ETH_USDC", "USDT_USDC", "SOL_USDC_PERP", "BTC_USDC_PERP", "ETH_USDC_PERP"}
)
TWO_MEGABYTES = 2 * 1024 * 1024


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.eml"))


def expected(path: Path) -> dict:
    return json.loads(path.with_name(path.name.replace(".eml", ".expected.json")).read_text("utf-8"))


def two_megabyte_message() -> tuple[bytes, dict]:
    """A verified claim with a 2 MiB attachment (random bytes, so it is as large base64-encoded)."""
    content = random.Random(2).randbytes(TWO_MEGABYTES)
    raw = (
        (
            "From: user100083@example.com\nTo: support@claimdesk.example\nSubject: Screen recording\n"
            f"Authentication-Results: {AUTHSERV_ID}; dmarc=pass header.from=example.com\n"
            "Message-ID: <big-0001@example.com>\nMIME-Version: 1.0\n"
            'Content-Type: multipart/mixed; boundary="big"\n\n--big\nContent-Type: text/plain; charset=utf-8\n\n'
            "The recording shows my ETH-PERP liquidation, trade 982079.\n--big\n"
            'Content-Type: video/mp4; name="recording.mp4"\nContent-Transfer-Encoding: base64\n'
            'Content-Disposition: attachment; filename="recording.mp4"\n\n'
        ).encode()
        + base64.encodebytes(content)
        + b"--big--\n"
    )
    sidecar = {
        "outcome": "new_claim",
        "userId": 100083,
        "parseable": True,
        "verified": True,
        "ignoredReason": None,
        "fromAddress": "user100083@example.com",
        "messageId": "big-0001@example.com",
        "inReplyTo": [],
        "references": [],
        "kind": "liquidation",
        "symbols": ["ETH_USDC_PERP"],
        "tradeIds": [982079],
        "orderIds": [],
        "withdrawalIds": [],
        "txHashes": [],
        "amounts": [],
        "namedUserId": None,
        "attachments": [{"filename": "recording.mp4", "contentType": "video/mp4", "size": TWO_MEGABYTES}],
    }
    return raw, sidecar
