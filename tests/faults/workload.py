"""A seeded, pure workload: what to send, step by step, for many customers in two currencies.

Nothing here does I/O. The same seed gives the same messages, byte for byte (message ids,
customer ids, dates and amounts all come from the seed), so a fault-free run and a faulty
run of one seed can be compared message by message.

Determinism across topics: the workload is cut into steps, and the runner waits until the
whole system is idle between steps. Within a step a customer gets at most one command
(which may start a chain across services) plus usage, which commutes with every command
used alongside it (usage only touches the pending invoice; bill runs get steps of their own).
Usage is generated in proportion to the commands (`usage_per_command`, 5 by default): it is
the steady stream that keeps flowing while the runner injects faults.

Odd but valid input is part of the workload (both runs), each with its expected outcome
(`Expectation`), checked by the invariants: invoice ids that collide across customers
(customer `X` with charge `x-2026-11-01` next to customer `X-charge-x`), pre-rated usage of
quantity 3 for 1.00, two charges of 9 x 10^14 on one invoice (each below the 10^15 cap on a
single amount, their sum below the 10^18 cap on a sum: both applied, and the invoice closes
with 1.8 x 10^15 and flows on), a repeated charge_id, and a global RunBilling (no customer)
for the first month.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from invoicing import domain as invoicing_domain
from tally_contracts import Envelope, Money, topics
from tally_contracts.base import MessageData
from tally_contracts.credits import (
    ApplyCredits,
    ChangeCreditCurrency,
    DeleteCreditEntry,
    ExpireCredits,
    GrantCredit,
)
from tally_contracts.invoicing import (
    AddCharge,
    CreateSubscription,
    Price,
    PutPriceList,
    RegenerateInvoice,
    RunBilling,
    UpsertCustomer,
    VoidInvoice,
)
from tally_contracts.payments import (
    DeductPromotionalCredits,
    RecordOfflinePayment,
    RefundCreditBalance,
    ReversePayment,
)
from tally_contracts.usage import UsageRecorded

CURRENCIES = ("USD", "EUR")
START = dt.date(2026, 11, 1)
MONTHS = (dt.date(2026, 11, 1), dt.date(2026, 12, 1), dt.date(2027, 1, 1), dt.date(2027, 2, 1))


@dataclass(frozen=True)
class Outgoing:
    """One message to publish: its logical topic, the envelope, and what it is."""

    topic: str
    envelope: Envelope[Any]
    action: str  # e.g. "grant_promo", "usage", "setup"

    @property
    def id(self) -> str:
        return str(self.envelope.id)

    @property
    def is_command(self) -> bool:
        return bool(self.envelope.data.is_command)


@dataclass
class Step:
    index: int
    day: dt.date
    kind: str  # "setup" | "business" | "billing"
    messages: list[Outgoing] = field(default_factory=list)


@dataclass
class _Customer:
    customer_id: str
    currency: str
    invoices: list[str] = field(default_factory=list)  # posted (or soon posted) invoices
    voided: list[str] = field(default_factory=list)
    grants: list[str] = field(default_factory=list)
    promo_grants: list[str] = field(default_factory=list)
    payments: list[str] = field(default_factory=list)
    period_used: set[dt.date] = field(default_factory=set)
    n: int = 0

    def next_id(self, what: str) -> str:
        self.n += 1
        return f"{what}-{self.customer_id}-{self.n}"


@dataclass(frozen=True)
class Expectation:
    """What must become of one odd-but-valid workload message, in every run.

    `outcome`: "applied" (events, no CommandRejected), "rejected" (CommandRejected),
    "billed" (a usage event on exactly one invoice line whose amount is `amount`),
    "charges_billed" (applied, and the pending charges' lines `line_ids` are on one invoice of
    `customer` that closed and was posted, each for `amount`),
    "bills_everyone" (a global RunBilling: answered, and every customer's period invoice of
    `period` closed).
    """

    case: str
    message_id: str
    outcome: str
    amount: Decimal | None = None
    period: dt.date | None = None
    customer: str | None = None
    line_ids: tuple[str, ...] = ()


MAX_AMOUNT = Decimal(10) ** 15
"""The contracts' cap on a single amount; two charges of 9 x 10^14 pass it together, and stay
below the cap on a sum (10^18)."""


@dataclass
class Workload:
    seed: int
    customers: dict[str, str]  # customer id -> currency
    steps: list[Step]
    expectations: list[Expectation] = field(default_factory=list)

    @property
    def messages(self) -> list[Outgoing]:
        return [m for s in self.steps for m in s.messages]

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for m in self.messages:
            found[m.action] = found.get(m.action, 0) + 1
        return dict(sorted(found.items()))


class _Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def envelope(self, data: MessageData, customer: str | None, day: dt.date, hour: int = 9) -> Envelope[Any]:
        at = dt.datetime.combine(day, dt.time(hour, self.rng.randrange(60)), tzinfo=dt.UTC)
        return Envelope.new(data, customer_id=customer, occurred_at=at, message_id=self.uuid())

    def amount(self, low: int, high: int) -> Decimal:
        """A random amount with cents, low..high units."""
        return Decimal(self.rng.randrange(low * 100, high * 100 + 1)) / 100


def _invoice_id(kind: str, customer: str, key: str, legacy: str) -> str:
    """The id invoicing gives an invoice (payments, voids and regenerations name it): its own
    function when it has one, else the older readable scheme `legacy`."""
    make = getattr(invoicing_domain, f"{kind}_invoice_id", None)
    if make is None:
        return legacy
    return str(make(customer, dt.date.fromisoformat(key) if kind == "period" else key))


def _period_invoice(customer: str, start: dt.date) -> str:
    return _invoice_id("period", customer, start.isoformat(), f"inv-{customer}-{start.isoformat()}")


def _one_time_invoice(customer: str, charge_id: str) -> str:
    return _invoice_id("one_time", customer, charge_id, f"inv-{customer}-charge-{charge_id}")


def _regenerated_invoice(customer: str, voided: str) -> str:
    return _invoice_id("regenerated", customer, voided, f"{voided}-r")


def _period_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def generate(
    seed: int,
    customers: int = 20,
    commands: int = 300,
    races: bool = True,
    usage_per_command: float = 5.0,
) -> Workload:
    """About `commands` commands for `customers` customers (plus the odd cases' own
    customers), and `usage_per_command` usage events per command, cut into idle-separated
    steps. `races`: include `charge_and_pay` (a payment racing the invoice it names)."""
    gen = _Gen(seed)
    rng = gen.rng
    people = {
        f"cus-{seed}-{i:03d}": CURRENCIES[0] if rng.random() < 0.6 else CURRENCIES[1]
        for i in range(customers)
    }
    # Odd cases' customers: ids that collide (D5) and one that charges up to the cap (D4).
    collider, victim, capped = f"cus-{seed}-col", f"cus-{seed}-col-charge-x", f"cus-{seed}-cap"
    people.update({collider: CURRENCIES[0], victim: CURRENCIES[0], capped: CURRENCIES[1]})
    state = {c: _Customer(c, cur) for c, cur in people.items()}
    steps: list[Step] = []
    expectations: list[Expectation] = []

    # Setup: prices in both currencies, the customers, some subscriptions.
    setup = Step(0, START, "setup")
    prices = [
        Price(service="voice", unit="minute", unit_price=Decimal("0.02"), currency=cur) for cur in CURRENCIES
    ] + [
        Price(
            service="voice", unit="minute", unit_price=Decimal("0.10"), currency=cur, destination_prefix="44"
        )
        for cur in CURRENCIES
    ]
    prices += [
        Price(service="data", unit="GB", unit_price=Decimal("2.50"), currency=cur) for cur in CURRENCIES
    ]
    setup.messages.append(
        Outgoing(
            topics.INVOICING_COMMANDS,
            gen.envelope(PutPriceList(price_list_id="default", prices=prices), None, START),
            "setup",
        )
    )
    for c, cur in people.items():
        setup.messages.append(
            Outgoing(topics.INVOICING_COMMANDS, gen.envelope(UpsertCustomer(currency=cur), c, START), "setup")
        )
    # D5: `collider`'s one-time invoice for charge `x-2026-11-01` and `victim`'s November
    # period invoice had the same id. Sent right after `collider`'s upsert (same key, in order),
    # before `victim`'s subscription opens its period.
    collide = gen.envelope(
        AddCharge(
            charge_id="x-2026-11-01",
            description="id that collides with another customer's period invoice",
            amount=Money.of(Decimal("12.34"), CURRENCIES[0]),
            invoice_now=True,
        ),
        collider,
        START,
    )
    setup.messages.append(Outgoing(topics.INVOICING_COMMANDS, collide, "odd_colliding_charge"))
    expectations.append(Expectation("colliding invoice id (charge side)", str(collide.id), "applied"))
    state[collider].invoices.append(_one_time_invoice(collider, "x-2026-11-01"))
    steps.append(setup)
    subs = Step(1, START, "setup")
    for c, cur in people.items():
        if rng.random() < 0.5 or c in (victim, capped):  # capped: an invoice closes its charges
            fee = Money.of(gen.amount(5, 40), cur)
            data = CreateSubscription(
                subscription_id=f"sub-{c}", name="Plan", fee=fee, starts_on=dt.date(2026, 11, 1)
            )
            env = gen.envelope(data, c, START)
            subs.messages.append(Outgoing(topics.INVOICING_COMMANDS, env, "subscription"))
            state[c].period_used.add(START)
            if c == victim:
                expectations.append(
                    Expectation("colliding invoice id (subscription side)", str(env.id), "applied")
                )
    steps.append(subs)

    sent = sum(1 for s in steps for m in s.messages if m.is_command)
    # A business step gives about 0.93 commands per customer (some actions have nothing to do);
    # bill runs take a step per month boundary.
    per_step = max(1, round(len(people) * 0.93))
    business_steps = max(3, (commands - sent - len(MONTHS) * len(people)) // per_step)
    # Spread the business steps over three months; a bill run step at each month boundary.
    span = (MONTHS[3] - START).days - 4
    days = sorted(START + dt.timedelta(days=1 + (i * span) // business_steps) for i in range(business_steps))
    boundaries = list(MONTHS[1:])
    odd = _odd_cases(gen, state, collider, victim, capped, expectations)
    for n, day in enumerate(days):
        while boundaries and day >= boundaries[0]:
            global_run = boundaries[0] == MONTHS[1]
            steps.append(_billing_step(gen, state, len(steps), boundaries.pop(0), global_run, expectations))
        step = _business_step(gen, state, len(steps), day, races, odd.get(n, {}))
        _add_usage(gen, state, step, usage_per_command, victim)
        steps.append(step)
    steps.append(_billing_step(gen, state, len(steps), boundaries.pop(0) if boundaries else MONTHS[3]))
    # A last quiet step: credit expiry for everyone (a time-based command with an explicit as_of).
    last = Step(len(steps), MONTHS[3], "business")
    for c in people:
        last.messages.append(
            Outgoing(
                topics.CREDITS_COMMANDS, gen.envelope(ExpireCredits(as_of=MONTHS[3]), c, MONTHS[3]), "expire"
            )
        )
    steps.append(last)
    return Workload(seed, people, steps, expectations)


def _odd_cases(
    gen: _Gen,
    state: dict[str, _Customer],
    collider: str,
    victim: str,
    capped: str,
    expectations: list[Expectation],
) -> dict[int, dict[str, Outgoing]]:
    """Odd-but-valid commands and usage for the first two business steps, by step number and
    customer; each replaces that customer's random action of the step."""
    day = START + dt.timedelta(days=1)  # the first business step's day
    odd: dict[int, dict[str, Outgoing]] = {0: {}, 1: {}}
    half = MAX_AMOUNT * 9 / 10
    for n in (0, 1):  # D4: the sum passes the single-amount cap, not the cap on a sum
        env = gen.envelope(
            AddCharge(
                charge_id=f"cap-{n}",
                description="nine tenths of the cap",
                amount=Money.of(half, state[capped].currency),
                invoice_now=False,
            ),
            capped,
            day,
            10,
        )
        odd[n][capped] = Outgoing(topics.INVOICING_COMMANDS, env, "odd_charge_to_cap")
        expectations.append(
            Expectation(f"charge {n + 1} of 2 of 9 x 10^14 on one invoice", str(env.id), "applied")
            if n == 0
            else Expectation(
                "charge 2 of 2 of 9 x 10^14 on one invoice: both billed, closed at 1.8 x 10^15",
                str(env.id),
                "charges_billed",
                amount=half,
                customer=capped,
                line_ids=("charge:cap-0", "charge:cap-1"),
            )
        )
    state[capped].period_used.add(START)
    first = next(c for c in state if c not in (collider, victim, capped))
    for n, outcome in ((0, "applied"), (1, "rejected")):  # D6: a repeated charge_id
        env = gen.envelope(
            AddCharge(
                charge_id=f"repeated-{first}",
                description="the same charge id twice",
                amount=Money.of(gen.amount(5, 20), state[first].currency),
                invoice_now=False,
            ),
            first,
            day,
            10,
        )
        odd[n][first] = Outgoing(topics.INVOICING_COMMANDS, env, "odd_repeated_charge_id")
        expectations.append(Expectation(f"charge_id repeated ({n + 1} of 2)", str(env.id), outcome))
    state[first].period_used.add(START)
    # D3: pre-rated usage, quantity 3 for 1.00 (a unit price of 0.333...): billed at 1.00.
    prerated = gen.envelope(
        UsageRecorded(
            service="sms",
            quantity=Decimal(3),
            unit="message",
            amount=Money.of(Decimal("1.00"), CURRENCIES[0]),
        ),
        victim,
        day,
        8,
    )
    odd[0][victim] = Outgoing(topics.USAGE, prerated, "odd_prerated_usage")
    expectations.append(
        Expectation(
            "pre-rated usage 3 x 1.00", str(prerated.id), "billed", amount=Decimal("1.00"), customer=victim
        )
    )
    return odd


def _add_usage(gen: _Gen, state: dict[str, _Customer], step: Step, per_command: float, skip: str) -> None:
    """Usage in proportion to the step's commands, for customers at random (the steady load)."""
    rng = gen.rng
    commands = sum(1 for m in step.messages if m.is_command)
    wanted = int(commands * per_command) + (1 if rng.random() < (commands * per_command) % 1 else 0)
    people = [c for c in state if c != skip]  # the pre-rated line of `skip` stays alone
    for _ in range(wanted):
        c = rng.choice(people)
        usage = (
            UsageRecorded(
                service="voice",
                quantity=Decimal(rng.randrange(1, 400)),
                unit="minute",
                destination=rng.choice(["44", "4420", "1", "33"]),
            )
            if rng.random() < 0.7
            else UsageRecorded(service="data", quantity=Decimal(rng.randrange(1, 20)), unit="GB")
        )
        step.messages.append(Outgoing(topics.USAGE, gen.envelope(usage, c, step.day, 8), "usage"))
        state[c].period_used.add(_period_start(step.day))


def _billing_step(
    gen: _Gen,
    state: dict[str, _Customer],
    index: int,
    as_of: dt.date,
    global_run: bool = False,
    expectations: list[Expectation] | None = None,
) -> Step:
    """A bill run per customer, or (`global_run`) one RunBilling with no customer for all."""
    step = Step(index, as_of, "billing")
    if global_run:
        env = gen.envelope(RunBilling(as_of=as_of), None, as_of, 1)
        step.messages.append(Outgoing(topics.INVOICING_COMMANDS, env, "bill_run_global"))
        if expectations is not None:
            prev = (as_of - dt.timedelta(days=1)).replace(day=1)
            expectations.append(Expectation("global RunBilling", str(env.id), "bills_everyone", period=prev))
    for c, cust in state.items():
        if not global_run:
            step.messages.append(
                Outgoing(
                    topics.INVOICING_COMMANDS, gen.envelope(RunBilling(as_of=as_of), c, as_of, 1), "bill_run"
                )
            )
        prev = (as_of - dt.timedelta(days=1)).replace(day=1)
        if prev in cust.period_used or any(p < prev for p in cust.period_used):
            # The period invoice exists (usage or a subscription opened it, or an earlier run did).
            cust.invoices.append(_period_invoice(c, prev))
            cust.period_used.add(as_of)  # the run opens the next period
    return step


ACTIONS: tuple[tuple[str, int], ...] = (
    ("charge", 14),
    ("charge_and_pay", 5),
    ("charge_next", 4),
    ("negative_charge", 4),
    ("grant_promo", 10),
    ("grant_promo_other_currency", 3),
    ("grant_manual", 6),
    ("grant_manual_negative", 3),
    ("delete_entry", 3),
    ("change_currency", 2),
    ("payment", 10),
    ("overpayment", 5),
    ("payment_unallocated", 4),
    ("reverse_payment", 4),
    ("deduct", 4),
    ("refund", 5),
    ("void", 4),
    ("regenerate", 3),
    ("apply", 2),
    ("expire", 2),
    ("nothing", 6),
)
_NAMES = [a for a, _ in ACTIONS]
_WEIGHTS = [w for _, w in ACTIONS]


def _business_step(
    gen: _Gen,
    state: dict[str, _Customer],
    index: int,
    day: dt.date,
    races: bool,
    odd: dict[str, Outgoing],
) -> Step:
    rng = gen.rng
    step = Step(index, day, "business")
    for c, cust in state.items():
        action = rng.choices(_NAMES, _WEIGHTS)[0]
        if c in odd:  # an odd case takes this customer's turn
            step.messages.append(odd[c])
            continue
        if action == "charge_and_pay" and not races:
            action = "charge"
        if action == "charge_and_pay":
            # The payment races the invoice it names (two topics): credits must park it, and
            # the result must not depend on which arrives first.
            charge = _command(gen, cust, "charge", day)
            assert charge is not None
            invoice_id = cust.invoices[-1]
            payment_id = cust.next_id("p")
            cust.payments.append(payment_id)
            payment = RecordOfflinePayment(
                payment_id=payment_id,
                invoice_id=invoice_id,
                amount=Money.of(gen.amount(5, 100), cust.currency),
                method="check",
                received_on=day,
            )
            step.messages.append(Outgoing(charge[0], gen.envelope(charge[1], c, day, 10), action))
            step.messages.append(
                Outgoing(topics.PAYMENTS_COMMANDS, gen.envelope(payment, c, day, 10), action)
            )
            made = None
        else:
            made = _command(gen, cust, action, day)
        if made is not None:
            topic, data = made
            step.messages.append(Outgoing(topic, gen.envelope(data, c, day, 10), action))
    return step


def _command(gen: _Gen, cust: _Customer, action: str, day: dt.date) -> tuple[str, MessageData] | None:
    rng = gen.rng
    cur = cust.currency
    other = CURRENCIES[1] if cur == CURRENCIES[0] else CURRENCIES[0]
    if action in ("charge", "negative_charge", "charge_next"):
        charge_id = cust.next_id("chg")
        amount = gen.amount(5, 80)
        if action == "negative_charge":
            amount = -gen.amount(5, 40)
        invoice_now = action != "charge_next"
        if invoice_now:
            cust.invoices.append(_one_time_invoice(cust.customer_id, charge_id))
        else:
            cust.period_used.add(_period_start(day))
        return topics.INVOICING_COMMANDS, AddCharge(
            charge_id=charge_id,
            description=f"charge {charge_id}",
            amount=Money.of(amount, cur),
            invoice_now=invoice_now,
        )
    if action in ("grant_promo", "grant_promo_other_currency"):
        grant_id = cust.next_id("g")
        expires = day + dt.timedelta(days=rng.randrange(10, 60)) if rng.random() < 0.4 else None
        cust.grants.append(grant_id)
        cust.promo_grants.append(grant_id)
        return topics.CREDITS_COMMANDS, GrantCredit(
            grant_id=grant_id,
            kind="promotional",
            amount=Money.of(gen.amount(5, 60), other if action == "grant_promo_other_currency" else cur),
            source=rng.choice(["promo_code", "referral"]),
            expires_at=expires,
            apply_to_existing=rng.random() < 0.8,
        )
    if action in ("grant_manual", "grant_manual_negative"):
        grant_id = cust.next_id("m")
        amount = gen.amount(5, 50) if action == "grant_manual" else -gen.amount(1, 30)
        cust.grants.append(grant_id)
        return topics.CREDITS_COMMANDS, GrantCredit(
            grant_id=grant_id,
            kind="manual",
            amount=Money.of(amount, cur),
            source=rng.choice(["manual", "refund", "other"]),
            reason="fault run",
        )
    if action == "delete_entry" and cust.grants:
        return topics.CREDITS_COMMANDS, DeleteCreditEntry(grant_id=rng.choice(cust.grants))
    if action == "change_currency" and cust.promo_grants:
        return topics.CREDITS_COMMANDS, ChangeCreditCurrency(
            grant_id=rng.choice(cust.promo_grants), currency=cur, rate=Decimal(rng.choice(["0.9", "1.1"]))
        )
    if action in ("payment", "overpayment") and cust.invoices:
        payment_id = cust.next_id("p")
        cust.payments.append(payment_id)
        amount = gen.amount(5, 60) if action == "payment" else gen.amount(80, 150)
        return topics.PAYMENTS_COMMANDS, RecordOfflinePayment(
            payment_id=payment_id,
            invoice_id=rng.choice(cust.invoices[-4:]),
            amount=Money.of(amount, cur),
            method=rng.choice(["cash", "check", "bank_transfer", "other"]),
            received_on=day,
        )
    if action in ("payment_unallocated", "payment", "overpayment"):
        payment_id = cust.next_id("p")
        cust.payments.append(payment_id)
        return topics.PAYMENTS_COMMANDS, RecordOfflinePayment(
            payment_id=payment_id,
            amount=Money.of(gen.amount(5, 60), cur),
            method="bank_transfer",
            reference=f"ref {payment_id}",
            received_on=day,
        )
    if action == "reverse_payment" and cust.payments:
        return topics.PAYMENTS_COMMANDS, ReversePayment(
            payment_id=rng.choice(cust.payments), reason="check bounced"
        )
    if action == "deduct":
        grant = rng.choice(cust.promo_grants) if cust.promo_grants and rng.random() < 0.3 else None
        return topics.PAYMENTS_COMMANDS, DeductPromotionalCredits(
            deduction_id=cust.next_id("d"),
            amount=Money.of(gen.amount(1, 20), cur),
            reason="paid offline",
            grant_id=grant,
        )
    if action == "refund":
        return topics.PAYMENTS_COMMANDS, RefundCreditBalance(
            refund_id=cust.next_id("r"), amount=Money.of(gen.amount(1, 40), cur), method="bank_transfer"
        )
    if action == "void" and cust.invoices:
        invoice = rng.choice(cust.invoices)
        cust.invoices.remove(invoice)
        cust.voided.append(invoice)
        return topics.INVOICING_COMMANDS, VoidInvoice(invoice_id=invoice, reason="fault run")
    if action == "regenerate" and cust.voided:
        invoice = cust.voided.pop(0)
        cust.invoices.append(_regenerated_invoice(cust.customer_id, invoice))
        return topics.INVOICING_COMMANDS, RegenerateInvoice(invoice_id=invoice)
    if action == "apply":
        return topics.CREDITS_COMMANDS, ApplyCredits()
    if action == "expire":
        return topics.CREDITS_COMMANDS, ExpireCredits(as_of=day)
    return None
