# The fleet tier: one Memorystore for Redis that every instance of the API
# shares (DatosCache redis:HOST:PORT), so that a refresh by one instance
# serves them all and BigQuery sees about one query per freshness window,
# whatever the number of instances. Optional: a small system caches per
# instance (shmcb).
#
# mod_socache_redis speaks neither AUTH nor TLS, so the instance has
# neither; it is reached only from the VPC, and what it holds is signed with
# the key in Secret Manager (DatosCacheSecretFile), so that whoever can write
# to it still cannot choose what the API serves.

resource "google_redis_instance" "cache" {
  count = var.fleet_cache ? 1 : 0

  name           = "${var.name}-cache"
  region         = var.region
  tier           = var.redis_tier
  memory_size_gb = var.redis_memory_gb
  redis_version  = "REDIS_7_2"
  labels         = var.labels

  authorized_network      = var.network
  connect_mode            = "DIRECT_PEERING"
  auth_enabled            = false
  transit_encryption_mode = "DISABLED"

  # A cache: the least recently used answers go first when it is full, and
  # nothing in it is worth a snapshot.
  redis_configs = {
    maxmemory-policy = "allkeys-lru"
  }

  persistence_config {
    persistence_mode = "DISABLED"
  }
}
