"""An open chat socket ends with its user's access: deactivated, demoted, deleted or logged out.

No engine: the conversations use a model no worker serves, so a turn that got past the
user check would be refused with `no_worker`; these tests look for the user refusal.
"""

from __future__ import annotations

import pytest
import requests
from django.conf import settings
from django.contrib.sessions.models import Session
from websockets.exceptions import ConnectionClosed

from accounts.models import Role, User
from accounts.services import user_set_active, user_set_role
from conftest import ChatSocket, session_cookie
from conversations.models import Conversation, Message, MessageStatus

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

CLOSE_UNAUTHENTICATED, CLOSE_NOT_APPROVED = 4001, 4003


def closed_with(socket: ChatSocket, timeout: float = 10) -> int:
    """The close code the server ends this socket with (events before it are skipped)."""
    try:
        while True:
            socket.recv(timeout=timeout)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, "the connection dropped without a close frame"
        return exc.rcvd.code
    except TimeoutError:
        pytest.fail(f"the socket was still open {timeout} s after the change")


def still_serves(socket: ChatSocket) -> bool:
    socket.send(type="ping")
    return socket.recv(timeout=10)["type"] == "pong"


def logout_over_http(server, cookie: str) -> None:
    """Sign out the way the page does: allauth's logout form, through daphne."""
    http = requests.Session()
    http.cookies.set(settings.SESSION_COOKIE_NAME, cookie)
    assert http.get(f"{server.url}/accounts/logout/", timeout=10).status_code == 200
    token = http.cookies[settings.CSRF_COOKIE_NAME]
    answer = http.post(
        f"{server.url}/accounts/logout/",
        data={"csrfmiddlewaretoken": token},
        headers={"Origin": server.url, "Referer": f"{server.url}/accounts/logout/"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302, answer.status_code
    assert not Session.objects.filter(session_key=cookie).exists()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda user: user_set_active(user=user, active=False), CLOSE_UNAUTHENTICATED),
        (lambda user: user_set_role(user=user, role=Role.PENDING), CLOSE_NOT_APPROVED),
        (lambda user: user.delete(), CLOSE_UNAUTHENTICATED),
    ],
    ids=["deactivated", "demoted_to_pending", "deleted"],
)
def test_an_open_socket_closes_when_its_user_loses_access(live_daphne, users, orphan, change, code):
    alices = ChatSocket(live_daphne, users.alice, Conversation.objects.create(owner=users.alice, model=orphan).pk)
    bobs = ChatSocket(live_daphne, users.bob, Conversation.objects.create(owner=users.bob, model=orphan).pk)
    try:
        assert still_serves(alices) and still_serves(bobs)  # both joined before the change
        change(users.alice)
        assert closed_with(alices) == code
        assert still_serves(bobs)  # another user's socket is left alone
    finally:
        alices.close()
        bobs.close()


def test_logging_out_closes_the_sockets_of_that_session_only(live_daphne, users, orphan):
    conv = Conversation.objects.create(owner=users.alice, model=orphan)
    laptop, phone = session_cookie(users.alice), session_cookie(users.alice)
    on_laptop = ChatSocket(live_daphne, users.alice, conv.pk, cookie=laptop)
    on_phone = ChatSocket(live_daphne, users.alice, conv.pk, cookie=phone)
    try:
        assert still_serves(on_laptop) and still_serves(on_phone)
        logout_over_http(live_daphne, laptop)
        assert closed_with(on_laptop) == CLOSE_UNAUTHENTICATED
        # Django's logout ends one session: the phone stays signed in, and its turns get
        # past the user check (to the missing worker)
        on_phone.send(type="send", content="still here")
        assert on_phone.recv(timeout=10)["code"] == "no_worker"
    finally:
        on_laptop.close()
        on_phone.close()


def _deactivate_quietly(user: User, cookie: str) -> None:
    User.objects.filter(pk=user.pk).update(is_active=False)


def _demote_quietly(user: User, cookie: str) -> None:
    User.objects.filter(pk=user.pk).update(role=Role.PENDING)


def _flush_quietly(user: User, cookie: str) -> None:
    Session.objects.filter(session_key=cookie).delete()


@pytest.mark.parametrize(
    ("change", "code", "close"),
    [
        (_deactivate_quietly, "unauthenticated", CLOSE_UNAUTHENTICATED),
        (_demote_quietly, "not_approved", CLOSE_NOT_APPROVED),
        (_flush_quietly, "unauthenticated", CLOSE_UNAUTHENTICATED),
    ],
    ids=["deactivated", "demoted_to_pending", "logged_out"],
)
def test_a_frame_after_the_user_lost_access_is_refused_and_stores_nothing(
    live_daphne, users, orphan, change, code, close
):
    """The change reaches the database without its signal, as when a frame races the close."""
    conv = Conversation.objects.create(owner=users.alice, model=orphan, title="t", title_auto=False)
    question = Message.objects.create(conversation=conv, role="user", content="a question")
    answer = Message.objects.create(
        conversation=conv,
        parent=question,
        role="assistant",
        content="the stored answer",
        status=MessageStatus.DONE,
        request_id="req-old",
    )
    frames = [
        {"type": "send", "content": "one more", "parent_id": answer.pk},
        {"type": "regenerate", "message_id": answer.pk},
        {"type": "sync", "message_id": answer.pk},  # would read the stored answer
        {"type": "stop", "request_id": "req-old"},
    ]
    # one socket per frame, each on its own session: a refused frame ends its socket
    cookies = [session_cookie(users.alice) for _ in frames]
    sockets = [ChatSocket(live_daphne, users.alice, conv.pk, cookie=cookie) for cookie in cookies]
    try:
        assert all(still_serves(socket) for socket in sockets)
        for cookie in cookies:
            change(users.alice, cookie)
        for socket, frame in zip(sockets, frames, strict=True):
            socket.send(**frame)
            event = socket.recv(timeout=10)
            assert event["type"] == "error" and event["code"] == code, (frame, event)
            assert "the stored answer" not in str(event)
            assert closed_with(socket) == close, frame
    finally:
        for socket in sockets:
            socket.close()
    assert list(Message.objects.filter(conversation=conv).order_by("pk")) == [question, answer]
    answer.refresh_from_db()
    assert answer.status == MessageStatus.DONE
