"""The `memload` subcommands, one module each: flags, help and a thin handler over the services in `scripts/`."""
