"""botocore's data loader, holding of `endpoints.json` only the services a client uses.

Every botocore session resolves endpoints with `endpoints.json`: 1.2 MB of JSON naming every
AWS service in every partition. Parsed whole (into OrderedDicts, as botocore does) it is ~7 MB
of Python objects kept for the life of the process, while an S3 client only ever looks up the
`s3` entries. This loader reads the same file and keeps in each partition's `services` only
the services named (the hub's RSS with an S3 store: ~4.5 MB lower). The path is botocore's
own, so `is_builtin_path` (which decides between the endpoint rulesets and the legacy
resolver) answers as before, and the resolver gives the kept services exactly the endpoints
it gave them with the whole file.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Collection
from typing import Any

from aiobotocore.session import AioSession
from botocore.loaders import JSONFileLoader, create_loader

ENDPOINTS = "endpoints"  # the data name botocore's endpoint resolver loads


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
    """`endpoints.json` as botocore reads it, minus every service not in `services`."""
    data: OrderedDict[str, Any] = json.loads(text, object_pairs_hook=OrderedDict)
    wanted = frozenset(services)
    for partition in data.get("partitions", []):
        listed = partition.get("services") if isinstance(partition, dict) else None
        if not isinstance(listed, dict):
            raise json.JSONDecodeError("Expecting a partition with an object of services", text, 0)
        partition["services"] = OrderedDict(
            (name, value) for name, value in listed.items() if name in wanted
        )
    return data
