"""The one-shot `s3-bucket` job of the compose stack: the bucket MLflow keeps its artifacts in, created once.

It runs before `mlflow` on every `docker compose up` and leaves an existing bucket as it is. It speaks S3
with the stack's keys, like the server will: a wrong key fails it, and with it the start of `mlflow`, with the
object store's own message instead of a server that cannot write its first artifact.
"""

import os
import sys

import boto3
from botocore.exceptions import ClientError

MISSING = {"404", "NoSuchBucket"}


def main() -> int:
    bucket = os.environ["S3_BUCKET"]
    store = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
    try:
        store.head_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in MISSING:
            print(f"s3-bucket: bucket {bucket!r} cannot be checked: {error}", file=sys.stderr)
            return 1
        store.create_bucket(Bucket=bucket)
        print(f"s3-bucket: created bucket {bucket!r}")
        return 0
    print(f"s3-bucket: bucket {bucket!r} exists")
    return 0


if __name__ == "__main__":
    sys.exit(main())
