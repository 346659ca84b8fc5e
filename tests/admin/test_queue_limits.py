"""Queue limits in the admin: the "Limits" column, the limits on the queue's page and its form
(a POST, only with ``limit_queue``; only the knobs changed on the page are set; recorded in the
admin log and the audit trail), and the job page naming the limit that holds a job back."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client

from django_taskengine import operations
from django_taskengine.models import AuditEntry, Queue
from tests.admin_helpers import admin_url, content, messages_of, staff_client
from tests.factories import QueueFactory
from tests.testapp.flow_tasks import flow_step

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
#: What a queue row holds of its limits.
LIMIT_FIELDS = ("concurrency", "rate_limit", "runtime_limits", "limits_changed_by")


def limits_of(name: str) -> tuple:
    return Queue.objects.filter(name=name).values_list(*LIMIT_FIELDS).first()


def start(session, limit: int = 10) -> list[int]:
    """Start what the limits let start, as a worker does; the ids started."""
    session.flow.notified()
    return [job.id for job in session.claim(limit)]


@pytest.fixture
def flow_settings(settings):
    """``TASKENGINE["QUEUES"]`` limits queue "flow" to 5 at once, written to its row."""
    settings.TASKENGINE = {**settings.TASKENGINE, "QUEUES": {"flow": {"concurrency": 5}}}
    operations.sync_settings()
    return settings


def form_data(**fields: str) -> dict[str, str]:
    """The limits form as the page sends it when nothing is touched on a queue without runtime
    values (both knobs "use the setting"), with ``fields`` changed."""
    data = {
        "concurrency": "",
        "concurrency_setting": "on",
        "concurrency_shown": "setting",
        "rate_limit": "",
        "rate_limit_setting": "on",
        "rate_limit_shown": "setting",
    }
    data.update(fields)
    return {key: value for key, value in data.items() if value is not None}


# -- the list -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_queue_list_shows_limits_with_their_usage(admin_client, session):
    operations.set_queue_limits("flow", concurrency=2, rate_limit="100/h")
    QueueFactory(name="emails")
    for _ in range(3):
        flow_step.enqueue()
    assert len(start(session)) == 2

    html = content(admin_client.get(admin_url("queue_changelist")))

    assert 'class="column-limits"' in html
    assert (
        '<td class="field-limits">concurrency 2/2 running, rate 100/h: 2 starts in the last '
        "hour</td>"
    ) in html
    assert '<td class="field-limits">—</td>' in html  # emails: no limit


def test_the_limits_column_reads_usage_once_for_the_page(
    admin_client, django_assert_max_num_queries
):
    for n in range(3):
        operations.set_queue_limits(f"q{n}", concurrency=n + 1)
    with django_assert_max_num_queries(20) as few:
        admin_client.get(admin_url("queue_changelist"))
    for n in range(3, 40):
        operations.set_queue_limits(f"q{n}", concurrency=n + 1)
    with django_assert_max_num_queries(len(few.captured_queries)):
        html = content(admin_client.get(admin_url("queue_changelist")))
    assert '<td class="field-limits">concurrency 0/40 running</td>' in html


# -- the page -------------------------------------------------------------------------------


def test_queue_page_shows_limits_in_force_from_settings_at_runtime_and_who(
    admin_client, flow_settings
):
    operations.set_queue_limits("flow", rate_limit="14/s", by="alice")

    html = content(admin_client.get(admin_url("queue_change", "flow")))

    assert '<td id="limits-in-force">concurrency 5, rate 14/s</td>' in html
    assert '<td id="limits-usage">concurrency 0/5 running, rate 14/s: 0 starts' in html
    assert '<td id="limits-settings">concurrency 5 <span' in html
    assert '<td id="limits-runtime">rate 14/s <span' in html
    changed = html[html.index('<td id="limits-changed">') :]
    assert changed.startswith('<td id="limits-changed">by alice ') and " s ago (" in changed
    form = html[html.index('id="queue-limits-form"') :]
    assert 'name="concurrency" value=""' in form
    assert '<input type="checkbox" name="concurrency_setting" value="on" checked>' in form
    assert "use the setting: 5</label>" in form
    assert "use the setting: no limit</label>" in form
    assert 'name="rate_limit" value="14/s"' in form
    assert '<input type="checkbox" name="rate_limit_setting" value="on">' in form
    assert '<input type="hidden" name="rate_limit_shown" value="14/s">' in form
    assert 'data-action="limit-queue"' in form


def test_queue_page_of_a_queue_never_limited(admin_client):
    QueueFactory(name="emails")

    html = content(admin_client.get(admin_url("queue_change", "emails")))

    assert '<td id="limits-in-force">no limit</td>' in html
    assert '<td id="limits-usage">nothing to count</td>' in html
    assert '<td id="limits-changed">never at runtime</td>' in html


# -- the form -------------------------------------------------------------------------------


def test_the_form_sets_concurrency_and_lifts_the_rate_and_records_who_and_why(
    admin_client, flow_settings
):
    page = admin_url("queue_change", "flow")

    response = admin_client.post(
        admin_url("queue_limit", "flow"),
        form_data(concurrency="3", concurrency_setting=None, rate_limit_setting=None)
        | {"reason": "SES quota", "next": page},
        follow=True,
    )

    assert response.redirect_chain[-1][0] == page
    assert messages_of(response) == [
        "Limits of queue “flow” now: concurrency 3. Every worker applies them from its next claim."
    ]
    assert limits_of("flow") == (3, "", {"concurrency": 3, "rate_limit": None}, "admin")
    audited = AuditEntry.objects.values_list("action", "object_id", "actor", "source", "reason")
    assert list(audited) == [("set_queue_limits", "flow", "admin", "admin", "SES quota")]
    [log] = LogEntry.objects.all()
    assert log.get_change_message() == (
        "Set the limits of queue flow: concurrency 3 (runtime values: concurrency 3, "
        "rate none (no limit))."
    )


def test_use_the_setting_clears_the_runtime_value(admin_client, flow_settings):
    operations.set_queue_limits("flow", concurrency=9, rate_limit="1/m")

    admin_client.post(
        admin_url("queue_limit", "flow"),
        form_data(
            concurrency="9",
            concurrency_shown="9",
            rate_limit="1/m",
            rate_limit_setting=None,
            rate_limit_shown="1/m",
        ),
    )

    assert limits_of("flow")[:3] == (5, "1/m", {"rate_limit": "1/m"})


def test_only_the_knobs_changed_on_the_page_are_set(admin_client, flow_settings):
    # The page showed both knobs on their settings; meanwhile someone set the concurrency.
    operations.set_queue_limits("flow", concurrency=9, by="bob")

    admin_client.post(
        admin_url("queue_limit", "flow"),
        form_data(rate_limit="14/s", rate_limit_setting=None),
    )

    assert limits_of("flow")[:3] == (9, "14/s", {"concurrency": 9, "rate_limit": "14/s"})


def test_a_form_with_nothing_changed_changes_nothing(admin_client, flow_settings):
    response = admin_client.post(admin_url("queue_limit", "flow"), form_data(), follow=True)

    assert messages_of(response) == [
        "The limits of queue “flow” were left as they were: no value changed."
    ]
    assert limits_of("flow")[2] == {}
    assert not AuditEntry.objects.exists() and not LogEntry.objects.exists()


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"concurrency": "0"}, "concurrency: '0' is not a number of jobs"),
        ({"concurrency": "lots"}, "concurrency: 'lots' is not a number of jobs"),
        ({"rate_limit": "14"}, "rate_limit: the rate must be written N/s, N/m or N/h"),
        ({"rate_limit": "0/s"}, "rate_limit: the rate: N must be between 1 and 100000"),
    ],
)
def test_a_bad_value_changes_nothing_and_says_why(admin_client, flow_settings, fields, error):
    knob = next(iter(fields))
    before = limits_of("flow")

    response = admin_client.post(
        admin_url("queue_limit", "flow"),
        form_data(**fields, **{f"{knob}_setting": None}),
        follow=True,
    )

    [message] = messages_of(response)
    assert message.startswith("Nothing was changed. ") and error in message
    assert limits_of("flow") == before
    assert not AuditEntry.objects.exists()


def test_a_value_typed_with_use_the_setting_still_ticked_is_refused(admin_client, flow_settings):
    response = admin_client.post(
        admin_url("queue_limit", "flow"), form_data(concurrency="3"), follow=True
    )

    assert messages_of(response) == [
        "Nothing was changed. Concurrency: give a value or tick “use the setting”, not both."
    ]
    assert limits_of("flow")[2] == {}


def test_limits_of_an_unknown_queue_are_not_set(admin_client):
    response = admin_client.post(
        admin_url("queue_limit", "nope"),
        form_data(concurrency="1", concurrency_setting=None),
        follow=True,
    )

    assert messages_of(response) == ["No queue named “nope”; nothing changed."]
    assert not Queue.objects.filter(name="nope").exists()


# -- safety ---------------------------------------------------------------------------------


def test_get_on_the_limit_url_is_405_and_changes_nothing(admin_client, flow_settings):
    response = admin_client.get(admin_url("queue_limit", "flow"), form_data(concurrency="1"))

    assert response.status_code == 405 and response["Allow"] == "POST"
    assert limits_of("flow")[2] == {}


def test_a_post_without_the_csrf_token_is_refused(flow_settings):
    from django.contrib.auth.models import User

    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_superuser("root", "root@example.com", "unused"))

    response = client.post(
        admin_url("queue_limit", "flow"), form_data(concurrency="1", concurrency_setting=None)
    )

    assert response.status_code == 403
    assert limits_of("flow")[2] == {}


def test_without_limit_queue_there_is_no_form_and_a_forged_post_is_403(flow_settings):
    client = staff_client("view_queue", "pause_queue")

    html = content(client.get(admin_url("queue_change", "flow")))
    assert '<td id="limits-in-force">concurrency 5</td>' in html  # shown, read-only
    assert 'id="queue-limits-form"' not in html and 'data-action="limit-queue"' not in html
    response = client.post(
        admin_url("queue_limit", "flow"), form_data(concurrency="1", concurrency_setting=None)
    )

    assert response.status_code == 403
    assert limits_of("flow")[2] == {}
    assert not AuditEntry.objects.exists()


def test_limit_queue_alone_is_enough_to_see_queues_and_set_limits(flow_settings):
    client = staff_client("limit_queue", username="capacity")

    assert client.get(admin_url("queue_changelist")).status_code == 200
    html = content(client.get(admin_url("queue_change", "flow")))
    assert 'data-action="limit-queue"' in html
    assert 'data-action="pause-queue"' not in html
    client.post(
        admin_url("queue_limit", "flow"), form_data(concurrency="2", concurrency_setting=None)
    )

    assert limits_of("flow")[:2] == (2, "")
    assert limits_of("flow")[3] == "capacity"


def test_limits_and_who_set_them_are_shown_escaped(admin_client):
    QueueFactory(name=SCRIPT)
    operations.set_queue_limits(SCRIPT, concurrency=1, by=SCRIPT, reason=SCRIPT)

    for url in (admin_url("queue_changelist"), admin_url("queue_change", SCRIPT)):
        html = content(admin_client.get(url))
        assert SCRIPT not in html, url
        assert ESCAPED in html, url
    response = admin_client.post(
        admin_url("queue_limit", SCRIPT),
        form_data(concurrency="2", concurrency_setting=None, concurrency_shown="1"),
        follow=True,
    )
    assert SCRIPT not in content(response)
    assert f"Limits of queue “{ESCAPED}” now: concurrency 2." in content(response)


# -- why ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_job_page_names_the_limit_that_holds_the_job_back(admin_client, session):
    operations.set_queue_limits("flow", concurrency=1)
    first, second = flow_step.enqueue(), flow_step.enqueue()
    assert start(session) == [first.id]

    html = content(admin_client.get(admin_url("job_change", second.id)))

    assert "The limit of queue &#x27;flow&#x27; is reached: concurrency 1/1 running." in html
