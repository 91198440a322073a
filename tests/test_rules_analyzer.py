"""The offline rules analyzer: intents, the entity rules of data/ANALYSIS_LABELS.md, confidence.

Every message here is written for these tests (none comes from the dev corpus).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from middleware.config import AnalysisConfig, IntentConfig, ProductConfig, load_config
from workers.analyzers.rules import RulesAnalyzer, fold

CONFIG = Path(__file__).resolve().parents[1] / "config.yaml"
KEYS = ["intent", "product", "size", "glaseo_percentage", "incoterm", "destination", "quantity", "confidence",
        "multi"]


@pytest.fixture(scope="module")
def cfg() -> AnalysisConfig:
    return load_config(CONFIG).analysis


@pytest.fixture(scope="module")
def rules(cfg: AnalysisConfig) -> RulesAnalyzer:
    return RulesAnalyzer(cfg)


def test_interface(rules: RulesAnalyzer) -> None:
    assert rules.name == "rules"
    d = rules.analyze("HLSO 16/20 20% glaseo")
    assert list(d) == KEYS
    assert rules.analyze_many(["hola", "HLSO 16/20 20% glaseo"]) == [rules.analyze("hola"), d]
    assert rules.analyze_many([]) == []


# -- intents ---------------------------------------------------------------------------------------

INTENTS = [
    # proforma: requests, orders, confirmations, bare spec lines
    ("Por favor emitan la proforma de 2 contenedores de PUD 61/70", "proforma"),
    ("confirmamos el pedido: HOSO 40/50 15% glaseo, 1 FCL", "proforma"),
    ("Kindly send the PI for 1 FCL of PD 26/30", "proforma"),
    ("We confirm the order, 2 containers HLSO 31/40 CFR Busan", "proforma"),
    ("PDTO 26/30 10% glaze 2 FCL CIF Algeciras", "proforma"),
    ("necesito la proforma para abrir la carta de crédito", "proforma"),
    # price_quote: asks or negotiates
    ("¿Me das precio del HOSO 20/30 CFR Qingdao?", "price_quote"),
    ("cotización de 1 contenedor de P&D 21/25 para Vigo por favor", "price_quote"),
    ("What's your best price for headless 26/30?", "price_quote"),
    ("can you improve the price on the PUD? it is too high", "price_quote"),
    ("pueden mejorar el precio del entero 30/40?", "price_quote"),
    ("¿y la 26-30 en cuánto me la deja?", "price_quote"),
    # availability
    ("¿Tienen stock de HLSO U-12 para la próxima semana?", "availability"),
    ("¿ya empezó la cosecha en su zona?", "availability"),
    ("Is there EZ peel 31/35 available for January?", "availability"),
    ("are you able to produce PD 41/50 in March?", "availability"),
    # logistics
    ("¿Cuándo zarpa el buque con nuestro contenedor para Valencia?", "logistics"),
    ("mándame el BL y el certificado sanitario por favor", "logistics"),
    ("What is the ETA of the vessel to Yokohama?", "logistics"),
    ("please send the tracking of the samples", "logistics"),
    ("el reefer tiene que ir a -20, lo pueden confirmar?", "logistics"),
    # payment
    ("Ya transferimos el anticipo, adjunto comprobante", "payment"),
    ("¿Qué forma de pago manejan?", "payment"),
    ("what bank do we wire to? need the SWIFT", "payment"),
    ("the balance will be paid against copy of BL", "payment"),
    ("envío el comprobante de pago de la proforma 812", "payment"),
    # greeting: only hello, thanks, bye
    ("Buenas tardes a todos", "greeting"),
    ("ok gracias", "greeting"),
    ("Thanks a lot, have a nice weekend!", "greeting"),
    ("good morning team", "greeting"),
    # other: bare acks, complaints (even with a product), chit-chat, wrong numbers
    ("ok", "other"),
    ("listo", "other"),
    ("👍", "other"),
    ("el HOSO 30/40 llegó descongelado y con mal olor", "other"),
    ("the cartons arrived crushed, the customer filed a claim", "other"),
    ("you have the wrong number, this is not a seafood company", "other"),
    ("¿Nos vemos en la feria de Boston en marzo?", "other"),
]


@pytest.mark.parametrize(("text", "intent"), INTENTS)
def test_intent(rules: RulesAnalyzer, text: str, intent: str) -> None:
    assert rules.analyze(text)["intent"] == intent


def test_greetings_around_a_request_do_not_change_it(rules: RulesAnalyzer) -> None:
    assert rules.analyze("Hola, buenos días. ¿Tienen PD 31/40? Gracias, saludos")["intent"] == "availability"
    assert rules.analyze("Hi team, price for HLSO 21/25 CFR Busan? thanks")["intent"] == "price_quote"


def test_typos_and_chat_abbreviations(rules: RulesAnalyzer) -> None:
    assert rules.analyze("nesecito la porforma del PD 31/40")["intent"] == "proforma"
    assert rules.analyze("prceio del HLSO 16/20?")["intent"] == "price_quote"
    assert rules.analyze("do u have hoso 30/40 availble?")["intent"] == "availability"
    # ordinary words one letter away from a cue are not that cue
    assert rules.analyze("pueden trabajar con 30% de adelanto?")["intent"] == "payment"


# -- entities --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "size"), [
    ("HLSO 16-20 20% glaseo", "16/20"),
    ("HLSO 16 / 20 20% glaseo", "16/20"),
    ("HLSO 16/20s 20% glaseo", "16/20"),
    ("HOSO U-10 sin glaseo", "U10"),
    ("HOSO U 10 sin glaseo", "U10"),
    ("HOSO U/10 sin glaseo", "U10"),
    ("hoso u15 10% glaze", "U15"),
    ("y la 21-25? a cuánto?", "21/25"),  # a size without a product
    ("PUD 100/200 10% glaseo", "100/200"),
])
def test_size_forms(rules: RulesAnalyzer, text: str, size: str) -> None:
    assert rules.analyze(text)["size"] == size


@pytest.mark.parametrize("text", [
    "la proforma con embarque el 15/03 por favor",
    "PI for shipment 9/20 please",
    "el saldo de la factura 2024-118 vence el 06/11/2025",
    "temperatura del reefer -18/-20",
])
def test_dates_and_numbers_are_not_sizes(rules: RulesAnalyzer, text: str) -> None:
    assert rules.analyze(text)["size"] is None


@pytest.mark.parametrize(("text", "glaze"), [
    ("PD 26/30 con 20% glaseo", 20),
    ("PD 26/30 glaze 10%", 10),
    ("PD 26/30 10 % de glaseo", 10),
    ("PD 26/30 glaseo al 15%", 15),
    ("PD 26/30 5%glaseo", 5),
    ("PD 26/30 glaseo 25", 25),
    ("PD 26/30 25% de glaze", 25),
    ("PD 26/30 glazing 30%", 30),
    ("PD 26/30 IQF glaseado al 10%", 10),
    ("EZ peel 26/30 25% medio contenedor", 25),  # a bare % right after the size
    ("entero 40/50 bloque 15% para Manzanillo", 15),  # a freezing style may sit between
    ("PD 26/30 sin glaseo", 0),
    ("PD 26/30 no glaze", 0),
    ("HLSO 21/25 0% glazing", 0),
    ("corrijan la proforma, el glaseo es 20% no 30%", 20),  # the first value
    ("transferimos hoy el 40% de anticipo", None),  # an advance is never glaze
    ("HLSO 16/20 30% de anticipo", None),
    ("pedimos un descuento del 5% en el PD 26/30", None),
    ("HLSO 16/20 glaseo 2 contenedores", None),  # the number is an amount
])
def test_glaze_forms(rules: RulesAnalyzer, text: str, glaze: int | None) -> None:
    assert rules.analyze(text)["glaseo_percentage"] == glaze


@pytest.mark.parametrize(("text", "incoterm", "destination"), [
    ("HLSO 16/20 C&F Rotterdam", "CFR", "Rotterdam"),
    ("HLSO 16/20 c & f rotterdam", "CFR", "Rotterdam"),
    ("HLSO 16/20 CNF Shanghai", "CFR", "Shanghai"),
    ("HLSO 16/20 ex works", "EXW", None),
    ("HLSO 16/20 ex-works Guayaquil", "EXW", "Guayaquil"),
    ("precio FOB Guayaquil", "FOB", "Guayaquil"),
    ("PD 31/40 Valencia cif", "CIF", "Valencia"),
    ("precio CFR a Montreal del HOSO", "CFR", "Montreal"),
    ("cuánto el PUD 41/50 puesto en Miami?", None, "Miami"),  # "puesto en" is no incoterm
])
def test_incoterm_and_destination(rules: RulesAnalyzer, text: str, incoterm: str | None,
                                  destination: str | None) -> None:
    d = rules.analyze(text)
    assert (d["incoterm"], d["destination"]) == (incoterm, destination)


@pytest.mark.parametrize(("text", "destination"), [
    ("el buque va desde Guayaquil a Vigo, cuánto demora?", "Vigo"),
    ("the container arrived in Busan yesterday", "Busan"),
    ("el embarque con destino a Lisboa ya zarpó", "Lisboa"),
    ("the shipment to Lisbon already sailed", "Lisbon"),  # kept as written: Lisbon is not Lisboa
    ("nuestro embarque arribó a los ángeles ayer", "Los Ángeles"),  # canonical capitalization
    ("estuvimos en la feria de Barcelona, muy buena", None),  # chit-chat
    ("I will be in Guayaquil next week, can we meet?", None),
])
def test_destination_context(rules: RulesAnalyzer, text: str, destination: str | None) -> None:
    assert rules.analyze(text)["destination"] == destination


@pytest.mark.parametrize(("text", "quantity"), [
    ("Mándeme la proforma por 3 contenedores de HLSO 21/25", "3 contenedores"),
    ("PI for 2x40' reefer HOSO 50/60", "2x40' reefer"),
    ("Cotícenme 3 x 40' RF de HOSO 20/30", "3 x 40' RF"),
    ("please book 1,250 cases of PD 16/20", "1,250 cases"),
    ("pedido de 3.450 cajas de HLSO 26/30", "3.450 cajas"),
    ("proforma 19.500 kg PD 41/50", "19.500 kg"),
    ("quote 27,500 lbs PUD 61/70", "27,500 lbs"),
    ("PUD 41/50 glaseo 10 medio contenedor para Vigo", "medio contenedor"),
    ("confirmo UN CONTENEDOR de PUD 51/60", "UN CONTENEDOR"),
    ("PD 26/30 10% glaze, 12 TM, FOB", "12 TM"),
    ("HOSO 70/80 10% glaseo 3 FCL", "3 FCL"),
    ("we will pay the 8 tons next Monday", "8 tons"),
    ("Confirmamos 400 cajas de P&D 26/30 en empaque de 10x2kg", "400 cajas"),
])
def test_quantity_is_the_exact_substring(rules: RulesAnalyzer, text: str, quantity: str) -> None:
    assert rules.analyze(text)["quantity"] == quantity


@pytest.mark.parametrize("text", [
    "HLSO 16/20 empacado en 10x2kg",  # packing
    "cajas de 20 lb de PD 31/40",
    "cuántos días de tránsito son? unos 30 días",  # days
    "te llamo en 10 minutos",
    "el último embarque llegó bien",  # no amount
])
def test_packing_days_and_minutes_are_not_quantities(rules: RulesAnalyzer, text: str) -> None:
    assert rules.analyze(text)["quantity"] is None


@pytest.mark.parametrize(("text", "product"), [
    ("IQF 16/20 10% glaseo", None),  # freezing styles are never products
    ("bloque 31/35", None),
    ("block frozen 41/50 CFR Miami", None),
    ("P&D IQF 26/30", "P&D"),
    ("PD 26/30 semi-IQF", "PD"),  # PD and P&D stay distinct
    ("P & D 26/30", "P&D"),
    ("PyD 26/30", "P&D"),
    ("pelado y desvenado 26/30", "P&D"),
    ("PD tail-on 26/30", "PDTO"),
    ("pelado desvenado con cola 26/30", "PDTO"),
    ("camarón cola 31/35", "HLSO"),
    ("headless 31/35", "HLSO"),
    ("camarón entero 40/50", "HOSO"),
    ("head-on 40/50", "HOSO"),
    ("peeled undeveined 71/90", "PUD"),
    ("EZ-Peel 21/25", "EZ PEEL"),
    ("easy peel 21/25", "EZ PEEL"),
])
def test_products(rules: RulesAnalyzer, text: str, product: str | None) -> None:
    assert rules.analyze(text)["product"] == product


def test_multi_takes_the_first_line(rules: RulesAnalyzer) -> None:
    d = rules.analyze("Proforma por favor:\n2 contenedores HOSO 60/70 20% glaseo\n1 FCL HLSO U10 glaseo 30%")
    assert d["multi"] is True
    assert (d["product"], d["size"], d["glaseo_percentage"], d["quantity"]) == ("HOSO", "60/70", 20, "2 contenedores")
    # a glaze or incoterm written once for all lines belongs to the first line
    d = rules.analyze("PI please:\n1 container PUD 51/60\n2 containers HLSO 21/25\nall 10% glaze, CFR Busan")
    assert (d["multi"], d["product"], d["quantity"], d["glaseo_percentage"], d["incoterm"], d["destination"]) == (
        True, "PUD", "1 container", 10, "CFR", "Busan")
    # alternatives with "o"/"or" and a second size count too
    assert rules.analyze("tienen HLSO 16/20 o PD 21/25?")["multi"] is True
    assert rules.analyze("precio del PUD 51/60 y 61/70")["multi"] is True
    assert rules.analyze("precio del PUD 51/60 IQF o bloque")["multi"] is False
    assert rules.analyze("HLSO 16/20 20% glaseo")["multi"] is False


# -- placeholders from the anonymizer --------------------------------------------------------------


def test_placeholders_do_not_confuse_it(rules: RulesAnalyzer) -> None:
    d = rules.analyze("Hola [NAME], HLSO 16/20 con 20% glaseo, mi cel [PHONE], correo [EMAIL]")
    assert (d["intent"], d["product"], d["size"], d["glaseo_percentage"]) == ("proforma", "HLSO", "16/20", 20)
    assert (d["destination"], d["quantity"], d["incoterm"]) == (None, None, None)
    d = rules.analyze("envíen la proforma a [ADDRESS], RUC [ID], cuenta [ACCOUNT_1]: 2 FCL PD 26/30")
    assert (d["intent"], d["quantity"], d["size"]) == ("proforma", "2 FCL", "26/30")
    assert rules.analyze("[PHONE]")["intent"] == "other"
    assert rules.analyze("Gracias [NAME]!")["intent"] == "greeting"
    for p in ("[PHONE]", "[NAME]", "[EMAIL]", "[ADDRESS]", "[ID]", "[ACCOUNT]", "[PHONE_2]"):
        d = rules.analyze(f"{p} {p}")
        assert all(d[k] is None for k in ("product", "size", "glaseo_percentage", "incoterm", "destination",
                                          "quantity")), p


# -- confidence ------------------------------------------------------------------------------------


def test_confidence_follows_the_evidence(rules: RulesAnalyzer) -> None:
    strong = rules.analyze("necesito proforma de 2 contenedores HLSO 16/20 CFR Miami")["confidence"]
    tie = rules.analyze("any news about the container?")["confidence"]
    unknown = rules.analyze("podrían revisar lo que conversamos ayer sobre el tema?")["confidence"]
    assert 0.0 <= tie < strong <= 1.0
    assert 0.0 <= unknown < strong


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_never_raises_on_any_text(text: str) -> None:
    d = _shared().analyze(text)
    assert list(d) == KEYS
    assert 0.0 <= d["confidence"] <= 1.0
    assert d["intent"] in _shared().intents
    assert d["quantity"] is None or d["quantity"] in text
    assert d["glaseo_percentage"] is None or 0 <= d["glaseo_percentage"] <= 50


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["HLSO", "16/20", "20%", "glaseo", "[PHONE]", "precio", "CFR", "Miami", "¿",
                                 "\n", "x", "40'", "3", "contenedores", "sin", "de", "U-10", "P & D", "ñ",
                                 "İ", "🙏", "  ", "-", "/", ".", "ex works", "gracias por la"]),
                max_size=25))
def test_never_raises_on_domain_soup(parts: list[str]) -> None:
    text = " ".join(parts)
    d = _shared().analyze(text)
    assert 0.0 <= d["confidence"] <= 1.0
    assert d["quantity"] is None or d["quantity"] in text


@pytest.mark.parametrize("bad", [None, 42, b"HLSO 16/20", "x" * 50_000, "\x00\ud800", "İİİ 16/20"])
def test_odd_inputs(rules: RulesAnalyzer, bad: Any) -> None:
    d = rules.analyze(bad)
    assert list(d) == KEYS and 0.0 <= d["confidence"] <= 1.0


def test_fold_keeps_offsets() -> None:
    for s in ["Camarón ENTERO", "İstanbul", "Ｆｕｌｌ１６/２０", "niño’s 😊", "ß"]:
        assert len(fold(s)) == len(s)
    assert fold("Camarón Ñandú") == "camaron nandu"


def test_thread_safe(rules: RulesAnalyzer) -> None:
    texts = [t for t, _ in INTENTS] * 5
    expected = [rules.analyze(t) for t in texts]
    results: list[list[dict[str, Any]]] = []

    def work() -> None:
        results.append(rules.analyze_many(texts))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4


# -- driven by the configuration -------------------------------------------------------------------


def test_catalog_comes_from_config() -> None:
    cfg = AnalysisConfig(
        intents=[
            IntentConfig(name="order", role="order", cues={"en": ["order"]}),
            IntentConfig(name="ask_price", strong_cues={"en": ["price"]}),
            IntentConfig(name="hello", role="greeting", cues={"en": ["hello"]}),
            IntentConfig(name="misc", role="fallback"),
        ],
        products=[ProductConfig(code="LOB", aliases=["lobster tail", "langosta"])],
        freezing_styles=["IQF"],
        incoterms={"DAP": ["DAP", "delivered at place"]},
        destinations=["Reykjavik"],
        glaze_words=["glaze"],
        quantity_units=["crates"],
    )
    r = RulesAnalyzer(cfg)
    d = r.analyze("price of lobster tail 16/20 IQF glaze 5%, 30 crates delivered at place Reykjavik")
    assert (d["intent"], d["product"], d["size"], d["glaseo_percentage"], d["incoterm"], d["destination"],
            d["quantity"]) == ("ask_price", "LOB", "16/20", 5, "DAP", "Reykjavik", "30 crates")
    assert r.analyze("langosta 21/25")["intent"] == "order"  # a bare spec line
    assert r.analyze("hello")["intent"] == "hello"
    assert r.analyze("HLSO 16/20 FOB Miami")["product"] is None  # not in this catalog
    assert r.analyze("whatever")["intent"] == "misc"


def test_output_passes_the_schema_validation(rules: RulesAnalyzer, cfg: AnalysisConfig) -> None:
    schema = pytest.importorskip("workers.analyzers.schema")
    for text, _ in INTENTS:
        d = rules.analyze(text)
        schema.validate_analysis({k: v for k, v in d.items() if k != "multi"}, cfg)


_SHARED: list[RulesAnalyzer] = []


def _shared() -> RulesAnalyzer:
    # hypothesis tests cannot take function-scoped fixtures; build the analyzer once
    if not _SHARED:
        _SHARED.append(RulesAnalyzer(load_config(CONFIG).analysis))
    return _SHARED[0]
