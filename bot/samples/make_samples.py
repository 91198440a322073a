"""Generates conversations.jsonl, the demo's bundled sample conversations (run once, committed).

Synthetic only: Faker names, numbers and addresses (reserved example domains), es and en, on both
channels, with the personal data customers really type, so the demo shows what anonymization does.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from faker import Faker

ES = [
    "Hola, buenos días",
    "Necesito proforma {q} contenedores {p} {s} con {g}% glaseo FOB Guayaquil",
    "precio del {p} {s} CFR {d}? mi cel es {phone}",
    "tienen {p} {s} disponible para {m}?",
    "me llamo {name}, escríbanme a {email} por favor",
    "cuándo zarpa el contenedor para {d}?",
    "ya hice la transferencia del anticipo desde la cuenta {acct}",
    "la factura a nombre de mi empresa, RUC {ruc}, dirección {addr}",
    "HLSO {s} {g}% glaseo {q} FCL",
    "gracias, quedo atento",
]
EN = [
    "Hello, good morning",
    "Please send a proforma for {q} containers {p} {s} {g}% glaze CFR {d}",
    "what is your best price for {p} {s} CIF {d}? call me at {phone}",
    "do you have {p} {s} available for {m}?",
    "my name is {name}, my email is {email}",
    "when does the vessel sail to {d}? please send the BL",
    "we wired the advance from account {acct}",
    "thanks, talk soon",
]
PRODUCTS = ["HLSO", "HOSO", "PD", "P&D", "PDTO", "EZ PEEL"]
SIZES = ["16/20", "21/25", "26/30", "31/35", "41/50", "U10"]
PORTS_ES = ["Miami", "Rotterdam", "Valencia", "Shanghai", "Lisboa", "Nueva York"]
PORTS_EN = ["Houston", "Antwerp", "Busan", "Los Angeles", "Dubai", "Le Havre"]


def ruc(rng: random.Random) -> str:
    from stdnum.ec import ci

    while True:   # a random cédula whose check digit is right (python-stdnum validates it)
        number = f"{rng.randint(1, 24):02d}{rng.randint(0, 5)}{rng.randint(0, 9999999):07d}"
        if ci.is_valid(number):
            return number + "001"


def main() -> None:
    rng = random.Random(20241115)
    out = []
    for i in range(24):
        lang = "es" if i % 3 else "en"
        fk = Faker("es_ES" if lang == "es" else "en_US")
        fk.seed_instance(1000 + i)
        channel = "whatsapp" if i % 2 else "telegram"
        first, last = fk.first_name(), fk.last_name()
        templates = ES if lang == "es" else EN
        picked = [templates[0]] + rng.sample(templates[1:-1], 4) + [templates[-1]]
        messages = []
        for t in picked:
            messages.append(t.format(
                q=rng.randint(1, 6), p=rng.choice(PRODUCTS), s=rng.choice(SIZES), g=rng.choice([0, 10, 15, 20]),
                d=rng.choice(PORTS_ES if lang == "es" else PORTS_EN),
                m=rng.choice(["marzo", "abril", "mayo"] if lang == "es" else ["March", "April", "May"]),
                phone=(f"09{rng.randint(6, 9)}{rng.randint(1000000, 9999999)}" if lang == "es"
                       else f"+1 305 {rng.randint(200, 999)} {rng.randint(1000, 9999)}"),
                name=f"{first} {last}", email=f"{first.lower()}.{last.lower()}@example.com".replace(" ", ""),
                acct=f"{rng.randint(2200000000, 2299999999)}", ruc=ruc(rng),
                addr=f"Av. 9 de Octubre {rng.randint(100, 2999)} y Malecón"))
        user = (f"telegram:{7_000_000 + i}" if channel == "telegram"
                else f"whatsapp:+5939{rng.randint(80000000, 99999999)}")
        out.append({"channel": channel, "user": user, "first_name": first, "last_name": last,
                    "lang": lang, "messages": messages})
    path = Path(__file__).with_name("conversations.jsonl")
    path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in out), encoding="utf-8")
    print(f"wrote {len(out)} conversations to {path}")


if __name__ == "__main__":
    main()
