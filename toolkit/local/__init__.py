"""The embedded AWS: moto's server in-process plus the one module closing moto's gaps (compat)."""
