"""moto's server, answering one request at a time.

moto's backends keep no locks, and its own `moto_server` serves each request on a thread, so
two concurrent conditional writes can both pass their check before either writes: a lost
update that real DynamoDB and S3 never allow. Serialized, each request is atomic as in AWS,
and the tests of callrec's compare-and-swap retries test callrec, not the emulator.

moto also backs up every table a transaction names (a deep copy of the whole table) before
each TransactWriteItems, which makes a run of n transactions cost O(n²): a 1,000-call test
spent most of its 8 minutes copying. Here a transaction backs up only the items it names and
puts them back if it is cancelled, which is what the copy was for.

Usage: moto_serve.py HOST PORT
"""

import copy
import signal
import sys
import types

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


_transact_write_items = DynamoDBBackend.transact_write_items
# What moto's transaction code calls `copy.deepcopy` on: tables pass through uncopied.
dynamodb_models.copy = types.SimpleNamespace(
    deepcopy=lambda value, memo=None: value
    if isinstance(value, Table)
    else copy.deepcopy(value, memo)
)


def _transact_backing_up_items(self, transact_items):
    saved = []
    for entry in transact_items:
        if len(entry) != 1:
            continue
        _, op = next(iter(entry.items()))
        table = self.tables.get(op.get("TableName", ""))
        if table is None:
            continue
        attrs = op.get("Key") or op.get("Item")
        try:
            keys = {
                k: attrs[k]
                for k in (table.hash_key_attr, table.range_key_attr)
                if k is not None
            }
            hash_key, range_key = self.get_keys_value(table, keys)
            current = table.get_item(hash_key, range_key)
        except Exception:  # a malformed op: moto's own code answers it
            continue
        saved.append((table, hash_key, range_key, copy.deepcopy(current)))
    try:
        return _transact_write_items(self, transact_items)
    except Exception:
        for table, hash_key, range_key, item in reversed(saved):
            if item is None:
                table.delete_item(hash_key, range_key)
            elif range_key is not None:
                table.items[hash_key][range_key] = item
            else:
                table.items[hash_key] = item
        raise


DynamoDBBackend.transact_write_items = _transact_backing_up_items


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, app, threaded=False, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
