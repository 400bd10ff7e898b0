"""The fleet simulator: scenario format, fleet model, in-memory and embedded-AWS adapters, runner."""
