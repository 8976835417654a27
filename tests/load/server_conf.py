"""The mod_datos configuration the load scenario (locustfile.py) runs
against, shared by `make bench` and the `make test` smoke, so both exercise
the same server.

POST /datos (ingestion) is switched on in one place: INGEST below.
"""

# POST /datos publishes to Pub/Sub once mod_datos has ingestion; until then
# the server answers POST with 405 and the load reports it as failures.
INGEST = False

TOPIC = "datos-topic"

LOCATIONS = """
<Location "/datos">
  SetHandler datos
</Location>
<Location "/health">
  SetHandler datos-health
</Location>
"""


def ingest_directives(emulator):
    """The directives that turn POST /datos on (empty while INGEST is off)."""
    if not INGEST:
        return ""
    return ("DatosIngest On\nDatosTopic projects/%s/topics/%s\nDatosPubSubURL %s\n"
            % (emulator.project, TOPIC, emulator.base_url))


def server_conf(emulator, table="latam_dataset.datos", extra=""):
    """The httpd snippet: the table served from the emulator, ingestion as
    INGEST says, and the two locations."""
    return ("DatosProject %s\nDatosTable %s\nDatosCredentials none\n"
            "DatosBigQueryURL %s/bigquery/v2\nDatosStateDir \"${root}/state\"\n%s%s\n%s"
            % (emulator.project, table, emulator.base_url, ingest_directives(emulator),
               extra, LOCATIONS))
