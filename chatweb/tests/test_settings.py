from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from chatweb.settings import envbool, envint, envlist, envsecret

ROOT = Path(__file__).resolve().parents[2]


def test_envbool_accepts_the_usual_spellings(monkeypatch):
    monkeypatch.setenv("X_FLAG", "Yes")
    assert envbool("X_FLAG", False) is True
    monkeypatch.setenv("X_FLAG", "off")
    assert envbool("X_FLAG", True) is False
    monkeypatch.delenv("X_FLAG")
    assert envbool("X_FLAG", True) is True


def test_envbool_rejects_anything_else(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG must be true or false"):
        envbool("X_FLAG", False)


def test_envint_rejects_garbage_and_out_of_range(monkeypatch):
    monkeypatch.setenv("X_NUM", "12a")
    with pytest.raises(ImproperlyConfigured, match="must be an integer"):
        envint("X_NUM", 1)
    monkeypatch.setenv("X_NUM", "-3")
    with pytest.raises(ImproperlyConfigured, match="at least 0"):
        envint("X_NUM", 1, minimum=0)
    monkeypatch.setenv("X_NUM", "42")
    assert envint("X_NUM", 1, minimum=0) == 42


def test_envlist_splits_and_strips(monkeypatch):
    monkeypatch.setenv("X_LIST", " a.example , b.example,,")
    assert envlist("X_LIST", []) == ["a.example", "b.example"]


def test_envsecret_reads_a_file_and_refuses_both(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    assert envsecret("X_SECRET") == "from-a-file"
    monkeypatch.setenv("X_SECRET", "inline")
    with pytest.raises(ImproperlyConfigured, match="not both"):
        envsecret("X_SECRET")
    monkeypatch.delenv("X_SECRET")
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        envsecret("X_SECRET")


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DATABASE_URL", "HTTPS"}}
    clean.update(DJANGO_SETTINGS_MODULE="chatweb.settings", **env)  # production's, not the suite's
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def test_refuses_to_start_without_a_secret_key_when_debug_is_off():
    result = _manage("check", DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off" in result.stderr


def test_refuses_the_built_in_key_when_debug_is_off():
    result = _manage("check", DEBUG="false", SECRET_KEY="chatweb-insecure-development-key-do-not-use-in-production")
    assert result.returncode != 0
    assert "built-in development key" in result.stderr


def test_rejects_a_bad_database_url():
    result = _manage("check", DEBUG="true", DATABASE_URL="nonsense://")
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stderr


def test_check_deploy_is_clean_in_a_production_configuration():
    result = _manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="false",
        HTTPS="true",
        SECRET_KEY="x" * 20 + "-production-secret-key-with-enough-entropy-Q7v9",
        ALLOWED_HOSTS="chat.example.org",
        CSRF_TRUSTED_ORIGINS="https://chat.example.org",
        DATABASE_URL="postgres://chatweb:secret@db:5432/chatweb",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_postgres_urls_select_the_postgresql_backend():
    code = (
        "import django,os;os.environ['DJANGO_SETTINGS_MODULE']='chatweb.settings';"
        "from django.conf import settings;print(settings.DATABASES['default']['ENGINE'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": "postgres://u:p@db:5432/chatweb", "DEBUG": "true"},
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == "django.db.backends.postgresql", result.stderr


def test_production_hashes_passwords_with_the_strong_hasher_and_only_the_suite_does_not():
    code = (
        "from django.contrib.auth.hashers import get_hasher;"
        "h = get_hasher();print(h.algorithm, getattr(h, 'iterations', 0))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "chatweb.settings"},
        capture_output=True,
        text=True,
    )
    algorithm, iterations = result.stdout.split()
    assert algorithm == "pbkdf2_sha256" and int(iterations) >= 1_000_000, result.stderr
    from django.contrib.auth.hashers import get_hasher

    assert get_hasher().algorithm == "md5", "the suite's settings (pytest.ini) hash fast"
