"""`hybrid local serve`: the embedded AWS (moto + toolkit.local.compat) as a standalone server.

Stdout, flushed line by line so a pipe or a parent process can read it at once:
    line 1          the endpoint URL (http://127.0.0.1:<port>)
    then            `export NAME=value` lines to point boto3, the CLI and the AWS CLI at it
    last            `# ready: ...` (a parent can stop reading there)
SIGINT or SIGTERM stops the server and returns 0.

`--enforce-iam`: before serving, an IAM user `hybrid-admin` with an allow-everything policy is
created and its keys are the ones printed; then IAM enforcement is switched on through moto's
`/moto-api/reset-auth` (moto then checks every request's signature and that the caller's
policies allow its action; it does not check resources or conditions, see
moto/core/authorization.py). With the admin keys, create the users and policies to test
(for example the pipeline policy of docs/ci.md) and run the toolkit with their keys.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import urllib.request
from dataclasses import dataclass
from types import FrameType
from typing import TextIO

from toolkit.errors import UserError
from toolkit.local.server import DUMMY_CREDENTIALS, EmbeddedAws

ADMIN_USER = "hybrid-admin"
ADMIN_POLICY = '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}'


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


def _check_port(port: int) -> None:
    """ThreadedMotoServer hangs (its thread dies) on a busy port: find out first."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise UserError(f"port {port} on 127.0.0.1 is in use: pick another with --port (or 0 for any)") from None


def enforce_iam(aws: EmbeddedAws) -> Credentials:
    """Create the admin user and its keys, then turn on moto's IAM enforcement; return the keys."""
    iam = aws.client("iam")
    iam.create_user(UserName=ADMIN_USER)
    iam.put_user_policy(UserName=ADMIN_USER, PolicyName="admin", PolicyDocument=ADMIN_POLICY)
    key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
    # From now on no request goes unauthenticated (moto's INITIAL_NO_AUTH_ACTION_COUNT = 0).
    # The body is the count itself; a form content type would hide it from moto (urllib's default).
    request = urllib.request.Request(f"{aws.endpoint_url}/moto-api/reset-auth", data=b"0", method="POST",
                                     headers={"Content-Type": "text/plain"})
    with urllib.request.urlopen(request, timeout=10):
        pass
    return Credentials(key["AccessKeyId"], key["SecretAccessKey"])


def environment(aws: EmbeddedAws, credentials: Credentials) -> dict[str, str]:
    env = {
        "AWS_ENDPOINT_URL": aws.endpoint_url,
        "AWS_DEFAULT_REGION": aws.region,
        "AWS_ACCESS_KEY_ID": credentials.access_key_id,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_access_key,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if credentials.session_token:
        env["AWS_SESSION_TOKEN"] = credentials.session_token
    return env


def serve(
    *, port: int = 0, region: str = "us-east-1", enforce: bool = False, out: TextIO | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Run the embedded AWS until SIGINT/SIGTERM (or `stop` is set); see the module docstring."""
    out = out or sys.stdout
    stop = stop or threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    _check_port(port)
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, on_signal)
    try:
        _serve(port, region, enforce, out, stop)
    finally:  # a caller in the same process (tests, `hybrid` embedded) gets its handlers back
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    sys.stderr.write("embedded AWS stopped\n")
    return 0


def _serve(port: int, region: str, enforce: bool, out: TextIO, stop: threading.Event) -> None:
    with EmbeddedAws(region, port=port) as aws:
        credentials = (enforce_iam(aws) if enforce else
                       Credentials(DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"], DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                                   DUMMY_CREDENTIALS["AWS_SESSION_TOKEN"]))
        lines = [aws.endpoint_url]
        if enforce:
            # stale temporary credentials would make every request fail moto's signature check
            lines.append("unset AWS_SESSION_TOKEN AWS_PROFILE")
        lines += [f"export {name}={value}" for name, value in environment(aws, credentials).items()]
        mode = f"IAM enforced, keys of IAM user {ADMIN_USER}" if enforce else "IAM not enforced"
        lines.append(f"# ready: embedded AWS in {region} ({mode}); Ctrl-C or SIGTERM stops it")
        for line in lines:
            out.write(line + "\n")
            out.flush()
        # Event.wait with a timeout: the main thread must wake up to run the signal handler.
        while not stop.wait(0.5):
            pass
