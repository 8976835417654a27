"""Test harness shared by the integration, emulator and load tests.

- `harness.loader`: runs the real datos-loader binary against the emulator.
- `harness.servers`: real memcached and redis on 127.0.0.1 for the fleet-cache tests.

The emulator's client is `gcpemu.client` (emulator/) and the httpd runner is `tools.httpd`.
"""
