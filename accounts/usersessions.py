"""allauth's sessions, with the security log.

Every way of ending sessions goes through the adapter's ``end_sessions``: the
profile's buttons (accounts.services), allauth's own Sessions page ("Sign Out
Other Sessions"), a password reset or change or 2FA turned on or off
(accounts.signals), and staff deleting one in the admin (accounts.admin). It
logs the ending there, once, whoever asked for it.
"""

from __future__ import annotations

from collections.abc import Iterable

from allauth.usersessions.adapter import DefaultUserSessionsAdapter
from allauth.usersessions.models import UserSession

from accounts.devices import device_describe
from accounts.models import SecurityEvent
from accounts.services import security_event_record


class UserSessionsAdapter(DefaultUserSessionsAdapter):
    def end_sessions(self, sessions: Iterable[UserSession]) -> None:
        """allauth's, then one "Other sessions ended" line in the owner's
        security log, with the address and browser of the request that ended
        them, or, ended by staff (the admin), naming the staff member;
        nothing when there was no session to end.

        A row whose session is gone already is removed without a line: after
        a password change it is the browser that made the change, its session
        renewed under a new key (``update_session_auth_hash``)."""
        sessions = list(sessions)
        live = [session for session in sessions if session.exists()]
        super().end_sessions(sessions)
        by_owner: dict[int, list[UserSession]] = {}
        for session in live:
            by_owner.setdefault(session.user_id, []).append(session)
        ender = getattr(self.request, "user", None)
        for ended in by_owner.values():
            owner = ended[0].user
            # Staff in the admin (accounts.admin): the log says who, and keeps
            # staff's address and browser out of the user's log, as for a
            # second factor staff remove (accounts.signals).
            by_staff = ender is not None and ender.is_staff and ender.pk != owner.pk
            detail = _sessions_detail(ended)
            security_event_record(
                user=owner,
                kind=SecurityEvent.Kind.SESSIONS_ENDED,
                request=None if by_staff else self.request,
                detail=f"by staff {ender.get_username()}: {detail}"
                if by_staff
                else detail,
            )


def _sessions_detail(sessions: list[UserSession]) -> str:
    """'Safari on iOS, 203.0.113.5' for one session; for several, how many
    and as many of them as the detail holds."""
    described = [f"{device_describe(s.user_agent)}, {s.ip}" for s in sessions]
    if len(described) == 1:
        return described[0]
    return f"{len(described)} sessions: " + "; ".join(described)
