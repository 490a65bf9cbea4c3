"""moto's server, answering one request at a time.

moto's backends keep no locks, and its own `moto_server` serves each request on a thread, so
two concurrent conditional writes can both pass their check before either writes: a lost
update that real DynamoDB and S3 never allow. Serialized, each request is atomic as in AWS,
and the tests of callrec's compare-and-swap retries test callrec, not the emulator.

moto also backs up every table a transaction names (a deep copy of the whole table) before
each TransactWriteItems, which makes a run of n transactions cost O(n²): a 1,000-call test
spent most of its 8 minutes copying. Here a transaction backs up only the items it names and
puts them back if it is cancelled, which is what the copy was for.

Application Auto Scaling's tag calls, which moto lacks, are answered as "no tags" (for
Terraform's AWS provider in deploy/test.sh), and bucket policies' `Bool` conditions are
evaluated with every request counted as TLS, and delete markers can be deleted (see below).

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


# Application Auto Scaling's tags are not in moto: the AWS provider reads them after creating a
# scalable target (deploy/test.sh) and waits forever for an answer. Answered as "no tags"; tags
# given are accepted and not kept (callrec's module sets none there).
try:
    from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse

    if not hasattr(ApplicationAutoScalingResponse, "list_tags_for_resource"):
        ApplicationAutoScalingResponse.list_tags_for_resource = lambda self: '{"Tags": {}}'
        ApplicationAutoScalingResponse.tag_resource = lambda self: "{}"
        ApplicationAutoScalingResponse.untag_resource = lambda self: "{}"
except ImportError:  # moto without that service: nothing to answer
    pass


# Bucket policies: moto evaluates them as trust policies — a statement whose condition does not
# hold denies, whatever its effect, and only `StringEquals` is understood — so the TLS-only policy
# every callrec bucket has (Deny when aws:SecureTransport is false; deploy/terraform/s3.tf)
# denies every request. Here a bucket policy is evaluated as S3 does: a statement applies when
# its action, resource and conditions (`Bool`, `StringEquals`) hold; a Deny that applies wins.
# A request counts as TLS: callrec reaches S3 over HTTPS in production, and only this loopback
# emulator is plain HTTP.
REQUEST_CONTEXT = {"aws:securetransport": "true"}


def _conditions_hold(conditions):
    for operator, pairs in conditions.items():
        if operator not in ("Bool", "StringEquals"):
            return False
        for key, expected in pairs.items():
            expected = expected if isinstance(expected, list) else [expected]
            actual = REQUEST_CONTEXT.get(key.lower())
            if actual is None or actual.lower() not in [str(e).lower() for e in expected]:
                return False
    return True


try:
    import json

    from moto.iam.access_control import IAMPolicyStatement, PermissionResult
    from moto.s3.models import FakeBucket

    def _bucket_permission(self, action, resource):
        if self.policy is None:
            return PermissionResult.NEUTRAL
        statements = json.loads(self.policy.decode())["Statement"]
        if not isinstance(statements, list):
            statements = [statements]
        result = PermissionResult.NEUTRAL
        for statement in statements:
            checked = IAMPolicyStatement(statement)
            if "NotAction" in statement:
                concerned = not checked._check_element_matches("NotAction", action)
            else:
                concerned = checked._check_element_matches("Action", action)
            if not concerned:
                continue
            if "Resource" in statement and not checked._check_element_matches(
                "Resource", resource
            ):
                continue
            if not _conditions_hold(statement.get("Condition", {})):
                continue
            if statement.get("Effect") == "Deny":
                return PermissionResult.DENIED
            result = PermissionResult.PERMITTED
        return result

    FakeBucket.get_permission = _bucket_permission
except ImportError:  # another moto layout: its own evaluation stands
    pass


# A versioned bucket's last version being a delete marker (callrec removes staged uploads) made
# moto fail to delete it (`FakeDeleteMarker` has no `dispose`): Terraform's destroy of such a
# bucket retried forever. A delete marker holds no data: nothing to dispose of.
try:
    from moto.s3.models import FakeDeleteMarker

    if not hasattr(FakeDeleteMarker, "dispose"):
        FakeDeleteMarker.dispose = lambda self, garbage=False: None
except ImportError:
    pass


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, app, threaded=False, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
