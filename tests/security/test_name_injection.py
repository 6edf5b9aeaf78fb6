"""A name that carries a link or an advert is not echoed into the SMS or email we send.

The review's attacks (issue #14): a contact request named "evil.example/pay Now" got the SMS
"Hi evil.example/pay!", and an email-only one named "Buy cheap pills at http://spam.example"
got an email opening "Hei Buy cheap pills at http://spam.example". Here intake, callback,
history, the worker and the relay run as real processes, and the SMS gateway and the SMTP
server are real network peers: the test reads what a customer's phone and inbox received.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateways import SmsGateway, SmtpInbox
from tests.support.stack import Stack, delivering_to, running_stack

pytestmark = pytest.mark.e2e

PHISHING_NAME = "evil.example/pay Now"
PHISHING_PHONE = "+358401110081"
PHISHING_EMAIL = "target@example.fi"
SPAM_NAME = "Buy cheap pills at http://spam.example"
SPAM_EMAIL = "relay-victim@example.fi"
CUSTOMER_NAME = "Maija Meikäläinen"
CUSTOMER_PHONE = "+358401110082"
CUSTOMER_EMAIL = "maija.injection@example.fi"


@pytest.fixture
def stack(
    base_env: dict[str, str], clean_db: None, gateway: SmsGateway, inbox: SmtpInbox, tmp_path: Path
) -> Iterator[Stack]:
    extra = delivering_to(gateway, inbox, tmp_path / "sink")
    names = ("history", "callback", "intake", "worker", "relay")
    with running_stack(base_env, tmp_path / "logs", extra, names) as running:
        yield running


def _without_our_links(text: str, stack: Stack) -> str:
    """The text less our own self-service links, which are the only "http" we ever send."""
    ours = f"{stack.url('intake')}/v1/self/"
    return " ".join(word for word in text.split() if not word.startswith(ours))


def _body(message: EmailMessage) -> str:
    return str(message.get_content()).replace("\r\n", "\n")


@pytest.mark.timeout(90)
async def test_a_name_with_a_link_is_not_sent_and_a_real_name_still_is(
    stack: Stack,
    gateway: SmsGateway,
    inbox: SmtpInbox,
    make_key: Callable[..., Awaitable[str]],
) -> None:
    writer = {"authorization": f"Bearer {await make_key('intake:write')}"}
    requests: list[dict[str, Any]] = [
        {"name": PHISHING_NAME, "phone": PHISHING_PHONE, "email": PHISHING_EMAIL},
        {"name": SPAM_NAME, "email": SPAM_EMAIL},
        {"name": CUSTOMER_NAME, "phone": CUSTOMER_PHONE, "email": CUSTOMER_EMAIL},
    ]
    async with httpx.AsyncClient(timeout=10) as http:
        for fields in requests:
            answer = await http.post(
                f"{stack.url('intake')}/v1/contact-requests",
                json={"channel": "web", "language": "fi", **fields},
                headers=writer,
            )
            assert answer.status_code == 202, answer.text

        sms = {
            r.json()["to"]: r.json()["text"] for r in await asyncio.to_thread(gateway.wait_for, 2)
        }
        emails = {str(m["To"]): m for m in await asyncio.to_thread(inbox.wait_for, 3)}

        # The agent still sees the name as it was typed; only our messages leave it out.
        admin = {"authorization": f"Bearer {await make_key('admin')}"}
        listed = await http.get(f"{stack.url('callback')}/v1/callbacks", headers=admin)
        assert listed.status_code == 200, listed.text
        names = {c["phone"]: c["name"] for c in listed.json()["items"]}
        assert names[PHISHING_PHONE] == PHISHING_NAME

    assert set(sms) == {PHISHING_PHONE, CUSTOMER_PHONE}
    assert set(emails) == {PHISHING_EMAIL, SPAM_EMAIL, CUSTOMER_EMAIL}

    # The SMS to the phishing name's number greets without a name, and no part of it is left.
    phishing_sms = _without_our_links(sms[PHISHING_PHONE], stack)
    assert sms[PHISHING_PHONE].startswith("Hei! Saimme soittopyyntösi."), sms[PHISHING_PHONE]
    for needle in ("evil", "example", "pay", "Now", "http"):
        assert needle not in phishing_sms, sms[PHISHING_PHONE]
    confirmation = _body(emails[PHISHING_EMAIL])
    assert confirmation.startswith("Hei,\n\nkiitos yhteydenotostasi."), confirmation
    for needle in ("evil", "example", "pay", "Now", "http"):
        assert needle not in _without_our_links(confirmation, stack), confirmation

    # The email-only contact gets the acknowledgement, and none of the advert.
    acknowledgement = _body(emails[SPAM_EMAIL])
    assert acknowledgement.startswith("Hei,\n\nkiitos viestistäsi."), acknowledgement
    for needle in ("Buy", "pills", "http", "spam.example"):
        assert needle not in acknowledgement, acknowledgement
    assert str(emails[SPAM_EMAIL]["Subject"]) == "Olemme vastaanottaneet viestisi"

    # A real customer loses nothing: greeted by first name in the SMS, in full in the email.
    assert sms[CUSTOMER_PHONE].startswith("Hei Maija! Saimme soittopyyntösi."), sms[CUSTOMER_PHONE]
    customer_email = _body(emails[CUSTOMER_EMAIL])
    assert customer_email.startswith("Hei Maija Meikäläinen,\n\nkiitos"), customer_email
