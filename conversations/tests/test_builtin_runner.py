"""One answer's tool runner: its limits, and what a bad call tells the model."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from conversations.builtin import runner, sandbox


@pytest.fixture(autouse=True)
def sandbox_dir(settings):
    path = Path(tempfile.mkdtemp(prefix="chatweb-sandbox-"))
    os.chmod(path, 0o711)
    settings.SANDBOX_DIR = path
    yield path
    shutil.rmtree(path, ignore_errors=True)


def tools(enabled=("python", "browser"), key="c1"):
    return runner.AnswerTools(sandbox_key=key, enabled=list(enabled))


def run(t, recipient, text):
    return t.run(recipient, text, t.start(recipient, text), lambda: False)


def test_the_step_limit_tells_the_model_on_the_last_call_and_refuses_the_next(settings):
    settings.TOOL_STEPS = 2
    t = tools()
    assert not run(t, "python", "print(1)").last
    last = run(t, "python", "print(2)")
    assert last.last and last.text == "2\n\n[That was the last tool call allowed in this answer: answer now.]"
    refused = run(t, "python", "print(3)")
    assert refused.last and refused.step == {"status": "limit", "limit": "steps"}
    assert refused.text.startswith("Not run: the limit of 2 tool calls in one answer is reached.")


def test_the_answers_time_limit(settings):
    settings.TOOL_ANSWER_SECONDS = 1
    t = tools()
    t.started -= 2
    refused = run(t, "python", "print(1)")
    assert refused.step["limit"] == "time" and "Not run" in refused.text


def test_a_call_gets_at_most_what_is_left_of_the_answers_time(settings):
    settings.TOOL_ANSWER_SECONDS, settings.TOOL_CALL_SECONDS = 30, 30
    t = tools()
    t.started -= 28.5
    outcome = run(t, "python", "import time\ntime.sleep(10)")
    assert outcome.step["stopped_by"] == "wall" and outcome.step["status"] == "limit"


def test_a_tool_not_enabled_is_not_run(sandbox_dir):
    outcome = run(tools(enabled=("browser",)), "python", "open('/mnt/data/x', 'w')")
    assert outcome.text == "There is no tool 'python' here." and outcome.step["status"] == "failed"
    assert not (sandbox_dir / "c1").exists()


@pytest.mark.parametrize(
    "text, said",
    [("{not json", "not JSON"), ("[1]", "a JSON object"), ('{"query": ""}', "search needs a query")],
)
def test_bad_browser_arguments_are_said_to_the_model(text, said):
    outcome = run(tools(), "browser.search", text)
    assert outcome.step["status"] == "failed" and said in outcome.text


def test_what_the_model_reads_of_a_call_is_cut(settings):
    settings.TOOL_OUTPUT_CHARS = 100
    outcome = run(tools(), "python", "print('y' * 5000)")
    assert outcome.text.startswith("y" * 100 + "\n[output cut: 4901 more characters")
    assert outcome.step["output"] == "y" * 100


def test_an_api_answers_files_go_when_it_ends(sandbox_dir):
    t = runner.runner_for(enabled=["python"], conversation_id=None, request_id="abc123")
    run(t, "python", "open('/mnt/data/x', 'w').write('1')")
    assert (sandbox_dir / "rabc123" / "x").exists()
    t.close()
    assert not (sandbox_dir / "rabc123").exists()
    kept = runner.runner_for(enabled=["python"], conversation_id=7, request_id="abc")
    run(kept, "python", "open('/mnt/data/x', 'w').write('1')")
    kept.close()
    assert (sandbox_dir / "c7" / "x").exists()
    assert runner.runner_for(enabled=[], conversation_id=7, request_id="abc") is None


def test_deleting_a_conversation_deletes_its_files(db, sandbox_dir, users, django_capture_on_commit_callbacks):
    from conversations.models import Conversation

    conv = Conversation.objects.create(owner=users.alice)
    key = f"c{conv.pk}"
    run(tools(key=key), "python", "open('/mnt/data/x', 'w').write('1')")
    assert (sandbox_dir / key).exists()
    with django_capture_on_commit_callbacks(execute=True):
        conv.delete()
        assert (sandbox_dir / key).exists()  # not before the deletion is committed
    assert not (sandbox_dir / key).exists()
    assert sandbox.workdir(key) == sandbox_dir / key


@pytest.mark.django_db
def test_the_users_tool_calls_per_day_are_counted_across_answers(users, redis_server):
    """The day's quota holds across answers (and surfaces: the chat and the API share it);
    the answer's own step limit is checked first, so a refused step takes nothing."""
    from accounts.models import SiteSettings
    from accounts.quotas import limits_for

    site = SiteSettings.load()
    assert limits_for(users.alice, site).tool_calls_per_day == site.default_tool_calls_per_day == 500
    users.alice.tool_calls_per_day = 2
    users.alice.save()
    first = runner.AnswerTools(sandbox_key="c1", enabled=["python"], user_id=users.alice.pk)
    assert run(first, "python", "print(1)").text == "1\n"
    second = runner.AnswerTools(sandbox_key="c1", enabled=["python"], user_id=users.alice.pk)
    assert run(second, "python", "print(2)").last  # the day's last: the model is told
    refused = run(second, "python", "print(3)")
    assert refused.step == {"status": "limit", "limit": "quota"}
    assert refused.text.startswith("Not run: the user's 2 tool calls for today are used up.")
    bob = runner.AnswerTools(sandbox_key="c2", enabled=["python"], user_id=users.bob.pk)
    assert run(bob, "python", "print(4)").text == "4\n"  # another user's day is his own
