"""botocore's data loader, holding of `endpoints.json` only the services a client uses.

Every botocore session resolves endpoints with `endpoints.json`: 1.2 MB of JSON naming every
AWS service in every partition. Parsed whole (into OrderedDicts, as botocore does) it is ~7 MB
of Python objects kept for the life of the process (an S3 client cost 14.4 MB of RSS with it,
7.3 MB without), while an S3 client only ever looks up the `s3` entries. This loader reads
the same file member by member and keeps in each partition's `services` only the services
named: the rest is parsed and dropped one service at a time, so it is never held. The path is
botocore's own, so `is_builtin_path` (which decides between the endpoint rulesets and the
legacy resolver) answers as before, and the resolver gives the kept services exactly the
endpoints it gave them with the whole file.
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Collection
from typing import Any

from aiobotocore.session import AioSession
from botocore.loaders import JSONFileLoader, create_loader

ENDPOINTS = "endpoints"  # the data name botocore's endpoint resolver loads

_DECODER = json.JSONDecoder(object_pairs_hook=OrderedDict)  # as botocore's JSONFileLoader
_SPACE = re.compile(r"[ \t\n\r]*")

Decode = Callable[[str, int], tuple[Any, int]]


def use_endpoints_of(session: AioSession, services: Collection[str]) -> None:
    """Give `session` a data loader whose endpoints hold only `services`. Call it before the
    session's first client: the endpoint resolver loads the file once, at that client."""
    loader = create_loader(session.get_config_variable("data_path"))  # AWS_DATA_PATH honoured
    loader.file_loader = EndpointsSubsetFileLoader(services)
    session.register_component("data_loader", loader)


class EndpointsSubsetFileLoader(JSONFileLoader):
    """`JSONFileLoader`, except that `endpoints.json` keeps only the named services."""

    def __init__(self, services: Collection[str]) -> None:
        super().__init__()
        self.services = frozenset(services)

    def load_file(self, file_path: str) -> Any:
        path = file_path + ".json"
        if os.path.basename(file_path) != ENDPOINTS or not os.path.isfile(path):
            return super().load_file(file_path)  # any other file, or a gzipped endpoints
        with open(path, "rb") as file:
            text = file.read().decode("utf-8")
        return load_endpoints(text, self.services)


def load_endpoints(text: str, services: Collection[str]) -> OrderedDict[str, Any]:
    """`endpoints.json` as `json.loads` reads it, minus every service not in `services`."""
    wanted = frozenset(services)

    def service(name: str) -> Decode | None:
        return _value if name in wanted else None

    def partition_member(name: str) -> Decode | None:
        if name == "services":
            return lambda text, index: _object(text, index, service)
        return _value

    def top_member(name: str) -> Decode | None:
        if name == "partitions":
            return lambda text, index: _array(
                text, index, lambda text, index: _object(text, index, partition_member)
            )
        return _value

    data, end = _object(text, _skip_space(text, 0), top_member)
    if _skip_space(text, end) != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return data


def _value(text: str, index: int) -> tuple[Any, int]:
    value, end = _DECODER.raw_decode(text, index)
    return value, end


def _skip_space(text: str, index: int) -> int:
    match = _SPACE.match(text, index)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _expect(text: str, index: int, char: str) -> int:
    if text[index : index + 1] != char:
        raise json.JSONDecodeError(f"Expecting {char!r}", text, index)
    return _skip_space(text, index + 1)


def _object(
    text: str, index: int, member: Callable[[str], Decode | None]
) -> tuple[OrderedDict[str, Any], int]:
    """The object at `index`; `member(name)` decodes a member's value, or None to drop it."""
    result: OrderedDict[str, Any] = OrderedDict()
    index = _expect(text, index, "{")
    if text[index : index + 1] == "}":
        return result, index + 1
    while True:
        if text[index : index + 1] != '"':
            raise json.JSONDecodeError("Expecting property name", text, index)
        name, index = _DECODER.raw_decode(text, index)
        index = _expect(text, _skip_space(text, index), ":")
        decode = member(name)
        value, index = (decode or _value)(text, index)
        if decode is not None:
            result[name] = value
        index = _skip_space(text, index)
        if text[index : index + 1] == "}":
            return result, index + 1
        index = _expect(text, index, ",")


def _array(text: str, index: int, item: Decode) -> tuple[list[Any], int]:
    result: list[Any] = []
    index = _expect(text, index, "[")
    if text[index : index + 1] == "]":
        return result, index + 1
    while True:
        value, index = item(text, index)
        result.append(value)
        index = _skip_space(text, index)
        if text[index : index + 1] == "]":
            return result, index + 1
        index = _expect(text, index, ",")
