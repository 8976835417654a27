"""Test harness shared by the integration, emulator and load tests.

- `harness.emulator`: starts the GCP emulator and drives its control API.
- `harness.httpd`: generates an httpd configuration and runs the real /usr/sbin/apache2.
"""
