"""The mod_datos configuration the load scenario (locustfile.py) runs
against, shared by `make bench` and the `make test` smoke, so both exercise
the same server.

POST /datos (ingestion) is on and, as the shipped conf/datos.conf shows,
behind Apache's own access control: writes need the bearer token INGEST_TOKEN,
reads stay public. The locustfile sends it from DATOS_INGEST_TOKEN.
"""

TOPIC = "datos-topic"

# A test-only secret: a deployment keeps its own, long and random.
INGEST_TOKEN = "load-scenario-token"

LOCATIONS = """
<Location "/datos">
  SetHandler datos
  <LimitExcept GET HEAD OPTIONS>
    Require expr "%%{HTTP:Authorization} == 'Bearer %s'"
  </LimitExcept>
</Location>
<Location "/health">
  SetHandler datos-health
</Location>
"""


def ingest_directives(emulator):
    """The directives that turn POST /datos on, publishing to TOPIC."""
    return ("DatosIngest On\nDatosTopic projects/%s/topics/%s\nDatosPubSubURL %s\n"
            % (emulator.project, TOPIC, emulator.base_url))


def server_conf(emulator, table="latam_dataset.datos", extra=""):
    """The httpd snippet: the table served from the emulator, ingestion on,
    and the two locations."""
    return ("DatosProject %s\nDatosTable %s\nDatosCredentials none\n"
            "DatosBigQueryURL %s/bigquery/v2\nDatosStateDir \"${root}/state\"\n%s%s\n%s"
            % (emulator.project, table, emulator.base_url, ingest_directives(emulator),
               extra, LOCATIONS % INGEST_TOKEN))
