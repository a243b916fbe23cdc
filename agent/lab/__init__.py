"""The practice lab: real hosts in Linux network namespaces for rehearsal, the demo and integration tests."""
