"""The monitor page in a real Chromium against a real host running the patterns test app.

Every check of what the page did goes through the management API, never through the page itself.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from classifier_cli.files import find_images, task_payload
from durable_host.testing import HostProcess
from tests.browser.conftest import Api, wait_for
from tests.conftest import REPO_ROOT
from tests.fixtures.app_host import RANDOM_WEIGHTS, local_state

pytestmark = [pytest.mark.browser]

#: Set to a folder (``docs``) to save the README's screenshots there.
SCREENSHOTS = os.environ.get("MONITOR_SCREENSHOTS")


def epoch_ms(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def open_list(driver: WebDriver, api: Api) -> None:
    driver.get(api.monitor + "#/")
    driver.execute_script("sessionStorage.clear()")
    driver.refresh()  # a fresh page: no filters, page size or refresh settings left from a previous test
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#instance-rows tr[data-id]"), message="instance rows")


def open_instance(driver: WebDriver, api: Api, instance_id: str) -> None:
    driver.get(f"{api.monitor}#/instances/{instance_id}")
    wait_for(lambda: driver.find_element(By.ID, "gantt"), message="the timeline")


def shown_ids(driver: WebDriver) -> set[str]:
    return {
        row.get_attribute("data-id") or ""
        for row in driver.find_elements(By.CSS_SELECTOR, "#instance-rows tr[data-id]")
    }


def confirm(driver: WebDriver, action: str, **fields: str) -> str:
    """Click an action, fill its confirmation dialog, confirm, and return the result the page shows."""
    wait_for(lambda: driver.find_element(By.ID, f"action-{action}").is_enabled(), message=f"{action} enabled")
    driver.find_element(By.ID, f"action-{action}").click()
    dialog = wait_for(lambda: driver.find_element(By.CSS_SELECTOR, "dialog[open]"), message="confirmation dialog")
    for field_id, value in fields.items():
        element = dialog.find_element(By.ID, field_id)
        element.clear()
        element.send_keys(value)
    # The previous action's result stays on the page until this one's handler replaces it: clear it first, or
    # a read right after the click can return the old text (seen once in CI: "Resume requested" for a raise).
    driver.execute_script("document.getElementById('action-result').textContent = ''")
    dialog.find_element(By.ID, "confirm-ok").click()
    text: str = wait_for(
        lambda: (t := driver.find_element(By.ID, "action-result").text) and not t.endswith("…") and t,
        message=f"{action} result",
    )
    return text


def test_the_startup_listing_links_the_monitor_page(api: Api) -> None:
    assert f"Monitor: {api.monitor}" in api.host.output
    assert api.session.get(api.monitor).headers["Content-Type"].startswith("text/html")
    assert api.session.get(api.monitor.rstrip("/"), allow_redirects=False).status_code == 302
    assert api.session.get(api.monitor + "app.js").headers["Content-Type"].startswith("text/javascript")
    assert api.session.get(api.monitor + "nothing.js").status_code == 404


def test_list_counts_filters_and_paging(driver: WebDriver, api: Api) -> None:
    prefix = f"list-{uuid.uuid4().hex[:6]}"
    done = [api.start("hello_sequence", instance_id=f"{prefix}-ok-{i}") for i in range(3)]
    failed = api.start("failing_orch", instance_id=f"{prefix}-bad")
    running = api.start("wait_forever", instance_id=f"{prefix}-wait")
    padding = [api.start("hello_sequence", instance_id=f"pad-{prefix}-{i}") for i in range(6)]  # two pages of 10
    for instance_id in [*done, failed, *padding]:
        api.wait(instance_id)
    api.wait(running, until=("Running",))

    open_list(driver, api)
    by_status: dict[str, int] = {}
    for item in api.instances(showInput="false"):
        by_status[item["runtimeStatus"]] = by_status.get(item["runtimeStatus"], 0) + 1

    def counts() -> dict[str, int]:
        buttons = driver.find_elements(By.CSS_SELECTOR, "#counts button[data-status]")
        return {b.get_attribute("data-status") or "": int(b.get_attribute("data-count") or 0) for b in buttons}

    wait_for(lambda: counts() == by_status, message=f"counts {by_status}")

    # Filter: id prefix and one status, through the form.
    driver.find_element(By.ID, "filter-instanceIdPrefix").send_keys(prefix)
    driver.find_element(By.CSS_SELECTOR, "input[name=runtimeStatus][value=Failed]").click()
    driver.find_element(By.ID, "apply-filters").click()
    wait_for(lambda: shown_ids(driver) == {failed}, message="only the failed instance")
    assert driver.find_element(By.CSS_SELECTOR, f'tr[data-id="{failed}"]').get_attribute("data-status") == "Failed"

    # A count button filters by its status.
    driver.find_element(By.ID, "clear-filters").click()
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#counts button[data-status=Running]"))
    driver.find_element(By.CSS_SELECTOR, "#counts button[data-status=Running]").click()
    wait_for(
        lambda: (
            running in shown_ids(driver)
            and all(
                row.get_attribute("data-status") == "Running"
                for row in driver.find_elements(By.CSS_SELECTOR, "#instance-rows tr[data-id]")
            )
        ),
        message="running instances only",
    )

    # Name (client side) and created-time range (API side).
    driver.find_element(By.ID, "clear-filters").click()
    wait_for(lambda: driver.find_element(By.ID, "filter-name"))
    driver.find_element(By.ID, "filter-instanceIdPrefix").send_keys(prefix)
    driver.find_element(By.ID, "filter-name").send_keys("hello")
    driver.find_element(By.ID, "apply-filters").click()
    wait_for(lambda: shown_ids(driver) == set(done), message="the hello_sequence instances")
    driver.find_element(By.ID, "clear-filters").click()
    wait_for(lambda: driver.find_element(By.ID, "filter-createdTimeFrom"))
    driver.execute_script("document.getElementById('filter-createdTimeFrom').value = '2001-01-01T00:00:00';")
    driver.execute_script("document.getElementById('filter-createdTimeTo').value = '2001-01-02T00:00:00';")
    driver.find_element(By.ID, "apply-filters").click()
    wait_for(
        lambda: driver.find_elements(By.CSS_SELECTOR, "#instance-rows td.empty"), message="nothing created in 2001"
    )

    # Paging with the continuation token: pages of 10 cover every instance once.
    driver.find_element(By.ID, "clear-filters").click()
    wait_for(lambda: driver.find_element(By.ID, "filter-top"))
    Select(driver.find_element(By.ID, "filter-top")).select_by_value("10")
    driver.find_element(By.ID, "apply-filters").click()
    seen: list[str] = []
    while True:
        page = wait_for(lambda: shown_ids(driver), message="a page")
        seen += sorted(page)
        button = driver.find_element(By.ID, "next-page")
        if not button.is_enabled():
            break
        label: str = driver.find_element(By.ID, "page-label").text
        button.click()

        def moved(label: str = label) -> bool:
            return bool(driver.find_element(By.ID, "page-label").text != label)

        wait_for(moved, message="next page")
    everything = {item["instanceId"] for item in api.instances(showInput="false")}
    assert len(seen) == len(set(seen)) and set(seen) == everything
    assert not driver.find_element(By.ID, "page-label").text.startswith("Page 1 ")
    driver.find_element(By.ID, "clear-filters").click()  # back to the first page of the new query
    wait_for(lambda: driver.find_element(By.ID, "page-label").text.startswith("Page 1 "), message="page 1")


def test_an_instance_page_keeps_refreshing_after_a_failed_load(driver: WebDriver, api: Api) -> None:
    """Opened before its instance exists (a session task waiting its turn), the page shows the 404 and
    then the instance once it is there."""
    instance_id = f"later-{uuid.uuid4().hex[:6]}"
    open_list(driver, api)
    driver.execute_script("sessionStorage.setItem('monitor.interval', '2')")
    driver.get(f"{api.monitor}#/instances/{instance_id}")
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#instance-body .error"), message="the 404")
    api.start("hello_sequence", instance_id=instance_id)
    wait_for(lambda: driver.find_elements(By.ID, "gantt"), message="the instance, once it exists", timeout=30)


def test_a_stored_key_is_not_sent_to_another_origin(driver: WebDriver, api: Api) -> None:
    open_list(driver, api)
    driver.execute_script(
        "sessionStorage.setItem('monitor.base', arguments[0]); sessionStorage.setItem('monitor.code', 'secret')",
        api.base,
    )
    driver.get(f"{api.monitor}?base={api.base}#/")
    assert driver.find_element(By.CSS_SELECTOR, "#connection-form [name=code]").get_attribute("value") == "secret"
    driver.get(f"{api.monitor}?base=http://127.0.0.1:9#/")
    assert driver.find_element(By.CSS_SELECTOR, "#connection-form [name=code]").get_attribute("value") == ""
    driver.execute_script("sessionStorage.clear()")


def test_auto_refresh_keeps_selection_and_scroll(driver: WebDriver, api: Api) -> None:
    for i in range(30):
        api.start("hello_sequence", instance_id=f"scroll-{i:02d}-{uuid.uuid4().hex[:4]}")
    open_list(driver, api)
    Select(driver.find_element(By.ID, "refresh-interval")).select_by_value("2")
    rows = wait_for(
        lambda: (r := driver.find_elements(By.CSS_SELECTOR, "#instance-rows tr[data-id]")) and len(r) > 20 and r
    )
    target = rows[20]
    target_id = target.get_attribute("data-id")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", target)
    target.find_element(By.CSS_SELECTOR, "td:nth-child(2)").click()
    scroll = driver.execute_script("return window.scrollY")
    assert scroll > 0
    stamp = driver.find_element(By.ID, "last-refresh").text
    wait_for(lambda: driver.find_element(By.ID, "last-refresh").text != stamp, timeout=12, message="an auto-refresh")
    selected = driver.find_elements(By.CSS_SELECTOR, "#instance-rows tr.selected")
    assert [row.get_attribute("data-id") for row in selected] == [target_id]
    assert driver.execute_script("return window.scrollY") == scroll
    # Keyboard: the row links take focus and the arrow keys move between them, selecting as they go.
    link = selected[0].find_element(By.TAG_NAME, "a")
    link.send_keys(Keys.ARROW_DOWN)
    focused = driver.switch_to.active_element
    assert focused.get_attribute("class") == "instance-link"
    assert driver.find_element(By.CSS_SELECTOR, "#instance-rows tr.selected a").text == focused.text != target_id


def bars(driver: WebDriver) -> list[dict[str, Any]]:
    return [
        {
            "kind": row.get_attribute("data-kind"),
            "name": row.get_attribute("data-name"),
            "outcome": row.get_attribute("data-outcome"),
            "start": float(row.get_attribute("data-start") or "nan"),
            "end": float(row.get_attribute("data-end") or "nan"),
            "attempt": row.get_attribute("data-attempt"),
        }
        for row in driver.find_elements(By.CSS_SELECTOR, "#gantt li.gantt-row")
    ]


def history_bars(history: list[dict[str, Any]]) -> list[tuple[str, str, float, float]]:
    """One (kind, outcome, start, end) per task, from the API's history: the bars the page must draw."""
    kinds = {
        "TaskCompleted": ("activity", "completed"),
        "TaskFailed": ("activity", "failed"),
        "SubOrchestrationInstanceCompleted": ("suborchestration", "completed"),
        "SubOrchestrationInstanceFailed": ("suborchestration", "failed"),
    }
    out = []
    timers: dict[str, float] = {}
    for ev in history:
        if ev["EventType"] in kinds:
            kind, outcome = kinds[ev["EventType"]]
            out.append((kind, outcome, epoch_ms(ev["ScheduledTime"]), epoch_ms(ev["Timestamp"])))
        elif ev["EventType"] == "TimerCreated":
            timers[ev["FireAt"]] = epoch_ms(ev["Timestamp"])
        elif ev["EventType"] == "TimerFired":
            out.append(("timer", "fired", timers.pop(ev["FireAt"]), epoch_ms(ev["Timestamp"])))
    return sorted(out, key=lambda b: b[2])


def test_gantt_bars_match_the_history_with_retries_and_sub_orchestrations(driver: WebDriver, api: Api) -> None:
    parent = api.start("parent_orch", f"key-{uuid.uuid4().hex[:6]}")
    api.wait(parent)
    history = api.status(parent, history=True).json()["historyEvents"]
    expected = history_bars(history)
    open_instance(driver, api, parent)
    drawn = bars(driver)
    assert drawn[0]["kind"] == "orchestration" and drawn[0]["outcome"] == "completed"
    tasks = sorted(((b["kind"], b["outcome"], b["start"], b["end"]) for b in drawn[1:]), key=lambda b: b[2])
    assert [(k, o) for k, o, _, _ in tasks] == [(k, o) for k, o, _, _ in expected]
    for (_, _, start, end), (_, _, want_start, want_end) in zip(tasks, expected, strict=True):
        assert abs(start - want_start) < 0.01 and abs(end - want_end) < 0.01
    # The sub-orchestration retried twice: three bars for flaky_child, attempts 1 to 3, the first two failed.
    flaky = [b for b in drawn if b["name"] == "flaky_child"]
    assert [(b["attempt"], b["outcome"]) for b in flaky] == [("1", "failed"), ("2", "failed"), ("3", "completed")]
    assert len([b for b in drawn if b["name"].startswith("retry delay")]) == 2
    # Bars sit where their times say: the left edge of each is its start on the instance's time axis.
    geometry = driver.execute_script(
        """const track = document.querySelector('#gantt li:nth-child(1) .gantt-track').getBoundingClientRect();
        return [...document.querySelectorAll('#gantt li.gantt-row')].map(li => {
          const bar = li.querySelector('.gantt-bar').getBoundingClientRect();
          return [Number(li.dataset.start), (bar.left - track.left) / track.width];
        });"""
    )
    t0, t1 = drawn[0]["start"], drawn[0]["end"]
    for start, fraction in geometry:
        assert abs(fraction - (start - t0) / (t1 - t0)) < 0.01

    # Drill-down: the named child's link opens it.
    link = wait_for(
        lambda: [
            a
            for a in driver.find_elements(By.CSS_SELECTOR, "#suborchestrations a.sub-link")
            if a.get_attribute("data-instance") == f"{parent}-named"
        ],
        message="the named child's link",
    )[0]
    link.click()
    wait_for(lambda: driver.find_element(By.ID, "instance-name").text == "child_orch", message="the child's page")
    assert f"{parent}-named" in driver.find_element(By.ID, "instance-title").text


def test_retries_failures_search_and_timers(driver: WebDriver, api: Api) -> None:
    retried = api.start("retry_orch", {"key": uuid.uuid4().hex, "fail_times": 2, "max_attempts": 3})
    assert api.wait(retried)["output"] == "ok after 3"
    open_instance(driver, api, retried)
    flaky = [b for b in bars(driver) if b["name"] == "flaky"]
    assert [(b["attempt"], b["outcome"]) for b in flaky] == [("1", "failed"), ("2", "failed"), ("3", "completed")]
    # History search.
    search = driver.find_element(By.ID, "history-search")
    search.send_keys("TaskFailed")
    wait_for(lambda: driver.find_element(By.ID, "history-count").text.startswith("2 of "), message="two failures")
    visible = [r for r in driver.find_elements(By.CSS_SELECTOR, "#history-rows tr") if r.is_displayed()]
    assert {r.get_attribute("data-type") for r in visible} == {"TaskFailed"}

    failed = api.start("failing_orch")
    api.wait(failed)
    open_instance(driver, api, failed)
    assert "kaboom" in driver.find_element(By.ID, "failure-message").text
    assert driver.find_element(By.ID, "instance-status").text == "Failed"
    assert driver.find_element(By.ID, "action-rewind").is_enabled()
    assert not driver.find_element(By.ID, "action-terminate").is_enabled()

    timer = api.start("timer_orch", 30)
    api.wait(timer, until=("Running",))
    open_instance(driver, api, timer)
    pending = wait_for(lambda: driver.find_element(By.CSS_SELECTOR, "#gantt li[data-kind=timer] .gantt-duration"))
    wait_for(lambda: pending.text.startswith("fires in "), message="a live countdown")
    first = pending.text
    wait_for(lambda: pending.text != first, timeout=5, message="the countdown moving")
    confirm(driver, "terminate")
    assert api.wait(timer)["runtimeStatus"] == "Terminated"


def test_large_payloads_are_collapsed_until_opened(driver: WebDriver, api: Api) -> None:
    big = {"blob": "x" * 50_000}
    instance_id = api.start("wait_forever", big)
    api.wait(instance_id, until=("Running",))
    open_instance(driver, api, instance_id)
    details = driver.find_element(By.CSS_SELECTOR, "#instance-input details.payload")
    assert "input · " in details.text and not details.find_elements(By.TAG_NAME, "pre")
    details.find_element(By.TAG_NAME, "summary").click()

    def full_text_shown() -> bool:  # filled on the toggle event, which comes after the click returns
        opened = driver.find_element(By.CSS_SELECTOR, "#instance-input details.payload[open]")
        return len(opened.find_element(By.TAG_NAME, "pre").text) > 50_000

    wait_for(full_text_shown, message="the input opened in full")
    # the instance changes, so the view is rendered again: what the user opened stays open
    go = {"answer": "y" * 500}
    assert api.session.post(f"{api.mgmt}/instances/{instance_id}/raiseEvent/go", json=go).status_code == 202
    api.wait(instance_id)
    wait_for(
        lambda: driver.find_element(By.CSS_SELECTOR, "#instance-output details.payload"), message="the re-rendered view"
    )
    wait_for(full_text_shown, message="the input still open after the refresh")
    output = driver.find_element(By.CSS_SELECTOR, "#instance-output details.payload")
    assert output.get_attribute("open") is None, "a payload the user did not open stays closed"


def test_terminate_then_purge(driver: WebDriver, api: Api) -> None:
    instance_id = api.start("wait_forever")
    api.wait(instance_id, until=("Running",))
    open_instance(driver, api, instance_id)
    result = confirm(driver, "terminate", **{"confirm-reason": "stopped by the browser test"})
    assert "HTTP 202" in result
    body = api.wait(instance_id)
    assert body["runtimeStatus"] == "Terminated" and body["output"] == "stopped by the browser test"
    wait_for(lambda: driver.find_element(By.ID, "instance-status").text == "Terminated", message="page refreshed")
    result = confirm(driver, "purge")
    assert "1 instance(s) deleted" in result
    assert api.status(instance_id).status_code == 404
    # A refusal is shown too: terminate of a finished instance answers 410.
    finished = api.start("hello_sequence")
    api.wait(finished)
    open_instance(driver, api, finished)
    driver.execute_script("document.getElementById('action-terminate').disabled = false")
    assert "refused: HTTP 410" in confirm(driver, "terminate")


def test_suspend_resume_raise_event_rewind_and_restart(driver: WebDriver, api: Api) -> None:
    instance_id = api.start("wait_forever")
    api.wait(instance_id, until=("Running",))
    open_instance(driver, api, instance_id)
    assert "HTTP 202" in confirm(driver, "suspend")
    api.wait(instance_id, until=("Suspended",))
    wait_for(lambda: driver.find_element(By.ID, "instance-status").text == "Suspended")
    assert "HTTP 202" in confirm(driver, "resume")
    api.wait(instance_id, until=("Running",))
    wait_for(lambda: driver.find_element(By.ID, "instance-status").text == "Running")
    assert "raised (HTTP 202)" in confirm(driver, "raise", **{"confirm-event": "go", "confirm-data": '{"x": 1}'})
    assert api.wait(instance_id)["output"] == {"go": {"x": 1}}

    rewindable = api.start("rewindable")
    assert api.wait(rewindable)["runtimeStatus"] == "Failed"
    open_instance(driver, api, rewindable)
    assert "HTTP 202" in confirm(driver, "rewind")
    assert api.wait(rewindable)["runtimeStatus"] == "Completed"

    wait_for(lambda: driver.find_element(By.ID, "instance-status").text == "Completed")
    assert "Restart accepted (HTTP 202)" in confirm(driver, "restart")
    new_id = driver.find_element(By.ID, "restarted-link").text
    assert new_id != rewindable
    assert api.wait(new_id)["name"] == "rewindable"


def test_a_thousand_activity_fan_out_stays_responsive(driver: WebDriver, api: Api) -> None:
    instance_id = api.start("fan_out_fan_in", 1000)
    assert api.wait(instance_id, timeout=60)["output"] == sum(2 * i for i in range(1000))
    driver.get(api.monitor + "#/")
    wait_for(lambda: driver.find_element(By.ID, "instances"))
    started = time.perf_counter()
    driver.execute_script(f"location.hash = '#/instances/{instance_id}'")
    wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#gantt li.gantt-row")) == 1001, timeout=30)
    render_s = time.perf_counter() - started
    started = time.perf_counter()
    driver.find_element(By.ID, "history-search").send_keys("double")
    wait_for(lambda: driver.find_element(By.ID, "history-count").text.startswith("1000 of "), timeout=10)
    search_s = time.perf_counter() - started
    print(f"\n1,000-activity instance: page with timeline in {render_s:.2f} s, history search in {search_s:.2f} s")
    assert render_s < 10 and search_s < 3


@pytest.mark.skipif(not SCREENSHOTS, reason="set MONITOR_SCREENSHOTS=docs to refresh the README's screenshots")
def test_screenshots(driver: WebDriver, api: Api) -> None:
    folder = Path(SCREENSHOTS or ".")
    folder.mkdir(parents=True, exist_ok=True)
    parent = api.start("parent_orch", f"shot-{uuid.uuid4().hex[:6]}")
    api.wait(parent)
    api.start("wait_forever")
    driver.set_window_size(1400, 900)
    open_list(driver, api)
    time.sleep(0.5)
    driver.save_screenshot(str(folder / "monitor_list.png"))
    open_instance(driver, api, parent)
    time.sleep(1)
    driver.save_screenshot(str(folder / "monitor_instance.png"))
    driver.set_window_size(1400, 1000)


@pytest.fixture(scope="module")
def classifier_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """This project's app (random weights: nothing to download) on a fresh hub, database and blob folder."""
    data = tmp_path_factory.mktemp("monitor-app")
    env = {
        **RANDOM_WEIGHTS,
        **local_state(data),
    }
    with HostProcess(REPO_ROOT, env=env, hub_dir=data / "hub", startup_timeout=120) as host:
        yield Api(host)


def test_this_apps_classification_task(driver: WebDriver, classifier_api: Api, shared_images_dir: Path) -> None:
    api = classifier_api
    images = find_images(sorted(shared_images_dir.glob("*.jpg"))[:3])
    r = api.session.post(f"{api.base}/api/tasks", json=task_payload(images, ["resnet18"], 3))
    assert r.status_code == 202, r.text
    task = r.json()["id"]
    status = api.wait(task, timeout=120)
    assert status["runtimeStatus"] == "Completed"
    open_instance(driver, api, task)
    assert driver.find_element(By.ID, "instance-name").text == "classify_images"
    # The custom status {"images_done": 3, "images_total": 3, ...} is drawn as a progress bar.
    progress = driver.find_element(By.ID, "progress-images")
    assert (progress.get_attribute("value"), progress.get_attribute("max")) == ("3", "3")
    history = api.status(task, history=True).json()["historyEvents"]
    expected = [(k, o) for k, o, _, _ in history_bars(history)]
    drawn = bars(driver)[1:]
    assert sorted((b["kind"], b["outcome"]) for b in drawn) == sorted(expected)
    assert [b["name"] for b in drawn].count("preprocess_images") == 1  # the 3 images are one batch
    assert {"classify_batch", "persist_results"} <= {b["name"] for b in drawn}
    # And the list shows it with its progress.
    open_list(driver, api)
    row = driver.find_element(By.CSS_SELECTOR, f'tr[data-id="{task}"]')
    assert "images 3/3" in row.find_element(By.CSS_SELECTOR, "td.custom-status").text


def test_dark_mode_and_labels(driver: WebDriver, api: Api) -> None:
    """Every control has an accessible name, and the page follows prefers-color-scheme."""
    instance_id = api.start("hello_sequence")
    api.wait(instance_id)
    unlabelled_script = """return [...document.querySelectorAll('input, select, textarea, button')].filter(el =>
        !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim()
    ).map(el => el.outerHTML);"""
    background = "return getComputedStyle(document.body).backgroundColor"
    try:
        for scheme, color in (("light", "rgb(255, 255, 255)"), ("dark", "rgb(13, 17, 23)")):
            driver.execute_cdp_cmd(
                "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": scheme}]}
            )
            open_list(driver, api)
            assert driver.execute_script(background) == color
            assert driver.execute_script(unlabelled_script) == []
            open_instance(driver, api, instance_id)
            assert driver.execute_script(background) == color
            assert driver.execute_script(unlabelled_script) == []
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
