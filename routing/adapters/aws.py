"""boto3 clients for the routing adapters: the embedded AWS (moto) or a real account, one flag apart.

`endpoint_url` points every client at the embedded AWS (moto's server); without it boto3 uses
real AWS (and honours AWS_ENDPOINT_URL itself). Retries use botocore's adaptive mode: it
backs off on throttling client-side, which matters for a controller ticking every minute
next to autoscaling and dashboards that use the same CloudWatch and SageMaker quotas.
"""

from __future__ import annotations

import os
from typing import Any

from routing.env import ENDPOINT_URL_ENV

DEFAULT_MAX_ATTEMPTS = 5


def session(region: str | None = None, profile: str | None = None) -> Any:
    import boto3

    return boto3.Session(region_name=region, profile_name=profile)


def client(
    service: str,
    *,
    region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    boto_session: Any = None,
) -> Any:
    """A boto3 client with adaptive retries; endpoint_url (or env AWS_ENDPOINT_URL) wins when set."""
    from botocore.config import Config

    sess = boto_session if boto_session is not None else session(region, profile)
    config = Config(retries={"max_attempts": max_attempts, "mode": "adaptive"}, connect_timeout=10, read_timeout=30)
    url = endpoint_url or os.environ.get(ENDPOINT_URL_ENV) or None
    if url is not None and "://" not in url:
        from routing.core.errors import UserError

        raise UserError(f"--endpoint-url / {ENDPOINT_URL_ENV} {url!r} has no scheme: write it as http://{url} "
                        f"(or https://)")
    return sess.client(service, region_name=region or sess.region_name, endpoint_url=url, config=config)


def check_account(sts: Any, expected: str | None) -> None:
    """Refuse credentials of another account than the config's `account` (when set): exit 2, nothing changed.

    The one STS check: the controller (AwsClients.for_config) and `hybrid deploy` etc. (pipeline_cmds) call it.
    """
    if not expected:
        return
    from botocore.exceptions import BotoCoreError, ClientError

    from toolkit.errors import AwsError, UserError

    try:
        account = sts.get_caller_identity()["Account"]
    except (ClientError, BotoCoreError) as error:
        raise AwsError(f"GetCallerIdentity: {error}") from None
    if account != expected:
        raise UserError(
            f"credentials are for account {account}, but the config is for account {expected}: "
            f"use --profile for the right account"
        )


class AwsClients:
    """The clients one controller uses, built once (SageMaker, CloudWatch, STS)."""

    @classmethod
    def for_config(cls, config: Any, *, profile: str | None = None, endpoint_url: str | None = None,
                   region: str | None = None) -> AwsClients:
        """The clients for `config`'s endpoint: its region (a different --region is refused, exit 2),
        and only with credentials of its `account` when one is set (STS, checked once here)."""
        from toolkit.errors import UserError

        if region is not None and region != config.region:
            raise UserError(
                f"--region {region} differs from region {config.region} in the config: this config is for "
                f"{config.region}"
            )
        clients = cls(region=config.region, profile=profile, endpoint_url=endpoint_url)
        check_account(clients.sts, config.account)
        return clients

    def __init__(
        self,
        region: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self.region = region
        self.profile = profile
        self.endpoint_url = endpoint_url
        self._session = session(region, profile)
        if (endpoint_url or os.environ.get(ENDPOINT_URL_ENV)) and self._session.get_credentials() is None:
            # A custom endpoint without any credentials is the embedded AWS: it accepts any key,
            # and a new user should not need real credentials to try it. Real AWS never gets here
            # without credentials of its own (they are found first).
            import boto3

            self._session = boto3.Session(aws_access_key_id="embedded", aws_secret_access_key="embedded",
                                          region_name=region)
        self._clients: dict[str, Any] = {}

    def get(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = client(
                service, region=self.region, endpoint_url=self.endpoint_url, boto_session=self._session
            )
        return self._clients[service]

    @property
    def sagemaker(self) -> Any:
        return self.get("sagemaker")

    @property
    def cloudwatch(self) -> Any:
        return self.get("cloudwatch")

    @property
    def sts(self) -> Any:
        return self.get("sts")
