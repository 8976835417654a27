"""The demo system `make run` and docker/compose.yaml start: the dataset and table with
sample rows, the Pub/Sub topic, the loader's subscription with its dead-letter topic, and a
mix of valid and invalid messages to publish. Everything goes through the emulator's public
REST API, as a real client's setup would.
"""
import datetime
import json

from .client import EmulatorError

DATASET, TABLE, LOCATION = "latam_dataset", "datos", "southamerica-east1"
TOPIC, SUBSCRIPTION, DLQ = "datos-topic", "datos-subscription", "datos-dlq"

SAMPLE = [
    ("789", "Prueba automática"),
    ("790", "Segundo dato"),
    ("791", None),
    ("792", "Texto con \"comillas\" y salto\nde línea"),
    ("793", "¿Qué tal?"),
    ("794", "datos desde la cola"),
    ("795", "Último dato de ejemplo"),
]


def rfc3339(epoch):
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


def create_resources(emu):
    """Creates the dataset and table the first time; True when they were new."""
    try:
        emu.create_dataset(DATASET, location=LOCATION)
    except Exception as e:  # 409: kept from an earlier run
        if "409" not in str(e) and "uplicate" not in str(e) and "xists" not in str(e):
            raise
        return False
    emu.create_datos_table(DATASET, TABLE)
    return True


def create_pubsub(emu):
    """The topic producers publish to, the loader's subscription (its own dead-letter
    policy a last resort: 100 attempts) and the dead-letter topic with a subscription, so
    dead letters are kept (docs/design.md). Anything kept from an earlier run stays."""
    steps = [lambda: emu.create_topic(TOPIC), lambda: emu.create_topic(DLQ),
             lambda: emu.create_subscription(DLQ + "-subscription", DLQ, never_expire=True),
             lambda: emu.create_subscription(SUBSCRIPTION, TOPIC, ack_deadline=60,
                                             dead_letter_topic=DLQ, max_delivery_attempts=100,
                                             never_expire=True)]
    for step in steps:
        try:
            step()
        except EmulatorError as e:
            if "-> 409" not in str(e):
                raise


def seed(emu):
    now = emu.now()
    rows = []
    for i, (rid, text) in enumerate(SAMPLE):
        r = {"id": rid, "timestamp": rfc3339(now - 60 * (i + 1))}
        if text is not None:
            r["contenido"] = text
        rows.append(r)
    emu.insert_rows(rows, DATASET, TABLE)
    return len(rows)


def publish_samples(emu):
    """Records as producers would publish them, and a few that break the record
    rules: the loader loads the first and dead-letters the others with a reason."""
    now = emu.now()
    good = [{"id": "pub-%d" % i, "contenido": "publicado %d" % i,
             "timestamp": rfc3339(now - i)} for i in range(1, 4)]
    messages = [{"data": json.dumps(g, ensure_ascii=False), "attributes": {"source": "make-run"}}
                for g in good]
    messages += [
        {"data": '{"id":"sin-fecha","contenido":"no timestamp"}',
         "attributes": {"source": "make-run"}},
        {"data": "esto no es JSON", "attributes": {"source": "make-run"}},
        {"data": json.dumps({"id": "futuro", "timestamp": rfc3339(now + 86400)}),
         "attributes": {"source": "make-run"}},
    ]
    emu.publish(TOPIC, messages)
    return len(good), len(messages) - len(good)
