"""deploy/test.sh's check of what callrec stored, through the emulator's S3 API (boto3).

Usage: verify.py ENDPOINT KMS_KEY_ARN EXPECTED_JSON
EXPECTED_JSON: {"calls": {call_id: bucket, ...}, "staging": bucket, "staging_prefix": prefix,
                "staging_expiry_days": n, "transition": [days, class], "task_role": name}

Checks, and exits 1 naming what differs:
- every call's processed audio and its sidecar are in its line of business's bucket, encrypted
  with the stack's KMS key, and the sidecar names the call;
- no raw upload is left in staging;
- each bucket: versioning on, public access blocked, default encryption with the key, a policy
  that denies plain HTTP, the lifecycle rules the module writes;
- the task role's policy: no wildcard action, no table scan or item deletion, and objects
  deleted only in staging and under `unprocessed/` of the recording buckets.
"""

import json
import sys

import boto3


def main() -> int:
    endpoint, key_arn, expected = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    problems = []
    calls = expected["calls"]
    buckets = sorted(set(calls.values()) | {expected["staging"]})

    stored = {}
    for bucket in set(calls.values()):
        paginator = s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                stored.setdefault(bucket, []).append(obj["Key"])
    for call, bucket in sorted(calls.items()):
        audio = [
            k
            for k in stored.get(bucket, [])
            if k.rsplit("/", 1)[-1].startswith(call + ".") and not k.endswith(".json")
        ]
        if len(audio) != 1:
            problems.append(f"{call}: {len(audio)} audio objects in {bucket} (expected 1)")
            continue
        head = s3.head_object(Bucket=bucket, Key=audio[0])
        if head.get("ServerSideEncryption") != "aws:kms" or head.get("SSEKMSKeyId") != key_arn:
            problems.append(
                f"{call}: {bucket}/{audio[0]} encrypted {head.get('ServerSideEncryption')} "
                f"with {head.get('SSEKMSKeyId')}, not the stack's key"
            )
        sidecar = json.loads(
            s3.get_object(Bucket=bucket, Key=audio[0] + ".json")["Body"].read()
        )
        if sidecar.get("call_id") != call:
            problems.append(f"{call}: its sidecar names {sidecar.get('call_id')}")
    for other in set(calls.values()):
        for key in stored.get(other, []):
            call = key.rsplit("/", 1)[-1].split(".", 1)[0]
            if call in calls and calls[call] != other:
                problems.append(f"{call}: also in {other} ({key})")

    left = s3.list_objects_v2(
        Bucket=expected["staging"], Prefix=expected["staging_prefix"] + "/"
    ).get("KeyCount", 0)
    if left:
        problems.append(f"{left} raw uploads left in staging")

    for bucket in buckets:
        if s3.get_bucket_versioning(Bucket=bucket).get("Status") != "Enabled":
            problems.append(f"{bucket}: versioning is not enabled")
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        if not all(block.values()):
            problems.append(f"{bucket}: public access not fully blocked: {block}")
        rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ][0]["ApplyServerSideEncryptionByDefault"]
        if rule.get("SSEAlgorithm") != "aws:kms" or rule.get("KMSMasterKeyID") != key_arn:
            problems.append(f"{bucket}: default encryption {rule}")
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
        denies_http = any(
            st.get("Effect") == "Deny"
            and st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")
            in ("false", ["false"])
            for st in policy["Statement"]
        )
        if not denies_http:
            problems.append(f"{bucket}: the policy does not deny plain HTTP")
        rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        if bucket == expected["staging"]:
            expiry = [
                r
                for r in rules
                if r.get("Filter", {}).get("Prefix") == expected["staging_prefix"] + "/"
                and r.get("Expiration", {}).get("Days") == expected["staging_expiry_days"]
            ]
            if not expiry:
                problems.append(f"{bucket}: no expiry of raw uploads: {rules}")
        else:
            days, storage_class = expected["transition"]
            moves = [
                t
                for r in rules
                for t in r.get("Transitions", [])
                if t.get("Days") == days and t.get("StorageClass") == storage_class
            ]
            if not moves:
                problems.append(f"{bucket}: no transition to {storage_class}: {rules}")

    problems.extend(task_role_problems(expected["task_role"], expected["staging"]))

    for problem in problems:
        print("PROBLEM", problem)
    if not problems:
        total = sum(len(v) for v in stored.values())
        print(
            f"verified: {len(calls)} calls stored once each in their line of business's "
            f"bucket ({total} objects with sidecars), KMS, versioning, public access block, "
            f"TLS-only policy and lifecycle on {len(buckets)} buckets; the task role least-privileged"
        )
    return 1 if problems else 0


def task_role_problems(role: str, staging: str) -> list:
    """What the task role's inline policies allow beyond callrec's least privilege."""
    iam = boto3.client(
        "iam",
        endpoint_url=sys.argv[1],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    problems = []
    names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    if not names:
        return [f"{role}: no inline policy"]
    for name in names:
        document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        if isinstance(document, str):
            document = json.loads(document)
        for statement in document["Statement"]:
            if statement.get("Effect") != "Allow":
                continue
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            resources = statement["Resource"]
            resources = [resources] if isinstance(resources, str) else resources
            for action in actions:
                if "*" in action:
                    problems.append(f"{role}: a wildcard action {action}")
                if action in ("dynamodb:Scan", "dynamodb:DeleteItem", "dynamodb:DeleteTable"):
                    problems.append(f"{role}: allows {action}")
                if action == "s3:DeleteObject":
                    for resource in resources:
                        in_staging = resource == f"arn:aws:s3:::{staging}/*"
                        unprocessed = resource.endswith("/*unprocessed/*") and staging not in resource
                        if not (in_staging or unprocessed):
                            problems.append(f"{role}: deletes objects in {resource}")
    return problems


if __name__ == "__main__":
    sys.exit(main())
