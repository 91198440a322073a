"""Language structure the rules analyzer needs beyond the configured catalog (Spanish and English).

Nothing here names a product, a port, an incoterm or an intent: those come from config.yaml. These
are function words, chat abbreviations, number words and the small closed classes (origin
prepositions, date words, event words) that decide how a catalog match is read. All entries are
folded: lower case, no accents.
"""

from __future__ import annotations

# Chat abbreviations expanded before cue matching ("do u have" = "do you have").
ABBREVIATIONS: dict[str, str] = {
    "u": "you", "ur": "your", "r": "are", "pls": "please", "plz": "please", "pl": "please",
    "thx": "thanks", "tks": "thanks", "thnx": "thanks", "tnx": "thanks", "ty": "thank you",
    "q": "que", "k": "que", "x": "por", "xfa": "por favor", "xq": "porque", "pq": "porque",
    "porfa": "por favor", "porfavor": "por favor", "d": "de", "tb": "tambien", "tmb": "tambien",
    "cont": "contenedor", "conts": "contenedores", "cntr": "container", "cntrs": "containers",
    "ctn": "container", "info": "informacion", "pf": "por favor", "bn": "bien", "xa": "para",
    "pa": "para", "n": "en", "ay": "hay", "dnd": "donde", "qdo": "quedo", "slds": "saludos",
    "hw": "how", "abt": "about",
}

# Function words and chat filler: they explain a token without carrying intent. A message whose
# tokens are all greetings, fillers and at most two unknown words (names) is a greeting.
STOPWORDS: frozenset[str] = frozenset("""
a al algo algun alguna alguno ante antes aqui asi aun cada como con contra cual cuales cuando de del
desde donde dos el ella ellas ellos en entre era es esa ese eso esta estan estas este esto estos fue
hasta hay la las le les lo los mas me mi mis mucho muy nada ni no nos nosotros o otra otro para pero
poco por porque que quien se sea ser si sin sobre son su sus tal tambien te tengo ti todo todos tu
tus un una uno unos unas usted ustedes vez y ya yo mismo misma hoy ahora luego solo bien tan
the a an and or of to in on at for from with by is are was were be been am it its this that these
those there here i you he she we they me my our your their us them do does did have has had will
would can could should may might shall not no yes so as if then than just also too very please
por favor what which when where who how why about into over all any some more most much
""".split())

# Acknowledgements and courtesy words allowed around a greeting ("ok gracias", "perfecto, thanks").
FILLERS: frozenset[str] = frozenset("""
ok okay oki okey vale perfecto perfect excelente excellent genial great super listo bien good nice
claro entendido noted dale si yes sure amigo amiga amigos team equipo todos everyone all guys
senor senora sr sra don dona ing ingeniero ingeniera lic licenciado estimada estimado estimados dear
querido querida muchas mil many much informacion information ayuda help atencion attention
apoyo support respuesta reply tenga tengas tengan buen buena good nice lovely great dia day
tarde tardes noche noches semana week weekend finde fin feliz happy new year ano navidad christmas
fiestas igual igualmente also too ustedes usted contigo you again nuevamente otra vez
""".split())

# Number words that start an amount ("un contenedor", "medio contenedor", "one container").
NUMBER_WORDS: tuple[str, ...] = (
    "un", "una", "one", "dos", "two", "tres", "three", "cuatro", "four", "cinco", "five", "seis", "six",
    "siete", "seven", "ocho", "eight", "nueve", "nine", "diez", "ten", "medio", "half a", "half",
)

# Before a place: where the goods come from, not where they go ("desde Guayaquil a Vigo").
ORIGIN_WORDS: frozenset[str] = frozenset({"desde", "from", "origen", "origin", "ex"})

# Words between an incoterm and its place ("CFR a Montreal", "FOB port of Guayaquil").
DEST_LINKS: frozenset[str] = frozenset({"a", "al", "to", "en", "in", "puerto", "port", "de", "of", "hacia"})

# Words skipped when looking at what comes right before a place ("la feria de Barcelona").
PLACE_LINKS: frozenset[str] = frozenset({"a", "al", "en", "in", "de", "del", "at", "to", "la", "el", "the",
                                         "of", "los", "las"})

# Places named right after these are chit-chat ("la feria de Barcelona"), not destinations.
EVENT_WORDS: frozenset[str] = frozenset({
    "feria", "ferias", "expo", "exposicion", "fair", "show", "congreso", "conference", "convencion",
    "convention", "exhibicion", "exhibition", "evento", "event", "seminario", "seminar", "oficina",
    "office", "vacaciones", "vacation", "holiday", "holidays", "vivo", "live", "lives", "vive",
    "visit", "visita", "visitar", "visiting", "meet", "reunion", "meeting", "viaje", "trip", "be",
    "estare", "estoy", "estamos", "stay", "travel", "viajo", "saludos",
})

# Words right before a slash pair that make it a date ("embarque el 10/12", "shipment 9/20").
DATE_WORDS: frozenset[str] = frozenset({
    "el", "on", "del", "shipment", "shipmnt", "shipping", "embarque", "fecha", "date", "etd", "eta",
    "vence", "due", "until", "hasta", "antes", "before", "by", "desde", "from", "loading", "carga",
    "zarpe", "llegada", "arrival", "dia", "day", "for", "para", "week", "semana",
})

# "gracias por la proforma" thanks for something: the cue after it is not a request.
THANKS_WORDS: frozenset[str] = frozenset({"gracias", "thanks", "thank", "agradezco", "agradecemos"})
THANKS_LINKS: frozenset[str] = frozenset({"por", "for", "you", "el", "la", "los", "las", "su", "sus",
                                          "the", "your", "tu", "mucho", "very", "much"})

# A document cited by number ("proforma 356", "PI-2024-219", "pedido #12"): a reference.
CITATION_WORDS: frozenset[str] = frozenset({"no", "nro", "num", "numero", "number", "n", "nr", "es", "is"})

# Genitive articles before an order cue: "el anticipo del pedido", "payment of the order".
REFERENCE_WORDS: frozenset[str] = frozenset({"del", "de", "of", "for"})
ARTICLES: frozenset[str] = frozenset({"la", "el", "los", "las", "the", "su", "sus", "your", "this", "esta",
                                      "este", "our", "nuestro", "nuestra", "mi", "my"})

# Words meaning "none" before a glaze word ("sin glaseo", "no glaze").
NEGATIONS: tuple[str, ...] = ("sin", "no", "without", "zero", "cero", "0")

# Words never corrected as typos of a cue, because they are ordinary words a letter away from one
# ("blanco" is not "banco", "quite" is not "quote", "costa" is not "costo").
PROTECTED: frozenset[str] = frozenset("""
blanco blanca quite prime prize pride stuck stick costa cuanta cuantos cuantas cuento sales saler
border orders offers office officer stocks paid pain pair cargo carga cargas salen salida saludo saluda
cuentas presto preste precioso prices priced quotes quoted quota pagina pages pagos pagan pague
pesca pesco pescado tienda tiende ordenes ordeno orden orgen deposito cosecho cosechar mande manda
mandan mandas mando enviar envie envio envia envian ventas venta vende vendemos vendo quedo quede
queda quedan quedar quedamos quedas bueno buenos buena buenas nuevo nueva nuevos calidad cantidad
semanas salmon salmos carta cartas cartel carton cartones correr correo correos bancos banca
empaque empaques empacado empacar customer customers trabajar trabajan trabajamos mandame mandeme
confirmen confirman confirme confirmar confirmado confirmada asking banking month months
duda dudas perdido perdida sell simple small think page libre libro cara camino contenido pasado pasar
premio cuarto salio salir sale salen salida mientras major menor even estar viejo vista late negro mucha
""".split())

# Units of weight: an amount in them below 100 is packing ("cajas de 10 kg"), not an order.
WEIGHT_UNITS: frozenset[str] = frozenset({"kg", "kgs", "kilo", "kilos", "kilogramos", "lb", "lbs", "libras",
                                          "pounds"})

# Month and weekday names: never a place, never a typo of a cue.
MONTHS: frozenset[str] = frozenset("""
enero febrero marzo abril mayo junio julio agosto septiembre setiembre octubre noviembre diciembre
january february march april may june july august september october november december
jan feb mar apr jun jul aug sep sept oct nov dec
lunes martes miercoles jueves viernes sabado domingo
monday tuesday wednesday thursday friday saturday sunday
""".split())

# Phrases that consume their words without pointing at an intent: "how many" is not "how much",
# "hay que" is "must", and a shipping date after an order or a stock question is only a date.
NEUTRAL_PHRASES: tuple[str, ...] = (
    "cuantos", "cuantas", "how many", "hay que", "hay q", "tiene que", "tienen que", "have to",
    "para embarque", "para embarcar", "para el embarque de", "for shipment", "for prompt shipment",
    "pronto embarque", "embarque inmediato", "prompt shipment", "donde queda", "donde quedan",
)

# A message opening with one of these (after greetings) asks something, "?" or not.
QUESTION_STARTS: frozenset[str] = frozenset("""
que cual cuales cuando cuanto como donde quien tienen tiene tienes hay pueden puede podrian podria
sera seria existe what which when how where who do does did is are can could would will any anything
""".split())
