import pytest

from pgdrill.config import Config, load_config
from pgdrill.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "pgdrill.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_adr_values():
    config = Config()
    assert config.targets.rpo_seconds == 300 and config.targets.rto_seconds == 300
    assert config.archive.archive_timeout_seconds == 300
    assert config.source.cluster_name == "postgres-cluster"


def test_file_overrides_defaults(tmp_path):
    config = load_config(write(tmp_path, '[targets]\nrpo_seconds = 60\n[archive]\nwal_compression = "none"\n'))
    assert config.targets.rpo_seconds == 60.0
    assert config.archive.wal_compression == "none"
    assert config.targets.rto_seconds == 300


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key targets\.rpo_secs .*allowed: rpo_seconds, rto_seconds"):
        load_config(write(tmp_path, "[targets]\nrpo_secs = 60\n"))


def test_unknown_section_is_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown key s4"):
        load_config(write(tmp_path, "[s4]\nbucket = 'x'\n"))


def test_bad_enum_value_lists_allowed(tmp_path):
    with pytest.raises(ConfigError, match=r"archive\.wal_compression = 'zip' is not allowed.*'gzip'"):
        load_config(write(tmp_path, "[archive]\nwal_compression = 'zip'\n"))


def test_wrong_type(tmp_path):
    with pytest.raises(ConfigError, match=r"archive\.segment_size_mb must be an integer"):
        load_config(write(tmp_path, "[archive]\nsegment_size_mb = '16'\n"))


def test_external_s3_needs_endpoint(tmp_path):
    with pytest.raises(ConfigError, match="endpoint_url is required"):
        load_config(write(tmp_path, "[s3]\nmode = 'external'\n"))


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[targets\n"))
