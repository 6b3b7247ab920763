"""The console's pages against the real stack (real Kafka, PostgreSQL and the four services):
first through its ASGI app in-process, then in a real headless Chromium driving the console
process. Screenshots go to `.local/console-screenshots/`."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from console.app import build
from console.settings import ConsoleSettings
from tally_contracts import topics
from tally_contracts.invoicing import Price, PutPriceList
from tally_contracts.topics import dlq

from .conftest import SCREENSHOTS, ConsoleStack

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@contextlib.asynccontextmanager
async def in_process(stack: ConsoleStack) -> AsyncIterator[httpx.AsyncClient]:
    """The console app in this process (lifespan included), on the stack's services and topics."""
    env = stack.console.env
    settings = ConsoleSettings(
        kafka_bootstrap=env["TALLY_KAFKA_BOOTSTRAP"],
        topic_prefix=env["TALLY_TOPIC_PREFIX"],
        console_dir=stack.console_dir,
        invoicing_url=stack.url("invoicing"),
        rules_url=stack.url("rules"),
        credits_url=stack.url("credits"),
        payments_url=stack.url("payments"),
    )
    app = build(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as client,
    ):
        yield client


@contextlib.asynccontextmanager
async def logged_in(stack: ConsoleStack) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(stack) as client:
        form = await client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None, form.text
        done = await client.post(
            "/login", data={"csrf": token.group(1), "operator": "operator", "password": stack.password()}
        )
        assert done.status_code == 303, done.text
        yield client


async def test_search_finds_a_customer_by_a_part_of_its_name(console_stack: ConsoleStack) -> None:
    seeded = console_stack.seeded
    async with logged_in(console_stack) as client:
        page = await client.get("/customers", params={"q": "demo LTD"})

    listed = page.text.split('id="customers"')[1]
    assert f">{seeded.customer}</a>" in listed and seeded.unpriced_customer not in listed


async def test_customer_page_lists_invoices_balances_and_the_rule_set(console_stack: ConsoleStack) -> None:
    seeded = console_stack.seeded
    async with logged_in(console_stack) as client:
        page = await client.get(f"/customers/{seeded.customer}")

    assert page.status_code == 200, page.text
    invoices = page.text.split('id="invoices"')[1].split("</table>")[0]
    assert seeded.invoice_id in invoices and "20.00 USD" in invoices and "25.00 USD" in invoices
    balances = page.text.split('id="balances"')[1].split("</table>")[0]
    assert "<td>USD</td>" in balances and "0.00 USD" in balances  # the 5.00 grant is spent
    assert f"{seeded.rule_set_id} v1</a>" in page.text


async def test_invoice_page_shows_the_adjustment_with_its_rule_and_the_credit_with_its_grant(
    console_stack: ConsoleStack,
) -> None:
    seeded = console_stack.seeded
    async with logged_in(console_stack) as client:
        page = await client.get(f"/invoices/{seeded.invoice_id}")

    assert page.status_code == 200, page.text
    adjustment = re.search(r'<tr class="line adjustment">(.*?)</tr>', page.text, re.S)
    assert adjustment is not None, page.text
    assert "monthly-minimum" in adjustment.group(1) and f"{seeded.rule_set_id}</a> v1" in adjustment.group(1)
    assert "15.00 USD" in adjustment.group(1)
    assert f'/customers/{seeded.customer}/grants/{seeded.grant_id}"' in page.text
    assert re.search(r'id="amount-due"[^>]*>20\.00 USD<', page.text)
    timeline = page.text.split('id="timeline"')[1]
    assert (
        timeline.index("InvoiceClosed")
        < timeline.index("InvoiceAdjusted")
        < timeline.index("InvoiceFinalized")
    )


async def test_a_correlation_id_links_the_events_it_produced_in_every_service(
    console_stack: ConsoleStack,
) -> None:
    seeded = console_stack.seeded
    async with logged_in(console_stack) as client:
        ledger = await client.get(f"/customers/{seeded.customer}/ledger")
        flows = re.findall(r'class="flow" href="/flows/([^"]+)"', ledger.text)
        assert flows, ledger.text
        pages = [(await client.get(f"/flows/{f}")).text for f in flows]

    charged = [p for p in pages if "AddCharge" in p]
    assert charged, "no ledger entry links to the AddCharge's flow"
    for where in ("invoicing.commands", "invoicing.events", "rules.events", "credits.events"):
        assert where in charged[0], where


async def test_dry_run_shows_the_lines_a_rule_set_would_add_to_a_closed_invoice(
    console_stack: ConsoleStack,
) -> None:
    seeded = console_stack.seeded
    async with logged_in(console_stack) as client:
        page = await client.get(f"/rule-sets/{seeded.rule_set_id}", params={"invoice_id": seeded.invoice_id})

    result = page.text.split('id="would-add"')[1].split("</table>")[0]
    assert "monthly-minimum" in result and "15.00 USD" in result


async def test_lag_page_reads_every_service_metrics(console_stack: ConsoleStack) -> None:
    async with logged_in(console_stack) as client:
        page = await client.get("/lag")

    rows = re.findall(
        r"<tr><td><a href=\"[^\"]+/health\">(\w+)</a></td><td>(\w+)</td><td class=\"num\">(\d+)</td>",
        page.text,
    )
    assert sorted(r[0] for r in rows) == ["credits", "invoicing", "payments", "rules"], page.text
    assert all(status == "ok" for _, status, _ in rows), rows


async def test_a_dead_letter_that_is_not_text_is_not_replayed_and_the_page_says_why(
    console_stack: ConsoleStack,
) -> None:
    marker = f"junk-{console_stack.seeded.customer}"
    await console_stack.kafka.send(dlq(topics.USAGE), f"not a dead letter {marker}".encode(), key=marker)
    async with logged_in(console_stack) as client:
        listed = await client.get("/dead-letters/usage")
        articles = re.findall(
            r'<article class="letter" id="letter-(\d+)-(\d+)">(.*?)</article>', listed.text, re.S
        )
        [(partition, offset, body)] = [a for a in articles if marker in a[2]]
        assert "Cannot be replayed" in body and 'class="replay"' not in body
        token = re.search(r'name="csrf" value="([^"]+)"', listed.text)
        assert token is not None
        form = {"csrf": token.group(1), "partition": partition, "offset": offset}

        refused = await client.post("/dead-letters/usage/replay", data=form)
        shown = await client.get(refused.headers["location"])

    assert refused.status_code == 303
    assert "Not replayed: " in shown.text and "the value is not text and cannot be replayed" in shown.text


# --- in a real headless Chromium -------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed "
            "(apt-get install -y chromium chromium-driver): the browser tests need them"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.implicitly_wait(0)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


def shoot(driver: Any, name: str) -> None:
    """A full-page screenshot: the window is stretched to the page's height first."""
    width = driver.get_window_size()["width"]
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, max(600, min(int(height) + 120, 4000)))
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    driver.set_window_size(width, 900)


def wait_for(driver: Any, css: str, text: str | None = None, timeout: float = 30) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    located = (By.CSS_SELECTOR, css)
    condition = (
        ec.text_to_be_present_in_element(located, text) if text else ec.presence_of_element_located(located)
    )
    WebDriverWait(driver, timeout).until(condition)
    return driver.find_element(By.CSS_SELECTOR, css)


def log_in(driver: Any, stack: ConsoleStack, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(stack.console_url + "/login")
    driver.find_element(By.ID, "operator").clear()
    driver.find_element(By.ID, "operator").send_keys("operator")
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "log-in").click()


async def test_browser_a_wrong_password_is_refused(console_stack: ConsoleStack, browser: Any) -> None:
    log_in(browser, console_stack, "not-the-password")

    error = wait_for(browser, "#login-error")
    assert "Wrong operator name or password" in error.text
    shoot(browser, "login-failed")
    browser.get(console_stack.console_url + "/customers")
    assert "/login" in browser.current_url


async def test_browser_find_customer_open_invoice_see_rule_follow_credit_to_grant(
    console_stack: ConsoleStack, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    seeded = console_stack.seeded
    log_in(browser, console_stack, console_stack.password())
    wait_for(browser, "#q").send_keys(seeded.customer)
    browser.find_element(By.ID, "search").click()
    wait_for(browser, "#customers", seeded.customer)
    shoot(browser, "customers")
    browser.find_element(By.LINK_TEXT, seeded.customer).click()
    wait_for(browser, "#invoices", seeded.invoice_id)
    shoot(browser, "customer")
    browser.find_element(By.LINK_TEXT, seeded.invoice_id).click()

    adjustment = wait_for(browser, "tr.line.adjustment")
    assert "monthly-minimum" in adjustment.text and f"{seeded.rule_set_id} v1" in adjustment.text
    assert "15.00 USD" in adjustment.text
    assert browser.find_element(By.ID, "amount-due").text == "20.00 USD"
    shoot(browser, "invoice")
    browser.set_window_size(390, 844)
    shoot(browser, "invoice-phone")
    browser.set_window_size(1280, 900)

    browser.find_element(By.CSS_SELECTOR, "a.source.grant").click()
    amount = wait_for(browser, "#grant-amount")
    assert amount.text == "5.00 USD"
    assert "CreditApplied" in browser.find_element(By.ID, "grant-history").text
    shoot(browser, "grant")
    browser.get(f"{console_stack.console_url}/customers/{seeded.customer}/ledger")
    wait_for(browser, "#ledger")
    shoot(browser, "ledger")
    browser.get(f"{console_stack.console_url}/rule-sets/{seeded.rule_set_id}?invoice_id={seeded.invoice_id}")
    wait_for(browser, "#would-add", "monthly-minimum")
    shoot(browser, "rule-set-dry-run")
    browser.get(console_stack.console_url + "/lag")
    wait_for(browser, "#lag", "invoicing")
    shoot(browser, "lag")


async def test_browser_dead_letter_shows_its_reason_and_is_replayed_once_the_cause_is_fixed(
    console_stack: ConsoleStack, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    seeded = console_stack.seeded
    log_in(browser, console_stack, console_stack.password())
    wait_for(browser, "#q")
    browser.get(console_stack.console_url + "/dead-letters")
    wait_for(browser, "#dlq-counts")
    shoot(browser, "dead-letters")
    browser.find_element(By.LINK_TEXT, "usage.dlq").click()
    wait_for(browser, "article.letter")
    letters = [
        a
        for a in browser.find_elements(By.CSS_SELECTOR, "article.letter")
        if seeded.unpriced_customer in a.text
    ]
    assert len(letters) == 1, [a.text for a in letters]
    letter_id = letters[0].get_attribute("id")
    assert "no price" in letters[0].find_element(By.CSS_SELECTOR, ".reason").text
    assert '"service": "sms"' in letters[0].find_element(By.CSS_SELECTOR, "pre.raw").text.replace(
        '":"', '": "'
    )
    shoot(browser, "dead-letter-usage")

    prices = PutPriceList(
        price_list_id=seeded.price_list_id,
        prices=[Price(service="sms", unit="message", unit_price=Decimal("0.10"), currency="USD")],
    )
    fixed = await console_stack.send(topics.INVOICING_COMMANDS, prices, None)
    await console_stack.answered(topics.INVOICING_EVENTS, fixed, "PriceListChanged")
    browser.find_element(By.ID, letter_id).find_element(By.CSS_SELECTOR, "form.replay button").click()

    flash = wait_for(browser, "#flash")
    assert re.match(r"Re-published usage\[\d\]@\d+ to usage \(dead letter usage\.dlq\[\d\]@\d+\)", flash.text)
    shoot(browser, "dead-letter-replayed")
    invoices = await console_stack.until(
        "invoicing", f"/customers/{seeded.unpriced_customer}/invoices", lambda b: len(b["invoices"]) == 1
    )
    pending = invoices["invoices"][0]["invoice_id"]
    await console_stack.until(
        "invoicing",
        f"/invoices/{pending}",
        lambda b: [Decimal(ln["quantity"]) for ln in b["lines"] if ln["kind"] == "usage"] == [7],
    )
    logged = await asyncio.to_thread(console_stack.console.tail, 200)
    replays = [line for line in logged.splitlines() if "dead letter replayed" in line]
    assert (
        len(replays) == 1
        and '"operator": "operator"' in replays[0]
        and seeded.unpriced_customer in replays[0]
    )
