"""Every IAM statement the stacks create: no wildcard action, scoped wherever the service allows.

Resource "*" is accepted only for the actions in UNSCOPABLE, each with the reason AWS gives no
resource-level permission for it. Everything else names its resources (account and region
fixed, no bare `type/*`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.security.conftest import CONTROLLER_MODULE, Synth

# action -> why it cannot be scoped (Service Authorization Reference: no resource types listed).
UNSCOPABLE: dict[str, str] = {
    "ecr:GetAuthorizationToken": "returns a registry-wide login token; IAM defines no resource for it",
    "cloudwatch:PutMetricData": "CloudWatch has no resource-level permissions for it; "
                                "scoped instead by a cloudwatch:namespace condition (checked below)",
    "cloudwatch:GetMetricData": "no resource-level permissions in CloudWatch for metric reads",
    "cloudwatch:GetMetricStatistics": "no resource-level permissions in CloudWatch for metric reads",
    "cloudwatch:ListMetrics": "no resource-level permissions in CloudWatch",
    "sts:GetCallerIdentity": "needs no permission and takes no resource",
    "xray:PutTraceSegments": "X-Ray has no resource-level permissions for trace writes",
    "xray:PutTelemetryRecords": "X-Ray has no resource-level permissions for telemetry writes",
    "ec2:DescribeDhcpOptions": "EC2 Describe* actions support no resource-level permissions",
    "ec2:DescribeNetworkInterfaces": "EC2 Describe* actions support no resource-level permissions",
    "ec2:DescribeSecurityGroups": "EC2 Describe* actions support no resource-level permissions",
    "ec2:DescribeSubnets": "EC2 Describe* actions support no resource-level permissions",
    "ec2:DescribeVpcs": "EC2 Describe* actions support no resource-level permissions",
    "application-autoscaling:DescribeScalableTargets": "Application Auto Scaling lists no resource type for it",
}

# `type/*` (in a fixed account and region) is the narrowest ARN for these: the names are generated
# (by CloudFormation, `hybrid deploy` or the service) and unknown at synth.
GENERATED: dict[str, str] = {
    "sagemaker:DescribeEndpointConfig": "endpoint-config",  # read-only; config names are generated
    "sagemaker:DescribeModel": "model",  # read-only; model names are generated
    "application-autoscaling:RegisterScalableTarget": "scalable-target",  # target ids are generated
}

# `type/*` is accepted only where it cannot be narrower and something else bounds it:
# - an action that CREATES that resource type (the new id does not exist yet) when the same statement
#   also names specific resources the request must match (e.g. the subnets for a new ENI);
# - or a statement whose condition pins the resources with one of SCOPING_KEYS.
CREATED: dict[str, str] = {"ec2:CreateNetworkInterface": "network-interface"}
SCOPING_KEYS = ("ec2:Subnet", "ec2:Vpc")


def _render(value: Any) -> str:
    """A resource as text; CloudFormation intrinsics become <placeholders> (never wildcards)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(_render(p) for p in parts)
    if isinstance(value, dict) and "Ref" in value:
        # Pseudo parameters (AWS::AccountId) without their colons, so an ARN still splits into its fields.
        return f"<{value['Ref'].replace('::', '.')}>"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return f"<{'.'.join(value['Fn::GetAtt'])}>"
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
        return re.sub(r"\$\{([^}]+)\}", lambda m: f"<{m.group(1).replace('::', '.')}>", text)
    return json.dumps(value)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(stack: Synth) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(resource id, document kind, statement) for every IAM statement in the template."""
    for rid, resource in stack.json()["Resources"].items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        docs = []
        if kind == "AWS::IAM::Role":
            docs.append(("trust", props.get("AssumeRolePolicyDocument", {})))
            docs += [("inline", p["PolicyDocument"]) for p in props.get("Policies", [])]
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            docs.append(("policy", props["PolicyDocument"]))
        elif kind in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
            docs.append(("resource", props["PolicyDocument"]))
        elif kind == "AWS::Lambda::Permission":
            yield rid, "lambda-permission", {"Action": props["Action"], "Principal": props["Principal"],
                                             "SourceArn": props.get("SourceArn")}
        for doc_kind, doc in docs:
            for statement in _list(doc.get("Statement", [])):
                yield rid, doc_kind, statement


def _scoped(resource: str) -> bool:
    if resource == "*":
        return False
    if not resource.startswith("arn:"):
        return "*" not in resource
    parts = resource.split(":", 5)
    if len(parts) < 6 or "*" in parts[3] or "*" in parts[4]:
        return False  # any region or any account
    rest = parts[5]
    return not re.fullmatch(r"[\w-]+[/:]\*", rest) and rest != "*"  # not every resource of a type


def _bounded(action: str, resource: str, st: dict[str, Any], resources: list[str]) -> bool:
    """A `type/*` resource in a fixed account and region that CREATED or SCOPING_KEYS make acceptable."""
    parts = resource.split(":", 5)
    if not resource.startswith("arn:") or len(parts) < 6 or "*" in parts[3] or "*" in parts[4]:
        return False
    kind = re.fullmatch(r"([\w-]+)/\*", parts[5])
    if not kind:
        return False
    if GENERATED.get(action) == kind.group(1):
        return True
    condition = st.get("Condition") or {}
    if any(key in values for values in condition.values() for key in SCOPING_KEYS):
        return True
    named = [r for r in resources if r != resource and _scoped(r)]
    return CREATED.get(action) == kind.group(1) and bool(named)


def _check(stack: Synth) -> list[str]:
    problems: list[str] = []
    for rid, kind, st in statements(stack):
        if st.get("Effect") == "Deny":
            continue  # a Deny only takes away (e.g. the SQS policy denying sqs:* without TLS)
        if "NotAction" in st or "NotResource" in st:
            problems.append(f"{rid}: NotAction/NotResource grants by exclusion")
        actions = [str(a) for a in _list(st.get("Action", []))]
        for action in actions:
            if "*" in action:
                problems.append(f"{rid}: wildcard action {action}")
        if kind == "trust" or kind == "lambda-permission":
            principal = json.dumps(st.get("Principal"))
            if '"*"' in principal or principal == '"*"':
                problems.append(f"{rid}: anyone may assume or invoke")
            if kind == "lambda-permission" and not st.get("SourceArn"):
                problems.append(f"{rid}: lambda permission without SourceArn")
            continue
        resources = [_render(r) for r in _list(st.get("Resource", []))]
        for resource in resources:
            if _scoped(resource):
                continue
            loose = [a for a in actions if a not in UNSCOPABLE and not _bounded(a, resource, st, resources)]
            if loose:
                problems.append(f"{rid}/{st.get('Sid', '?')}: {', '.join(loose)} on {resource}")
        if "cloudwatch:PutMetricData" in actions and "cloudwatch:namespace" not in json.dumps(st.get("Condition")):
            problems.append(f"{rid}: PutMetricData without a cloudwatch:namespace condition")
    return problems


NO_CONTROLLER = pytest.mark.skipif(not CONTROLLER_MODULE,
                                   reason="cdk/controller.py does not exist yet: no controller stack to check")
STACKS = [pytest.param("endpoint", id="endpoint"), pytest.param("endpoint+vpc", id="endpoint+vpc"),
          pytest.param("endpoint+controller", id="endpoint+controller", marks=NO_CONTROLLER)]
SCOPE_CASES = [
    pytest.param("endpoint", id="endpoint"),
    pytest.param("endpoint+vpc", id="endpoint+vpc"),
    pytest.param("endpoint+controller", id="endpoint+controller", marks=NO_CONTROLLER),
]


@pytest.mark.parametrize("name", SCOPE_CASES)
def test_every_iam_statement_has_no_wildcard_action_and_is_scoped_where_aws_allows(stacks, name):
    stack = stacks[name]
    assert list(statements(stack)), "no IAM statements found: the walker is broken"
    assert _check(stack) == []


@pytest.mark.parametrize("name", STACKS)
def test_no_aws_managed_policies_are_attached(stacks, name):
    for rid, resource in stacks[name].json()["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            assert not resource["Properties"].get("ManagedPolicyArns"), f"{rid} attaches managed policies"


def test_the_checker_catches_what_it_must():
    """The rules above fail on the mistakes they exist for (so a green run means something)."""

    class Fake:
        def __init__(self, statement: dict[str, Any]) -> None:
            self._doc = {"Resources": {"P": {"Type": "AWS::IAM::Policy", "Properties": {
                "PolicyDocument": {"Statement": [statement]}}}}}

        def json(self) -> dict[str, Any]:
            return self._doc

    bad = [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/k"},
        {"Effect": "Allow", "Action": "sagemaker:UpdateEndpointWeightsAndCapacities", "Resource": "*"},
        {"Effect": "Allow", "Action": "sagemaker:DescribeEndpoint", "Resource": "arn:aws:sagemaker:*:1:endpoint/x"},
        {"Effect": "Allow", "Action": "sagemaker:DescribeEndpoint",
         "Resource": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/*"},
        {"Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*"},
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"},
        # every endpoint of the account, with the account as a pseudo parameter (renders with colons)
        {"Effect": "Allow", "Action": "sagemaker:DescribeEndpoint", "Resource": {"Fn::Join": ["", [
            "arn:aws:sagemaker:us-east-1:", {"Ref": "AWS::AccountId"}, ":endpoint/*"]]}},
        {"Effect": "Allow", "Action": "sagemaker:UpdateEndpointWeightsAndCapacities",
         "Resource": {"Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/*"}},
    ]
    bad.append({"Effect": "Allow", "Action": "sqs:*", "Resource": "arn:aws:sqs:us-east-1:1:q"})
    eni = "arn:aws:ec2:us-east-1:123456789012:network-interface/*"
    subnet = "arn:aws:ec2:us-east-1:123456789012:subnet/subnet-0123abcd"
    bad += [
        {"Effect": "Allow", "Action": "ec2:DeleteNetworkInterface", "Resource": eni},  # no ec2:Subnet condition
        {"Effect": "Allow", "Action": "ec2:CreateNetworkInterface", "Resource": eni},  # no subnet named
        {"Effect": "Allow", "Action": "ec2:DeleteNetworkInterface", "Resource": "arn:aws:ec2:*:1:network-interface/*",
         "Condition": {"ArnEquals": {"ec2:Subnet": subnet}}},  # any region
    ]
    for statement in bad:
        assert _check(Fake(statement)), statement  # type: ignore[arg-type]
    good = {"Effect": "Allow", "Action": "sagemaker:DescribeEndpoint",
            "Resource": {"Fn::Join": ["", ["arn:aws:sagemaker:us-east-1:", {"Ref": "AWS::AccountId"},
                                           ":endpoint/bert-classifier"]]}}
    assert _check(Fake(good)) == []  # type: ignore[arg-type]
    for ok in (
        {"Effect": "Allow", "Action": "ec2:CreateNetworkInterface", "Resource": [subnet, eni]},
        {"Effect": "Allow", "Action": "ec2:DeleteNetworkInterface", "Resource": eni,
         "Condition": {"ArnEquals": {"ec2:Subnet": [subnet]}}},
    ):
        assert _check(Fake(ok)) == [], ok  # type: ignore[arg-type]
