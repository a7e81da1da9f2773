"""Wrong S3 credentials against an S3 endpoint that checks them (moto_server with IAM authentication
turned on): one line naming what is wrong, exit 2, before any work."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.conftest import DEMO_DATA, run_cli
from tests.s3_server import MOTO, S3Server


@pytest.fixture(scope="module")
def authenticating_s3():
    """A moto server that authenticates every request after the three that create an IAM user, its
    policy (s3:*) and its access key; yields (server, access key id, secret key, bucket)."""
    import boto3

    server = S3Server()
    env = {**os.environ, **server.env, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    server.process = subprocess.Popen(
        [str(MOTO), "-H", "127.0.0.1", "-p", str(server.port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        import socket
        import time

        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", server.port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.05)
        iam = boto3.client("iam", endpoint_url=server.endpoint, region_name="us-east-1",
                           aws_access_key_id="x", aws_secret_access_key="x")  # fmt: skip
        iam.create_user(UserName="lab")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="lab", PolicyName="s3", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="lab")["AccessKey"]
        s3 = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )
        s3.create_bucket(Bucket="lab")
        yield server, key["AccessKeyId"], key["SecretAccessKey"], "lab"
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("access", "secret", "message"),
    [
        ("right", "wrong", "the secret key is wrong (check AWS_SECRET_ACCESS_KEY / AWS_PROFILE)"),
        ("AKIAUNKNOWNUNKNOWN00", "whatever", "unknown access key (check AWS_ACCESS_KEY_ID / AWS_PROFILE)"),
    ],
)
def test_wrong_credentials_exit_2_naming_the_variable(authenticating_s3, tmp_path, access, secret, message):
    server, key_id, key_secret, bucket = authenticating_s3
    env = {**os.environ, **server.env, "AWS_ACCESS_KEY_ID": key_id if access == "right" else access,
           "AWS_SECRET_ACCESS_KEY": secret}  # fmt: skip
    out = run_cli(
        "data", "push", str(DEMO_DATA / "gete" / "test"), f"s3://{bucket}/datasets/gete-test", env=env
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert message in out.stderr and out.stderr.strip().count("\n") == 0 and "Traceback" not in out.stderr
    good = {**env, "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": key_secret}
    pushed = run_cli(
        "data", "push", str(DEMO_DATA / "gete" / "test"), f"s3://{bucket}/datasets/gete-test", env=good
    )
    assert pushed.returncode == 0, pushed.stderr
