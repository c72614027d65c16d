"""An authenticator app on the tests' side: RFC 6238 codes computed here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time

TOTP_STEP = 30


def totp_code(secret: str, *, at: float | None = None, digits: int = 6) -> str:
    """The RFC 6238 code of a base32 secret: HMAC-SHA1 over the number of
    30-second steps since the epoch, dynamically truncated (RFC 4226)."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    counter = int((time.time() if at is None else at) // TOTP_STEP)
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 10**digits:0{digits}d}"


def current_code(secret: str) -> str:
    """The code of the current step, with a few seconds of it left to use
    (allauth accepts the current step only)."""
    left = TOTP_STEP - time.time() % TOTP_STEP
    if left < 5:
        time.sleep(left + 0.05)
    return totp_code(secret)


class AuthenticatorApp:
    """An authenticator app on the test's side: codes of one secret, never the
    same one twice. allauth remembers a code it accepted and refuses it again
    within its window, so a second code waits for the next 30-second step."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.used_steps: set[int] = set()

    def code(self) -> str:
        while True:
            now = time.time()
            step = int(now // TOTP_STEP)
            # allauth takes only the current step (MFA_TOTP_TOLERANCE is 0): a
            # code typed in the last seconds of its step could arrive too late.
            if step not in self.used_steps and (step + 1) * TOTP_STEP - now > 3:
                self.used_steps.add(step)
                return totp_code(self.secret, at=step * TOTP_STEP)
            time.sleep((step + 1) * TOTP_STEP - now + 0.05)
