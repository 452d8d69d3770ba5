"""A flow through the client openapi-python-client generates from the served document,
and nothing else: every answer must parse into its documented model (an undocumented
status raises), the heartbeat is called with no body, errors parse as ErrorBody."""

import os
import sys
import time

from python_client import AuthenticatedClient, Client
from python_client.api.admin import history, overview
from python_client.api.operations import healthz, readyz
from python_client.api.status import online_count, own_status, set_status, status, statuses
from python_client.api.stream import ticket
from python_client.api.users import (
    all_users,
    heartbeat,
    login,
    logout,
    logout_all,
    me,
    presence_history,
    register,
)
from python_client.models import (
    Availability,
    Credentials,
    ErrorBody,
    ErrorCode,
    HeartbeatBody,
    HeartbeatResponse,
    History,
    ListedUser,
    LoginResponse,
    Me,
    Overview,
    ServiceHistory,
    OwnStatus,
    Presence,
    PresenceCounts,
    PublicStatus,
    Readiness,
    Statuses,
    StatusesQuery,
    StatusUpdate,
    Ticket,
    UserList,
)

API = os.environ["API_URL"]
PASSWORD = "correct horse battery"
RUN = str(os.getpid() % 100000)


def expect(value, kind):
    assert isinstance(value, kind), f"expected {kind.__name__}, got {value!r}"
    return value


def sign_up(anonymous, name):
    credentials = Credentials(username=name, password=PASSWORD)
    expect(register.sync(client=anonymous, body=credentials), Me)
    answer = expect(login.sync(client=anonymous, body=credentials), LoginResponse)
    return answer.user, AuthenticatedClient(
        base_url=API, token=answer.token, raise_on_unexpected_status=True
    )


def main():
    anonymous = Client(base_url=API, raise_on_unexpected_status=True)
    expect(healthz.sync(client=anonymous), object)
    expect(readyz.sync(client=anonymous), Readiness)

    user, session = sign_up(anonymous, f"py{RUN}")
    expect(user, Me)
    assert user.availability == Availability.AUTO

    # The heartbeat with no body at all, then with one.
    beat = expect(heartbeat.sync(client=session), HeartbeatResponse)
    assert beat.heartbeat_interval_ms > 0
    expect(heartbeat.sync(client=session, body=HeartbeatBody(active=False)), HeartbeatResponse)

    mine = expect(me.sync(client=session), Me)
    assert mine.id == user.id and mine.username == f"py{RUN}"
    update = StatusUpdate(availability=Availability.AWAY, text="from python")
    own = expect(set_status.sync(client=session, body=update), OwnStatus)
    assert own.presence == Presence.AWAY and own.status_text == "from python"
    expect(own_status.sync(client=session), OwnStatus)
    shown = expect(status.sync(user.id, client=session), PublicStatus)
    assert shown.presence == Presence.AWAY and shown.dnd_until is None
    many = expect(statuses.sync(client=session, body=StatusesQuery(ids=[user.id, 999_999_999])), Statuses)
    assert [s.id for s in many.statuses] == [user.id] and many.missing == [999_999_999]
    expect(online_count.sync(client=session), PresenceCounts)
    expect(presence_history.sync(user.id, client=session), History)
    expect(ticket.sync(client=session), Ticket)

    missing = expect(status.sync(999_999_999, client=session), ErrorBody)
    assert missing.error.code == ErrorCode.NOT_FOUND
    refused = expect(all_users.sync(client=session), ErrorBody)
    assert refused.error.code == ErrorCode.FORBIDDEN
    invalid = expect(set_status.sync(client=session, body=StatusUpdate(text="x" * 101)), ErrorBody)
    assert invalid.error.code == ErrorCode.INVALID_FIELD and invalid.error.field == "text"

    admin_login = login.sync(
        client=anonymous,
        body=Credentials(username=os.environ["ADMIN_USERNAME"], password=os.environ["ADMIN_PASSWORD"]),
    )
    admin = AuthenticatedClient(
        base_url=API, token=expect(admin_login, LoginResponse).token, raise_on_unexpected_status=True
    )
    page = expect(all_users.sync(client=admin, limit=1), UserList)
    assert page.count == 1 and isinstance(page.next_, str)
    everyone = []
    cursor = None
    while True:
        page = expect(all_users.sync(client=admin, limit=2, **({"cursor": cursor} if cursor else {})), UserList)
        everyone += [expect(u, ListedUser) for u in page.users]
        if page.next_ is None:
            break
        cursor = page.next_
    assert user.id in [u.id for u in everyone]
    expect(overview.sync(client=admin), Overview)
    expect(history.sync(client=admin), ServiceHistory)

    assert logout.sync_detailed(client=session).status_code == 204
    gone = expect(me.sync(client=session), ErrorBody)
    assert gone.error.code == ErrorCode.UNAUTHENTICATED
    _, other = sign_up(anonymous, f"py2{RUN}")
    assert logout_all.sync_detailed(client=other).status_code == 204


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"   python flow passed in {time.monotonic() - started:.1f} s", file=sys.stderr)
