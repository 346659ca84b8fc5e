"""What every browser test of the admin shares: the operator who logs in."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model


@pytest.fixture
def operator(transactional_db):
    """A superuser, alice, who logs in with :func:`tests.chromium.log_in`."""
    return get_user_model().objects.create_superuser("alice", "alice@example.com", "s3cret-pass")
