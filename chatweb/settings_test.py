"""Settings for the test suite: production's, with a fast password hasher.

Production hashes with PBKDF2 at Django's iteration count, on purpose slow: every
test user, login and signup would pay for it (a second or more each on a busy
2-core machine). pytest.ini names this module, and the daphne and worker processes
the tests start inherit it. chatweb/tests/test_settings.py checks that production
keeps the strong hasher.
"""

from chatweb.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
