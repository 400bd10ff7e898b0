"""`hybrid local serve`: URL first, the environment to export, IAM enforcement, clean stop on signals."""

from __future__ import annotations

import signal
import socket

import boto3
import botocore.exceptions
import pytest

from tests.toolkit.local.serving import serving, stop
from toolkit.cli import run


def _client(env: dict[str, str], service: str = "sagemaker", **override: str) -> object:
    values = {**env, **override}
    return boto3.client(
        service, endpoint_url=values["AWS_ENDPOINT_URL"], region_name=values["AWS_DEFAULT_REGION"],
        aws_access_key_id=values["AWS_ACCESS_KEY_ID"], aws_secret_access_key=values["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=values.get("AWS_SESSION_TOKEN"),
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_prints_the_url_first_then_the_env_serves_the_patched_aws_and_stops_on_a_signal(signum):
    with serving("--region", "us-east-2") as served:
        assert served.url.startswith("http://127.0.0.1:")
        assert served.env["AWS_ENDPOINT_URL"] == served.url and served.env["AWS_DEFAULT_REGION"] == "us-east-2"
        sm = _client(served.env)
        # the compatibility layer is on: plain moto would reject these instance types
        sm.create_model(ModelName="m", ExecutionRoleArn="arn:aws:iam::123456789012:role/r",  # type: ignore[attr-defined]
                        PrimaryContainer={"Image": "img"})
        sm.create_endpoint_config(EndpointConfigName="c", ProductionVariants=[  # type: ignore[attr-defined]
            {"VariantName": v, "ModelName": "m", "InstanceType": t, "InitialInstanceCount": 1}
            for v, t in (("neuron", "ml.inf2.xlarge"), ("gpu", "ml.g5.xlarge"))])
        code, err = stop(served, signum)
    assert code == 0 and "Traceback" not in err and "stopped" in err
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        _client(served.env, region_name="us-east-2").list_models()  # type: ignore[attr-defined]


def test_enforce_iam_refuses_unknown_keys_and_admits_the_printed_admin_keys():
    with serving("--enforce-iam") as served:
        assert served.lines[1] == "unset AWS_SESSION_TOKEN AWS_PROFILE"
        with pytest.raises(botocore.exceptions.ClientError):
            _client(served.env, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing").list_models()  # type: ignore[attr-defined]
        assert _client(served.env).list_models()["Models"] == []  # type: ignore[attr-defined]
        # a user without sagemaker:ListModels is refused: moto checks actions against policies
        iam = _client(served.env, "iam")
        iam.create_user(UserName="reader")  # type: ignore[attr-defined]
        iam.put_user_policy(UserName="reader", PolicyName="p", PolicyDocument=(  # type: ignore[attr-defined]
            '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sagemaker:ListEndpoints","Resource":"*"}]}'))
        key = iam.create_access_key(UserName="reader")["AccessKey"]  # type: ignore[attr-defined]
        reader = _client(served.env, AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"])
        assert reader.list_endpoints()["Endpoints"] == []  # type: ignore[attr-defined]
        with pytest.raises(botocore.exceptions.ClientError) as denied:
            reader.list_models()  # type: ignore[attr-defined]
        # as AWS answers a JSON-protocol service: a parsed AccessDeniedException, one line
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
        assert "\n" not in str(denied.value) and "sagemaker:ListModels" in str(denied.value)


def test_a_busy_port_is_a_one_line_error_exit_2(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = run(["local", "serve", "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"port {port}" in err
