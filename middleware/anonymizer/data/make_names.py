"""Generate the anonymizer's word lists once, from Faker's locale providers.

    .venv/bin/python middleware/anonymizer/data/make_names.py

Writes, next to this script (one lower-case entry a line, sorted):

* ``first_names.txt`` -- given names of the es/en/pt locales below;
* ``surnames.txt``    -- family names of the same locales (compound ones split into words);
* ``common_words.txt`` -- frequent es/en words (Faker's lorem lists) plus the chat and trade
  vocabulary below: a token on this list is a name only when a cue says so ("Mar", "Paz", "Luz",
  "Rosa", "Price" ...).

Faker is a dev dependency: it is imported here only, never at run time. Re-run and commit the
output when the locale list or the extra vocabulary changes.
"""

from __future__ import annotations

import importlib
import unicodedata
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent

PERSON_LOCALES = ["es_ES", "es_MX", "es_CO", "es_AR", "es_CL", "en_US", "en_GB", "en_IE", "en_NZ", "pt_BR", "pt_PT"]
LOREM_LOCALES = ["es_ES", "en_US"]

# Particles are not names by themselves; the detector handles them between name tokens.
PARTICLES = {"de", "del", "la", "las", "los", "da", "das", "do", "dos", "van", "von", "der", "y", "e", "di", "du", "le"}

# Chat, greeting and trade vocabulary of the bot's domain (es/en/pt), on top of the lorem lists.
EXTRA_COMMON = """
hola hello hi hey buenas buenos buen dia día dias días tardes noches good morning afternoon evening
gracias thanks thank you thx saludos regards best cordiales cordialmente atentamente atte att attn
estimado estimados estimada estimadas dear team equipo señor señora señores amigo amiga ok okay vale
bendiciones quedo atento atenta pendiente porfa please pls por favor favor listo perfecto claro
precio precios price prices quote cotización cotizacion cotizar proforma factura invoice pedido orden
order contrato contract lote lot booking reserva embarque shipment zarpe naviera vessel container
contenedor contenedores reefer caja cajas cases case master masters cartons carton kilos kg lb lbs libras
tons toneladas glaseo glaze glazing camarón camaron shrimp langostino cola colas entero whole head
pelado desvenado peeled deveined tail talla tallas size sizes stock disponible available muestra
muestras samples sample documentos documents certificado certificate temperatura temperature flete
freight seguro insurance pago payment transferencia transfer wire anticipo advance saldo balance
banco bank cuenta account ahorros savings corriente checking tarjeta card crédito credito credit
débito debito visa mastercard amex swift iban routing cheque check oficina office bodega warehouse
planta plant empresa company compañía compania exportadora importadora comercial distribuidora
pesquera acuícola acuicola frigorífico frigorifico congelados productos mariscos seafood foods
imports exports trading group grupo sociedad cía cia ltda inc llc corp gerente manager compras
ventas sales purchasing logistics logística logistica calidad quality director directora jefe boss
broker agente agent consignee consignatario cliente customer proveedor supplier nuevo nueva new
número numero number teléfono telefono phone celular cel mobile whatsapp wsp correo email mail
dirección direccion address calle avenida street road ciudad city país pais country puerto port
norte sur este oeste north south east west central centro pacífico pacifico atlántico atlantico
mar sea costa coast playa bahía bahia isla island golfo gulf océano oceano azul blue verde green
blanco white negro black rojo red dorado gold golden plata silver sol sun luna moon estrella star
lunes martes miércoles miercoles jueves viernes sábado sabado domingo monday tuesday wednesday
thursday friday saturday sunday enero febrero marzo abril mayo junio julio agosto septiembre
setiembre octubre noviembre diciembre january february march april may june july august september
october november december jan feb mar apr jun jul aug sep sept oct nov dec hoy today mañana manana
tomorrow ayer yesterday semana week mes month año year fecha date hora hour time
paz luz rosa mar cruz santos valencia guayaquil manta lima salinas
sí si no yes not also también tambien ya aún aun todavía todavia
obrigado obrigada olá ola bom boa dia tarde noite senhor senhora prezado prezados abraço abraços
atenciosamente cumprimentos preço pedido encomenda fatura conta banco morada endereço rua
seafoods fisheries fishery aquaculture export exports import imports shipping marine ocean oceanic fresh
frozen holdings international global co sa gmbh bv ltd limited partners enterprises industries
distribution distributors crown wave harbor harbour bay reef coral pearl tide atlantic pacific
gerencia compras administración administracion finanzas operaciones contabilidad dueño dueña owner ceo
ruc dni nif nie rfc curp ssn nit iban swift bic usd eur fob cfr cif ddp exw fca pi po oc bl awb eta etd
hlso hoso pd pud pdto iqf id ci cc tel telf cel apt apto suite unit ste floor piso oficina dpto depto local
villa mz manzana solar km via vía st ave blvd rd dr avenida calle carrera cra cdla urb edificio torre
necesito necesitamos necesita quiero queremos quisiera busco buscamos tengo tenemos tiene tienen confirmo
confirmamos cotizar cotiza cotícenme cotizacion mándame mandame envíen envien enviar envío envio favor porfa
need needs want wants looking confirm send please quote quoting asking request require interested
aquí aqui allá alla hoy ahora urgente urgent asap gracias thanks saludos regards
""".split()


# Frequent in the lorem corpora only because they are frequent names: never common words here.
NOT_COMMON = set("""
antonio carlos fernando felipe francisco jorge josé juan luis manuel marco martín maría miguel pablo
pedro rafael santiago garcía gonzález lópez rodríguez ella
""".split())


def _norm(word: str) -> str:
    return unicodedata.normalize("NFC", word.strip().lower())


def _words(values: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for v in values:
        for w in v.replace("-", " ").split():
            w = _norm(w.strip(".,'’"))
            if len(w) >= 2 and w.isalpha() and w not in PARTICLES:
                out.add(w)
    return out


def _attr(provider: type, name: str) -> list[str]:
    v = getattr(provider, name, None)
    if isinstance(v, dict):  # some locales weigh names: an OrderedDict name -> frequency
        return list(v)
    if isinstance(v, list | tuple):
        return list(v)
    return []


def main() -> None:
    first: set[str] = set()
    last: set[str] = set()
    for loc in PERSON_LOCALES:
        p = importlib.import_module(f"faker.providers.person.{loc}").Provider
        for a in ("first_names", "first_names_male", "first_names_female"):
            first |= _words(_attr(p, a))
        last |= _words(_attr(p, "last_names"))
    common: set[str] = set()
    for loc in LOREM_LOCALES:
        common |= _words(importlib.import_module(f"faker.providers.lorem.{loc}").Provider.word_list)
    common |= _words(EXTRA_COMMON)
    common -= NOT_COMMON
    for fname, words in (("first_names.txt", first), ("surnames.txt", last), ("common_words.txt", common)):
        (HERE / fname).write_text("\n".join(sorted(words)) + "\n", encoding="utf-8")
        print(f"{fname}: {len(words)} entries")


if __name__ == "__main__":
    main()
