"""Optional settings: KMS with a g5 variant, VPC, data capture, a model package, an explicit image."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdk.endpoint import has_instance_storage
from tests.cdk.conftest import Synth, cfn_lint, nag_findings, synth
from tests.conftest import EXAMPLE_CONFIG

pytestmark = pytest.mark.slow

KMS = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PACKAGE = "arn:aws:sagemaker:us-east-1:444455556666:model-package/bert-gpu/3"
IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/my-neuron-serving:1.4"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["kms_key_arn"] = KMS
    data["vpc"] = {
        "subnet_ids": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
        "security_group_ids": ["sg-0a1b2c3d4e5f60718"],
    }
    data["data_capture"] = {"enabled": True, "s3_uri": "s3://capture-bucket/bert/", "sampling_percent": 20}
    data["variants"]["gpu"]["model"] = {"model_package_arn": PACKAGE}
    data["variants"]["neuron"]["model"]["image"] = IMAGE
    path: Path = tmp_path_factory.mktemp("options") / "hybrid.yaml"
    path.write_text(yaml.safe_dump(data))
    return synth(path)


def statements(stack: Synth) -> list[dict[str, Any]]:
    return [
        s for p in stack.resources("AWS::IAM::Policy").values() for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_no_kms_key_on_the_endpoint_config_when_a_g5_variant_exists(stack: Synth) -> None:
    config = stack.only("AWS::SageMaker::EndpointConfig")["Properties"]
    assert "KmsKeyId" not in config
    # The key still encrypts captured data in S3, which the NVMe restriction does not touch.
    assert config["DataCaptureConfig"]["KmsKeyId"] == KMS


def test_nvme_families_are_the_ones_without_an_ebs_volume() -> None:
    assert has_instance_storage("ml.g5.xlarge") and has_instance_storage("ml.g6.2xlarge")
    assert not has_instance_storage("ml.inf2.xlarge") and not has_instance_storage("ml.p3.2xlarge")


def test_data_capture_samples_inputs_and_outputs_to_the_configured_prefix(stack: Synth) -> None:
    capture = stack.only("AWS::SageMaker::EndpointConfig")["Properties"]["DataCaptureConfig"]
    assert capture["EnableCapture"] is True
    assert capture["DestinationS3Uri"] == "s3://capture-bucket/bert/"
    assert capture["InitialSamplingPercentage"] == 20
    assert sorted(o["CaptureMode"] for o in capture["CaptureOptions"]) == ["Input", "Output"]
    writes = next(s for s in statements(stack) if s.get("Sid") == "WriteDataCapture")
    assert writes["Action"] == "s3:PutObject" and writes["Resource"] == "arn:aws:s3:::capture-bucket/bert/*"


def test_both_models_run_in_the_configured_vpc(stack: Synth) -> None:
    for model in stack.resources("AWS::SageMaker::Model").values():
        vpc = model["Properties"]["VpcConfig"]
        assert vpc == {
            "Subnets": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
            "SecurityGroupIds": ["sg-0a1b2c3d4e5f60718"],
        }
    by_sid = {s.get("Sid"): s for s in statements(stack)}
    create, manage = by_sid["VpcCreateNetworkInterfaces"], by_sid["VpcManageNetworkInterfaces"]
    assert create["Action"] == "ec2:CreateNetworkInterface"
    named = json.dumps(create["Resource"])
    assert "subnet/subnet-0123456789abcdef0" in named and "security-group/sg-0a1b2c3d4e5f60718" in named
    # Delete and the ENI-permission actions only act on ENIs in the configured subnets.
    assert "ec2:Subnet" in manage["Condition"]["ArnEquals"]
    assert "ec2:DeleteNetworkInterface" in manage["Action"] and "ec2:CreateNetworkInterface" not in manage["Action"]
    assert by_sid["VpcDescribeNetwork"]["Resource"] == "*"
    assert all(a.startswith("ec2:Describe") for a in by_sid["VpcDescribeNetwork"]["Action"])


def test_model_package_variant_deploys_the_package_and_explicit_image_wins(stack: Synth) -> None:
    models = [m["Properties"] for m in stack.resources("AWS::SageMaker::Model").values()]
    package = next(m for m in models if "Containers" in m)
    assert package["Containers"] == [{"ModelPackageName": PACKAGE}]
    neuron = next(m for m in models if "PrimaryContainer" in m)
    assert neuron["PrimaryContainer"]["Image"] == IMAGE
    pulls = next(s for s in statements(stack) if s.get("Sid") == "PullModelImages")
    assert "arn:aws:ecr:us-east-1:111122223333:repository/my-neuron-serving" in pulls["Resource"]
    # The package's image is only known at deploy time: its owner's registry, by account.
    assert "arn:aws:ecr:us-east-1:444455556666:repository/*" in pulls["Resource"]
    reads = next(s for s in statements(stack) if s.get("Sid", "").startswith("ReadPackageArtifacts"))
    assert reads["Condition"] == {"StringEquals": {"s3:ResourceAccount": "444455556666"}}


def test_options_still_grant_no_wildcard_actions(stack: Synth) -> None:
    for statement in statements(stack):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not [a for a in actions if "*" in a]


def test_options_template_passes_cfn_lint(stack: Synth, tmp_path: Path) -> None:
    assert [line for line in cfn_lint(stack, tmp_path) if line.startswith("E")] == []


def test_options_leave_no_unacknowledged_nag_findings(stack: Synth) -> None:
    assert nag_findings(stack) == []
