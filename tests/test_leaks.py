"""Invariant 2, measured end to end: thousands of messages carrying known personal data go in
through the live webhooks of the app `tuneloop serve` runs (`bot.serve.build`), are processed by
the worker and exported; then the Redis keyspace (tuneloop's prefix and RQ's keys for its queue),
the data directory (exports, spill journal) and the logs are scanned for every value
(`bot.leakscan`: the exact value, or 7 digits in a row of a digit-based one). Raw user ids and
profile names count as personal data too. Faker is seeded: the data is the same on every run."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field

import phonenumbers
import pytest
import redis
from faker import Faker
from stdnum import iban as stdnum_iban
from stdnum import luhn
from stdnum.ec import ci as ec_ci
from stdnum.es import dni as es_dni

from bot.leakscan import (
    LeakScanner,
    LivePipeline,
    Message,
    Pii,
    cleanup_redis,
    numbers,
    scan,
    synthetic_telegram_id,
    synthetic_whatsapp_number,
    without_pii,
)
from middleware.redis_conn import connect
from tests.harness import sums_hold
from workers.runtime import Runtime

N_MESSAGES = 2000
SEED = 9031
PUBLIC = "https://bot.example.com"

# ------------------------------------------------------------------------------------ the data

PN = phonenumbers.PhoneNumberFormat


def _valid_number(rng: random.Random, region: str, kind: int) -> phonenumbers.PhoneNumber:
    """A random number phonenumbers' metadata calls valid, of that region and type."""
    example = phonenumbers.example_number_for_type(region, kind)
    nsn = str(example.national_number)
    for _ in range(5000):
        cand = nsn[0] + "".join(rng.choice("0123456789") for _ in range(len(nsn) - 1))
        num = phonenumbers.parse(f"+{example.country_code}{cand}")
        if phonenumbers.is_valid_number(num) and phonenumbers.number_type(num) in (
                kind, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
            return num
    raise AssertionError(f"no valid {region} number found")


def phone(rng: random.Random) -> str:
    """A phone number as people type it: E.164 and local layouts for EC, ES, US and MX."""
    region = rng.choice(["EC", "EC", "ES", "US", "MX"])
    kind = (phonenumbers.PhoneNumberType.MOBILE if region in ("ES", "MX") or rng.random() < 0.75
            else phonenumbers.PhoneNumberType.FIXED_LINE)
    num = _valid_number(rng, region, kind)
    nat = phonenumbers.format_number(num, PN.NATIONAL)
    intl = phonenumbers.format_number(num, PN.INTERNATIONAL)
    e164 = phonenumbers.format_number(num, PN.E164)
    digits = "".join(c for c in nat if c.isdigit())
    layouts = [nat, intl, e164, digits]
    if region == "US":
        layouts += [f"{digits[:3]}-{digits[3:6]}-{digits[6:]}", f"{digits[:3]}.{digits[3:6]}.{digits[6:]}",
                    f"+1 ({digits[:3]}) {digits[3:6]}-{digits[6:]}"]
    elif region == "EC" and len(digits) == 10:      # mobiles: 099 123 4567
        layouts += [f"{digits[:3]}-{digits[3:6]}-{digits[6:]}", f"{digits[:3]} {digits[3:6]} {digits[6:]}"]
    elif region == "EC":                             # landlines: (04) 238-8368
        layouts += [f"{digits[:2]}-{digits[2:]}", f"({digits[:2]}) {digits[2:]}"]
    elif region == "ES":
        layouts += [f"{digits[:3]} {digits[3:6]} {digits[6:]}", f"+34 {digits[:3]} {digits[3:6]} {digits[6:]}"]
    elif region == "MX":
        layouts += [f"({digits[:2]}) {digits[2:6]}-{digits[6:]}", f"+52 {digits[:2]} {digits[2:6]} {digits[6:]}"]
    return rng.choice(layouts)


def cedula(rng: random.Random) -> str:
    """An Ecuadorian cédula with a valid check digit."""
    while True:
        body = f"{rng.randint(1, 24):02d}{rng.randint(0, 5)}{rng.randint(0, 999999):06d}"
        for d in "0123456789":
            if ec_ci.is_valid(body + d):
                return body + d


def card(rng: random.Random) -> str:
    """A Visa, Mastercard or Amex number passing Luhn, grouped as printed on the card or not."""
    prefix, length = rng.choice([("4", 16), ("4", 16), (str(rng.randint(51, 55)), 16),
                                 (str(rng.randint(2221, 2720)), 16), (rng.choice(["34", "37"]), 15)])
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
    n = body + luhn.calc_check_digit(body)
    assert luhn.is_valid(n)
    sep = rng.choice([" ", "-", ""])
    if length == 15:
        return sep.join((n[:4], n[4:10], n[10:]))
    return sep.join(n[i:i + 4] for i in range(0, len(n), 4))


def iban(rng: random.Random, fk: Faker) -> str:
    v = fk["es_ES"].iban() if rng.random() < 0.7 else fk["en_US"].iban()
    assert stdnum_iban.is_valid(v)
    return stdnum_iban.format(v) if rng.random() < 0.6 else v


def ec_account(rng: random.Random) -> str:
    """An Ecuadorian bank account number: 10 digits."""
    return f"{rng.randint(1, 9)}{rng.randint(0, 10**9 - 1):09d}"


def dni(rng: random.Random) -> str:
    n = f"{rng.randint(0, 99999999):08d}"
    return n + es_dni.calc_check_digit(n)


def full_name(fk: Faker, loc: str) -> str:
    f = fk[loc]
    return f"{f.first_name()} {f.last_name()}"


def address(rng: random.Random, fk: Faker, lang: str) -> str:
    es, mx, us = fk["es_ES"], fk["es_MX"], fk["en_US"]
    if lang == "en":
        suffix = rng.choice(["St", "Street", "Ave", "Avenue", "Rd", "Blvd", "Dr", "Lane"])
        unit = rng.choice(["", f" Apt {rng.randint(1, 40)}", f", Suite {rng.randint(100, 900)}"])
        return f"{rng.randint(10, 9999)} {us.last_name()} {suffix}{unit}"
    shape = rng.randrange(6)
    if shape == 0:   # Spain
        return f"Calle {es.last_name()} {rng.randint(1, 200)}, {rng.randint(1, 9)}º {rng.choice('ABCD')}"
    if shape == 1:   # Guayaquil: avenue, number, cross street
        return f"Av. {rng.choice(['9 de Octubre', 'Quito', 'Machala', 'Pedro Menéndez'])} {rng.randint(100, 2500)} y {es.last_name()}"
    if shape == 2:   # Quito: N34-120
        return f"Av. {es.last_name()} N{rng.randint(10, 80)}-{rng.randint(10, 300)} y {es.last_name()}"
    if shape == 3:   # Mexico
        return f"Av. {mx.last_name()} {rng.randint(10, 3000)}, Col. {mx.last_name()}"
    if shape == 4:
        return f"Calle {mx.first_name()} {mx.last_name()} {rng.randint(1, 999)}"
    return f"Cdla. {es.last_name()} Mz. {rng.randint(1, 40)} Villa {rng.randint(1, 30)}"


BUSINESS = {
    "es": ["Necesito cotización de camarón HLSO 21/25 con 20% glaseo CFR Miami.",
           "¿Tienen disponibilidad de PD 31/35 para marzo?",
           "Confirmo el pedido de 2 contenedores de HOSO 30/40.",
           "¿Cuándo zarpa el contenedor a Rotterdam?",
           "Quiero proforma de EZ PEEL 26/30 FOB Guayaquil.",
           "Buenos días, ¿precio del camarón entero 40/50?"],
    "en": ["Please send the quote for EZ PEEL 26/30 10% glaze CFR New York.",
           "Do you have PD 31/40 available for April?",
           "We confirm the order of 1 container HLSO 16/20.",
           "When does the reefer leave for Rotterdam?",
           "Price for HOSO 30/40 FOB Guayaquil please."],
}

# (type, how it is said, the value): each with a cue people really use
CUES = {
    "es": {
        "PHONE": ["mi cel es {}", "llámame al {}", "escríbeme al whatsapp {}", "mi número: {}", "teléfono {}",
                  "mi celular {}"],
        "EMAIL": ["escríbeme a {}", "mi correo es {}", "email: {}", "envíen la proforma a {}"],
        "IBAN": ["IBAN {}", "transferir a la cuenta {}", "mi IBAN es {}"],
        "CARD": ["mi tarjeta es {}", "pago con la visa {}", "número de tarjeta {}"],
        "ACCOUNT": ["cuenta de ahorros Banco Pichincha {}", "cta. cte. {} del Produbanco", "depositar en la cuenta {}"],
        "CEDULA": ["mi cédula es {}", "mi cédula {}", "cédula: {}", "C.I. {}", "factura con cédula {}"],
        "DNI": ["mi DNI es {}", "DNI {}"],
        "NAME": ["me llamo {}", "mi nombre es {}", "me llamo {}, mucho gusto", "Saludos,\n{}"],
        "ADDRESS": ["vivo en {}", "dirección: {}", "mi dirección es {}", "vivo en {}, cerca del parque"],
    },
    "en": {
        "PHONE": ["call me at {}", "my cell is {}", "phone: {}", "text me at {}", "my WhatsApp is {}"],
        "EMAIL": ["email me at {}", "my email is {}", "send it to {}"],
        "IBAN": ["IBAN {}", "wire to {}"],
        "CARD": ["my card number is {}", "charge my visa {}"],
        "ACCOUNT": ["account number {}"],
        "NAME": ["my name is {}", "this is {} from Miami", "Best regards,\n{}"],
        "ADDRESS": ["I live at {}", "address: {}", "ship samples to {}"],
        "SSN": ["my SSN is {}"],
    },
}
WEIGHT = {"PHONE": 4, "EMAIL": 2.5, "NAME": 2.5, "ADDRESS": 2, "CEDULA": 1.5, "DNI": 0.5, "SSN": 0.5}
VALUE_TYPE = {"IBAN": "ACCOUNT", "CARD": "ACCOUNT", "CEDULA": "ID", "DNI": "ID", "SSN": "ID"}


@dataclass
class Dataset:
    messages: list[Message] = field(default_factory=list)
    pii: list[Pii] = field(default_factory=list)          # in the texts
    users: list[Pii] = field(default_factory=list)        # raw ids, profile names
    controls: list[str] = field(default_factory=list)     # one harmless marker per message
    inputs: list[tuple[str, list[Pii]]] = field(default_factory=list)


def dataset(n: int = N_MESSAGES, seed: int = SEED) -> Dataset:
    rng = random.Random(seed)
    fk = Faker(["es_ES", "es_MX", "en_US"])
    fk.seed_instance(seed)
    ds = Dataset()
    for i in range(n):
        lang = "en" if rng.random() < 0.3 else "es"
        cues = CUES[lang]
        kinds: list[str] = []
        for _ in range(rng.choice([1, 1, 2, 2, 3])):
            pool = [k for k in sorted(cues) if k not in kinds]
            kinds.append(rng.choices(pool, weights=[WEIGHT.get(k, 1) for k in pool])[0])
        parts, found = [], []
        for kind in kinds:
            if kind == "PHONE":
                v = phone(rng)
            elif kind == "EMAIL":
                v = fk["es_ES" if lang == "es" else "en_US"].free_email() if rng.random() < 0.7 else fk.email()
            elif kind == "IBAN":
                v = iban(rng, fk)
            elif kind == "CARD":
                v = card(rng)
            elif kind == "ACCOUNT":
                v = ec_account(rng)
            elif kind == "CEDULA":
                v = cedula(rng)
            elif kind == "DNI":
                v = dni(rng)
            elif kind == "SSN":
                v = fk["en_US"].ssn()
            elif kind == "NAME":
                v = full_name(fk, "en_US" if lang == "en" else rng.choice(["es_ES", "es_MX"]))
            else:
                v = address(rng, fk, lang)
            parts.append(rng.choice(cues[kind]).format(v))
            found.append(Pii(VALUE_TYPE.get(kind, kind), v))
        control = f"QZ{i:04d}"
        text = f"Ref {control}. {rng.choice(BUSINESS[lang])} " + rng.choice([", ", ". ", "\n"]).join(parts)
        if rng.random() < 0.5:
            text += rng.choice([". Gracias", ". Saludos", ", gracias!", ""] if lang == "es" else [". Thanks", "!", ""])
        channel = "telegram" if i % 2 == 0 else "whatsapp"
        user = synthetic_telegram_id(rng) if channel == "telegram" else synthetic_whatsapp_number(rng)
        loc = "en_US" if lang == "en" else "es_ES"
        m = Message(channel, user, text, fk[loc].first_name(), fk[loc].last_name() if rng.random() < 0.7 else None,
                    lang)
        ds.messages.append(m)
        ds.pii.extend(found)
        ds.users.extend(m.user_pii())
        ds.controls.append(control)
        ds.inputs.append((text, found))
    return ds


def test_dataset_is_deterministic_valid_and_seen_by_the_scanner():
    """The generator is seeded, and the scanner finds every value in the raw texts (a scanner that
    finds nothing proves nothing)."""
    a, b = dataset(200), dataset(200)
    assert [m.text for m in a.messages] == [m.text for m in b.messages]
    report = scan([*a.pii, *a.users], logs=[m.text for m in a.messages] + [m.user for m in a.messages]
                  + [f"{m.first_name} {m.last_name}" for m in a.messages])
    expected = set(a.pii) | set(a.users)
    assert report.found == expected, expected - report.found
    # and nothing in the texts with their personal data cut out
    rest = [without_pii(t, p) for t, p in a.inputs]
    assert scan(a.pii, logs=rest).findings == []


# ------------------------------------------------------------------------------------ the scanner itself

def test_scanner_rules():
    s = LeakScanner([Pii("PHONE", "099 123 4567"), Pii("EMAIL", "Ana.Perez@gmail.com"),
                     Pii("ACCOUNT", "ES91 2100 0418 4502 0005 1332"), Pii("USER_ID", "5123456789"),
                     Pii("NAME", "Ana Pérez")])
    hits = {
        "mi cel [PHONE] 0991234567": "099 123 4567",                 # reformatted
        "llama al +593 99 123 4567": "099 123 4567",                 # grouped, with the country code
        "al 099-123-45XX": "099 123 4567",                           # 7 digits of it, partly masked
        "ANA.PEREZ@GMAIL.COM": "Ana.Perez@gmail.com",                # case
        "IBAN ES9121000418450200051332": "ES91 2100 0418 4502 0005 1332",   # compact
        "cuenta 0418 4502 000 x": "ES91 2100 0418 4502 0005 1332",   # a run across groups
        '{"chat_id": 5123456789}': "5123456789",                     # a raw id as a JSON number
        "soy ana pérez": "Ana Pérez",
    }
    for text, value in hits.items():
        s2 = LeakScanner(s.pii)
        s2.scan_string(text, "t", "x")
        assert {f.value for f in s2.report().findings} == {value}, text
    misses = [
        "mi cel [PHONE] 099 123", "4567 099", "Anaperez@gmail.com.ar.x", "Ana Pérezz",
        '{"ts": 1775012345678, "n": 991234567012}',                  # machine numbers, not whole values
        "u_0991234567abcdef0123456789abcdef r_01M85ZD7ST0991234567", # hashes, ids
        "2026-09-91T23:45:67.123Z", "200 099.1ms", "200 123.4ms",
        "4820b127-6d40-45de-9d88-0991234567ab", "job 0991234567abcdef",  # UUIDs, hex words
    ]
    for text in misses:
        s2 = LeakScanner(s.pii)
        s2.scan_string(text, "t", "x")
        assert s2.report().findings == [], (text, s2.report().describe())


def test_numbers_people_type():
    got = {t: [d for _, _, d in numbers(t)] for t in (
        "(04) 2388368", "+593 98 337 4068, gracias", "200 121.8ms", "DE30 1007 0000 6828 0814 14.",
        "2026-11-24T05:10:50Z", "612 34 56 78", "4111-1111-1111-1111")}
    assert got["(04) 2388368"][-1] == "042388368"
    assert got["+593 98 337 4068, gracias"] == ["593983374068"]
    assert got["200 121.8ms"] == [] and got["2026-11-24T05:10:50Z"] == []
    assert got["DE30 1007 0000 6828 0814 14."] == ["30100700006828081414"]
    assert got["612 34 56 78"] == ["612345678"] and got["4111-1111-1111-1111"] == ["4111111111111111"]


# ------------------------------------------------------------------------------------ the live pipeline

@pytest.fixture
async def runtime(config, env, botapi):
    e = env.model_copy(update={
        "telegram_bot_token": "123456:TEST-token-for-local-stand-in", "telegram_webhook_secret": "tg-secret",
        "telegram_api_server": botapi.base_url, "twilio_auth_token": "twilio-auth-token-for-tests",
        "public_url": PUBLIC, "openai_api_key": None, "admin_token": None})
    botapi.record = False   # 6,000 sends: keep none
    yield Runtime(config, e, connect(e))
    # RQ's keys of this queue too, in one SCAN (the prefix fixture's cleanup scans once per job)
    c = redis.Redis.from_url(e.redis_url)
    cleanup_redis(c, config.redis.prefix, config.redis.queue)
    c.close()


@pytest.mark.timeout(300)
async def test_no_personal_data_reaches_redis_disk_or_logs(runtime, rconn, prefix, config, caplog):
    rt = runtime
    ds = dataset()
    caplog.set_level(logging.DEBUG, logger="tuneloop")
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    async with LivePipeline(rt) as lp:
        await lp.send_all(ds.messages)
    await asyncio.to_thread(lp.process)
    await asyncio.to_thread(lp.export)
    stats = lp.counters()
    res = lp.result

    # the pipeline really ran: every request answered, every message captured, processed, exported
    assert set(res.statuses) == {"telegram 200", "whatsapp 200"}, res.statuses
    assert stats.get("captured") == N_MESSAGES and stats.get("dropped", 0) == 0, stats
    assert stats.get("capture_errors", 0) == 0, stats
    assert stats.get("analyzed") == N_MESSAGES and stats.get("exported", 0) > N_MESSAGES, stats
    assert all(e["success"] for e in res.exports), res.exports
    sums_hold(rt)

    # Planted leaks prove the scan reaches each place: raw messages that never went through the
    # app, written where a leak would be (a key under the prefix, a file, a tuneloop log line).
    planted = dataset(3, seed=SEED + 1)
    raw = "\n".join(m.text for m in planted.messages)
    rconn.set(f"{prefix}planted", raw)
    (rt.env.data_dir / "planted.txt").write_text(raw, encoding="utf-8")
    logging.getLogger("tuneloop.leaktest").warning("planted: %s", raw)
    # and each message's harmless marker ("Ref QZ0001") shows the scan read every stored record
    controls = [Pii("CONTROL", c) for c in ds.controls]

    scanner = LeakScanner([*ds.pii, *ds.users, *planted.pii, *controls], ignore=config.anonymizer.keep_values,
                          allowed_texts=[without_pii(t, p) for t, p in ds.inputs + planted.inputs])
    scanner.scan_redis(rconn, prefix, config.redis.queue)
    scanner.scan_dir(rt.env.data_dir)
    scanner.scan_log_records(caplog.records)
    report = scanner.report()

    def found(where: str, kind: str | None = None) -> set[Pii]:
        return {Pii(f.type, f.value) for f in report.findings
                if f.where == where and (kind is None or f.type == kind)}

    for where in ("redis", "data", "logs"):
        assert found(where) >= set(planted.pii), where
    assert len(found("redis", "CONTROL")) == N_MESSAGES and len(found("data", "CONTROL")) > N_MESSAGES // 2
    assert any(r.name == "tuneloop.access" for r in caplog.records)

    leaks = [f for f in report.findings if f.type != "CONTROL" and Pii(f.type, f.value) not in set(planted.pii)]
    leaked = {Pii(f.type, f.value) for f in leaks}
    assert leaks == [], f"{len(leaked)} values found:\n" + "\n".join(str(f) for f in leaks[:40])
