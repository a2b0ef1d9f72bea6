"""The configuration sources, one module per kind."""

from __future__ import annotations

from microstd.config.sources.args import ArgsSource, args
from microstd.config.sources.base import Source
from microstd.config.sources.consul import ConsulSource, consul
from microstd.config.sources.dotenv import DotenvSource, dotenv
from microstd.config.sources.env import EnvSource, env
from microstd.config.sources.etcd import EtcdSource, etcd
from microstd.config.sources.file import FileSource, file
from microstd.config.sources.mapping import MappingSource, mapping
from microstd.config.sources.nats import NatsSource, nats
from microstd.config.sources.postgres import PostgresSource, postgres
from microstd.config.sources.redis import RedisSource, redis
from microstd.config.sources.secrets_dir import SecretsDirSource, secrets_dir
from microstd.config.sources.vault import VaultSource, vault

__all__ = [
    "ArgsSource",
    "ConsulSource",
    "DotenvSource",
    "EnvSource",
    "EtcdSource",
    "FileSource",
    "MappingSource",
    "NatsSource",
    "PostgresSource",
    "RedisSource",
    "SecretsDirSource",
    "Source",
    "VaultSource",
    "args",
    "consul",
    "dotenv",
    "env",
    "etcd",
    "file",
    "mapping",
    "nats",
    "postgres",
    "redis",
    "secrets_dir",
    "vault",
]
