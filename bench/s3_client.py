"""The S3 server's own speed with a plain client (the limit of the S3 benchmarks): boto3 (from
moto's folder in the test cache, which brings it) uploading a file as a multipart upload of
8 MiB parts, one part at a time on one connection (as a registry push sends them), and
downloading it again into a reused buffer. Prints {"put_s": ..., "get_s": ...}.

    s3_client.py ENDPOINT ACCESS SECRET BUCKET KEY FILE
"""

import json
import sys
import time

endpoint, access, secret, bucket, key, path = sys.argv[1:7]

import boto3  # noqa: E402  (found through PYTHONPATH, set by the harness)
from boto3.s3.transfer import TransferConfig  # noqa: E402
from botocore.config import Config  # noqa: E402

MiB = 1 << 20
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                  aws_secret_access_key=secret, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
transfer = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB,
                          max_concurrency=1, use_threads=False)
started = time.perf_counter()
s3.upload_file(path, bucket, key, Config=transfer)
put_s = time.perf_counter() - started
started = time.perf_counter()
body = s3.get_object(Bucket=bucket, Key=key)["Body"]
while body.read(MiB):
    pass
get_s = time.perf_counter() - started
print(json.dumps({"put_s": put_s, "get_s": get_s}))
