"""Subcommands contributed by the service areas (services, call, publish, run).

Kept apart from `cli.py` so the command's core does not import the RPC stack.

Exit codes: 0 success; 1 the service answered an error (printed as JSON on
stderr); 2 bad usage or input; 3 the service or a backend could not be reached
(not registered, connection failed); 4 the deadline passed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from typing import Any

from microstd._backends import redact_text
from microstd.errors import MicrostdError

__all__ = ["add_commands"]

EXIT_ERROR_REPLY = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_DEADLINE = 4


def _setting(given: str | None, env: str) -> str | None:
    """A URL from its flag, else from the environment variable `env`, else None."""
    return given or os.environ.get(env) or None


# What a fresh `microstd` process would see without a URL: its own in-process
# backends, empty by construction. Said instead of answering from them.
_NO_REGISTRY = (
    "no registry given (--registry or $MICROSTD_REGISTRY). Without one this command"
    " would read the in-process registry (memory://default) of its own fresh process,"
    " which is always empty: services running in other processes register elsewhere."
    " Point it at the registry your services use, for example"
    " --registry redis://127.0.0.1:6379/0, or export MICROSTD_REGISTRY=nats://127.0.0.1:4222"
)
_NO_ROUTE = (
    "no registry (--registry or $MICROSTD_REGISTRY) and no transport (--transport or"
    " $MICROSTD_TRANSPORT) given. Without either this command would look the service up"
    " in the in-process registry (memory://default) of its own fresh process, which is"
    " always empty: services running in other processes register elsewhere. Point it at"
    " the registry your services use (--registry redis://127.0.0.1:6379/0, or export"
    " MICROSTD_REGISTRY=...), or call over NATS (--transport nats://127.0.0.1:4222)"
)
_NO_BROKER = (
    "no broker given (--broker or $MICROSTD_BROKER). Without one the message would go to"
    " the in-process broker (memory://default) of this command's own fresh process, where"
    " nobody subscribes. Point it at the broker your services use, for example"
    " --broker redis://127.0.0.1:6379/0, or export MICROSTD_BROKER=nats://127.0.0.1:4222"
)


def _fail(command: str, message: str, code: int) -> int:
    print(f"microstd {command}: {message}", file=sys.stderr)
    return code


def _parse_json(command: str, text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except ValueError as exc:
        _fail(command, f"the body is not valid JSON: {exc}", EXIT_USAGE)
        return False, None


def _plain(obj: Any) -> Any:
    # Replies may hold bytes (msgpack); print them readably instead of failing.
    if isinstance(obj, bytes):
        try:
            return obj.decode()
        except UnicodeDecodeError:
            return obj.hex()
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _errors(command: str, exc: BaseException) -> int:
    from microstd.errors import (
        ConnectionFailed,
        DeadlineExceeded,
        MicrostdError,
        NotFound,
        ServiceError,
        UnknownBackend,
    )

    if isinstance(exc, ServiceError):
        print(json.dumps(exc.to_dict()), file=sys.stderr)
        return EXIT_ERROR_REPLY
    if isinstance(exc, DeadlineExceeded):
        return _fail(command, str(exc), EXIT_DEADLINE)
    if isinstance(exc, (NotFound, ConnectionFailed)):
        return _fail(command, str(exc), EXIT_UNREACHABLE)
    if isinstance(exc, (UnknownBackend, ValueError, MicrostdError)):
        return _fail(command, str(exc), EXIT_USAGE)
    raise exc


def _cmd_services(args: argparse.Namespace) -> int:
    from microstd import registry
    from microstd._backends import redact

    url = _setting(args.registry, "MICROSTD_REGISTRY")
    if url is None:
        return _fail("services", _NO_REGISTRY, EXIT_USAGE)

    async def main() -> list[registry.ServiceRecord]:
        async with registry.open(url) as reg:
            return await reg.list_services()

    try:
        services = asyncio.run(main())
    except Exception as exc:
        return _errors("services", exc)
    if args.json:
        out = [
            {
                "name": s.name,
                "version": s.version,
                "endpoints": s.endpoints,
                "nodes": [
                    {"id": n.id, "address": n.address, "metadata": n.metadata} for n in s.nodes
                ],
            }
            for s in services
        ]
        print(json.dumps(out, indent=2))
        return 0
    if not services:
        print(f"no services registered in {redact(url)}")
        if url.startswith("memory://"):
            print(
                "(a memory:// registry lives in one process: this command's own is empty;"
                " give the URL of the registry your services use)",
                file=sys.stderr,
            )
        return 0
    for s in services:
        version = f" {s.version}" if s.version else ""
        print(f"{s.name}{version}  ({len(s.nodes)} node{'s' if len(s.nodes) != 1 else ''})")
        for n in s.nodes:
            print(f"  {n.id}  {n.address}")
        for e in s.endpoints:
            print(f"  - {e}")
    return 0


def _cmd_call(args: argparse.Namespace) -> int:

    args.registry = _setting(args.registry, "MICROSTD_REGISTRY")
    args.transport = _setting(args.transport, "MICROSTD_TRANSPORT")
    if args.registry is None and args.transport is None:
        return _fail("call", _NO_ROUTE, EXIT_USAGE)
    if args.stream and args.body == "-":
        body: Any = _stdin_requests()
    else:
        ok, body = _parse_json("call", args.body)
        if not ok:
            return EXIT_USAGE
    if args.timeout is None:
        args.timeout = None if args.stream else 10.0
    elif args.timeout < 0:
        return _fail("call", f"--timeout must be >= 0 seconds, got {args.timeout:g}", EXIT_USAGE)
    if args.timeout == 0:  # (None: a stream left to the server's maximum)
        # A deadline that has already passed: like any other expired deadline,
        # nothing more is sent (the server would only answer 504).
        from microstd.errors import DeadlineExceeded

        return _errors(
            "call", DeadlineExceeded(f"{args.service} {args.endpoint}: no reply within 0s")
        )

    if args.stream:
        return _call_stream(args, body)

    async def main() -> Any:
        async with _client(args) as client:
            return await client.call(
                args.service, args.endpoint, body, timeout=args.timeout, idempotent=args.idempotent
            )

    try:
        reply = asyncio.run(main())
    except Exception as exc:
        return _errors("call", exc)
    print(json.dumps(_plain(reply), indent=2))
    return 0


def _client(args: argparse.Namespace) -> Any:
    from microstd.rpc.client import Client

    # A NATS transport needs no registry: the registry URL, if any, is kept for
    # the record (the client looks nothing up).
    return Client(
        args.registry or "memory://",
        content_type=args.content_type,
        transport=args.transport,
    )


def _call_stream(args: argparse.Namespace, body: Any) -> int:
    """`call --stream`: one JSON line per reply, printed as it arrives."""

    async def main() -> None:
        async with _client(args) as client:
            replies = client.stream(args.service, args.endpoint, body, timeout=args.timeout)
            async for reply in replies:
                print(json.dumps(_plain(reply)), flush=True)

    try:
        asyncio.run(main())
    except Exception as exc:
        return _errors("call", exc)
    return 0


async def _stdin_requests() -> Any:
    """JSON requests from stdin, one per line, read as the stream sends them."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError as exc:
                raise ValueError(f"a request line on stdin is not valid JSON: {exc}") from None


def _cmd_publish(args: argparse.Namespace) -> int:
    ok, body = _parse_json("publish", args.body)
    if not ok:
        return EXIT_USAGE

    url = _setting(args.broker, "MICROSTD_BROKER")
    if url is None:
        return _fail("publish", _NO_BROKER, EXIT_USAGE)

    async def main() -> None:
        from microstd import broker

        async with broker.open(url) as b:
            await b.publish(args.topic, body, content_type=args.content_type)

    try:
        asyncio.run(main())
    except ModuleNotFoundError as exc:
        return _fail("publish", f"the broker area is not available: {exc}", EXIT_UNREACHABLE)
    except Exception as exc:
        return _errors("publish", exc)
    return 0


def _load_service(target: str) -> Any:
    from microstd.service import Service

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected module:service, got {target!r}")
    # Like `python -m`, let the current directory's modules be found.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, Service) and callable(obj):
        obj = obj()
    if not isinstance(obj, Service):
        raise ValueError(f"{target} is a {type(obj).__name__}, not a microstd.Service")
    return obj


def _cmd_run(args: argparse.Namespace) -> int:
    from microstd.observe.logs import configure_logging

    try:
        svc = _load_service(args.target)
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        return _fail("run", f"cannot load {args.target}: {exc}", EXIT_USAGE)
    # After loading: an application that set up logging on import keeps its own.
    configure_logging(args.log_level, args.log_format)
    if args.address:
        svc.address = args.address
    import logging

    log = logging.getLogger("microstd.run")
    log.info("running %s (pid %d)", args.target, os.getpid())
    # A service written for the embedded defaults joins the registry and broker the
    # command is pointed at; URLs written in the code win.
    try:
        svc._default_urls(
            registry=_setting(args.registry, "MICROSTD_REGISTRY"),
            broker=_setting(args.broker, "MICROSTD_BROKER"),
        )
    except MicrostdError as exc:
        return _fail("run", redact_text(str(exc)), EXIT_USAGE)
    try:
        svc.run()
    except Exception as exc:
        log.error("%s failed: %s", args.target, redact_text(f"{type(exc).__name__}: {exc}"))
        return _errors("run", exc)
    log.info("%s exited", args.target)
    return 0


def add_commands(sub: Any) -> None:  # argparse's _SubParsersAction is private
    """Add the service subcommands to the `microstd` parser."""
    reg_help = "registry URL (default: $MICROSTD_REGISTRY)"

    services = sub.add_parser(
        "services",
        help="list the registered services and their nodes",
        description="List the services in a registry, with their nodes and endpoints.",
    )
    services.add_argument("--registry", default=None, help=reg_help)
    services.add_argument("--json", action="store_true", help="print JSON")
    services.set_defaults(func=_cmd_services)

    call = sub.add_parser(
        "call",
        help="call a service's endpoint with a JSON body",
        description="Call SERVICE's ENDPOINT with the JSON body and print the JSON reply."
        " Exit codes: 1 error reply, 2 bad input, 3 unreachable, 4 deadline exceeded.",
    )
    call.add_argument("service", help="service name, e.g. greeter")
    call.add_argument("endpoint", help="endpoint, e.g. Greeter.Hello")
    call.add_argument("body", nargs="?", default="{}", help="JSON request body (default {})")
    call.add_argument("--registry", default=None, help=reg_help)
    call.add_argument(
        "--transport",
        default=None,
        help="call over NATS (nats://host:port) instead of HTTP; no registry needed"
        " (default: $MICROSTD_TRANSPORT)",
    )
    call.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds for the whole call (default 10; for --stream, the server's maximum)",
    )
    call.add_argument(
        "--stream",
        action="store_true",
        help="a streaming call: print each reply as a JSON line as it arrives; with BODY '-'"
        " the requests are JSON lines read from stdin (client and bidi streams)",
    )
    call.add_argument(
        "--content-type", default="application/json", help="wire codec (default application/json)"
    )
    call.add_argument("--idempotent", action="store_true", help="allow retries after sending")
    call.set_defaults(func=_cmd_call)

    publish = sub.add_parser(
        "publish",
        help="publish a JSON message on a topic",
        description="Publish the JSON body on TOPIC through a broker.",
    )
    publish.add_argument("topic", help="topic, e.g. orders.created")
    publish.add_argument("body", help="JSON message body")
    publish.add_argument("--broker", default=None, help="broker URL (default: $MICROSTD_BROKER)")
    publish.add_argument("--content-type", default=None, help="codec (default: the broker's)")
    publish.set_defaults(func=_cmd_publish)

    run = sub.add_parser(
        "run",
        help="run a service: module:service",
        description="Import MODULE and run its microstd.Service attribute (or factory) until"
        " SIGTERM / SIGINT.",
    )
    run.add_argument("target", help="module:attribute, e.g. examples.greeter:svc")
    run.add_argument(
        "--address", default=None, help="host:port to listen on (default: the service's)"
    )
    run.add_argument(
        "--registry",
        default=None,
        metavar="URL",
        help="registry URL for a service that names none in its code (default: $MICROSTD_REGISTRY,"
        " else memory://default)",
    )
    run.add_argument(
        "--broker",
        default=None,
        metavar="URL",
        help="broker URL for a service that names none in its code (default: $MICROSTD_BROKER,"
        " else memory://default)",
    )
    run.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="log level (default INFO); ignored when the application configured logging",
    )
    run.add_argument(
        "--log-format",
        default="text",
        choices=("text", "json"),
        help="log lines as text (default) or one JSON object per line",
    )
    run.set_defaults(func=_cmd_run)
