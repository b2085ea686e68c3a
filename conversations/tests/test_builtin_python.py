"""The python tool's sandbox, attacked from inside. Each test runs real code in
real bubblewrap and would pass the attack if its guard were removed."""

import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conversations.builtin import sandbox

LIMITS = sandbox.Limits(cpu_seconds=1, wall_seconds=10, memory_mb=256, processes=16, file_mb=1, output_chars=500)


@pytest.fixture(autouse=True)
def sandbox_dir(settings):
    # Not under tmp_path: pytest makes that 0700, and the sandbox's user must pass through.
    path = Path(tempfile.mkdtemp(prefix="chatweb-sandbox-"))
    settings.SANDBOX_DIR = path
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run(code, key="c1", **changes):
    limits = sandbox.Limits(**{**LIMITS.__dict__, **changes})
    return sandbox.run_python(code, key, limits)


def test_the_machine_has_the_sandbox():
    assert sandbox.available() is None


def test_a_calculation_prints_its_result():
    result = run("print(sum(range(10)))")
    assert (result.output, result.exit_code, result.stopped_by, result.cut) == ("45\n", 0, "", 0)
    assert result.for_model() == "45\n"


def test_an_error_reaches_the_model_as_its_traceback():
    result = run("1/0")
    assert result.exit_code == 1
    assert "ZeroDivisionError" in result.for_model()


def test_no_network_not_even_the_hosts_loopback():
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(3)
    port = listener.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(_accept(listener)), daemon=True).start()
    code = f"""
import socket
for host in ("127.0.0.1", "1.1.1.1"):
    try:
        socket.create_connection((host, {port}), timeout=2)
        print("connected", host)
    except OSError as exc:
        print("refused", host, exc.errno)
"""
    result = run(code)
    assert "connected" not in result.output
    assert result.output.count("refused") == 2
    listener.close()
    assert accepted in ([], [None])


def _accept(listener):
    try:
        return listener.accept()
    except OSError:
        return None


def test_the_hosts_files_secrets_and_database_are_not_there(settings, tmp_path):
    secret = tmp_path / "secret_key"
    secret.write_text("the-real-secret")
    database = settings.DATABASES["default"]["NAME"]
    targets = [str(secret), str(database), settings.BASE_DIR / "chatweb" / "settings.py", "/etc/passwd"]
    code = f"""
import os
for path in {[str(t) for t in targets]!r}:
    for candidate in (path, "/proc/1/root" + path, "/proc/self/root" + path):
        try:
            print("READ", candidate, open(candidate).read()[:20])
        except OSError as exc:
            print("no", candidate, type(exc).__name__)
print("env", sorted(os.environ))
print("root", sorted(os.listdir("/")))
"""
    result = run(code, output_chars=5000)
    assert "READ" not in result.output
    assert "the-real-secret" not in result.output
    assert "env ['HOME', 'LANG', 'MPLBACKEND', 'PATH', 'PWD', 'PYTHONIOENCODING']" in result.output
    assert "root ['bin', 'dev', 'lib', 'lib64', 'mnt', 'proc', 'tmp', 'usr']" in result.output
    assert os.environ.get("SECRET_KEY")  # the test process has it; the sandbox did not


def test_a_fork_bomb_is_stopped_at_the_process_limit_and_leaves_nothing_behind():
    code = """
import os, time
made = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        made += 1
except OSError as exc:
    print("stopped after", made, "forks, errno", exc.errno)
"""
    result = run(code, processes=16)
    assert result.stopped_by == ""
    made = int(result.output.split()[2])
    assert made < 16, result.output
    assert not _sandbox_processes(), "a forked child outlived its sandbox"


def _sandbox_processes():
    """Sandboxed pythons still alive, once the kernel has had two seconds to end them."""
    deadline = time.monotonic() + 2
    while (found := _sandboxed_pythons()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _sandboxed_pythons():
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[1:4] == [b"-I", b"-u", b"-"] and not _zombie(entry.name):
                        found.append(entry.name)
            except OSError:
                pass
    return found


def _zombie(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def test_a_memory_hog_is_refused_its_memory():
    result = run("x = bytearray(600 << 20)\nprint('allocated', len(x))", memory_mb=256)
    assert "allocated" not in result.output
    assert "MemoryError" in result.output


def test_an_endless_loop_is_stopped_by_its_cpu_limit():
    result = run("while True:\n    pass", cpu_seconds=1, wall_seconds=20)
    assert result.stopped_by == "cpu"
    assert result.for_model().endswith("[stopped: the CPU-time limit was reached]")


def test_a_sleeper_is_stopped_by_the_wall_clock():
    result = run("import time\nprint('going to sleep', flush=True)\ntime.sleep(120)", wall_seconds=1)
    assert result.stopped_by == "wall"
    assert result.output == "going to sleep\n"
    assert "wall-time limit" in result.for_model()
    assert not _sandbox_processes()


def test_a_huge_print_is_cut():
    result = run("print('x' * 1_000_000)\nprint('tail')", output_chars=500)
    assert result.output == "x" * 500
    assert result.cut == 1_000_006 - 500
    assert "[output cut: 999506 more characters were not kept]" in result.for_model()


def test_a_file_past_the_size_limit_is_not_written():
    result = run("open('big', 'wb').write(b'x' * (3 << 20))\nprint('wrote')", file_mb=1)
    assert "wrote" not in result.output
    assert "File too large" in result.output


def test_files_stay_with_their_conversation_and_go_with_it(sandbox_dir):
    assert run("open('notes.txt', 'w').write('kept')", key="c7").exit_code == 0
    assert run("print(open('/mnt/data/notes.txt').read())", key="c7").output == "kept\n"
    other = run("import os\nprint(os.listdir('/mnt/data'))", key="c8")
    assert other.output == "[]\n"
    sandbox.remove_workdir("c7")
    assert not (sandbox_dir / "c7").exists()


def test_a_cancelled_run_stops():
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 3

    result = sandbox.run_python("import time\ntime.sleep(60)", "c1", LIMITS, cancelled=cancelled)
    assert result.stopped_by == "cancelled"
    assert not _sandbox_processes()


@pytest.mark.parametrize("key", ["", "../x", "a/b", "c 1"])
def test_a_bad_key_is_refused(key):
    with pytest.raises(ValueError):
        sandbox.workdir(key)
