"""HybridEndpoint in a user's own CDK app: examples/cdk_app (two endpoints, environment-agnostic, cdk-nag).

Also the construct's checks that such apps hit: the stack's region against the config's,
instance types missing from the price table, Trainium (NVMe) neuron variants.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.cdk.conftest import ROOT, Synth, cdk_context, cfn_lint, nag_findings
from tests.conftest import EXAMPLE_CONFIG
from toolkit.config import load_config
from toolkit.errors import UserError

pytestmark = pytest.mark.slow

APP_DIR = ROOT / "examples" / "cdk_app"


def _example_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_cdk_app", APP_DIR / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example() -> Synth:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    # The example's own cdk.json context, as `cdk synth` in examples/cdk_app passes it: no
    # enablePartitionLiterals, no env (what `cdk init` gives a user).
    context = json.loads((APP_DIR / "cdk.json").read_text())["context"]
    assert "@aws-cdk/core:enablePartitionLiterals" not in context
    app = cdk.App(context=context)
    stack = _example_module().build(app)
    return Synth(app=app, stack=stack, template=Template.from_stack(stack))


def _instance_types(stack: Synth) -> list[str]:
    return sorted(v["InstanceType"] for c in stack.resources("AWS::SageMaker::EndpointConfig").values()
                  for v in c["Properties"]["ProductionVariants"])


def test_the_example_app_has_two_endpoints_one_on_inf2_8xlarge_and_g5_4xlarge_in_an_agnostic_stack(example):
    import aws_cdk as cdk

    assert cdk.Token.is_unresolved(example.stack.region) and cdk.Token.is_unresolved(example.stack.account)
    names = sorted(e["Properties"]["EndpointName"] for e in example.resources("AWS::SageMaker::Endpoint").values())
    assert names == ["bert-classifier", "search-ranker"]
    assert _instance_types(example) == ["ml.g5.4xlarge", "ml.g5.xlarge", "ml.inf2.8xlarge", "ml.inf2.xlarge"]


def test_the_example_app_passes_cdk_nag_without_partition_literals(example):
    assert nag_findings(example) == []


def test_the_example_app_passes_cfn_lint(example, tmp_path):
    assert cfn_lint(example, tmp_path) == []


def test_dashboards_carry_the_deploy_region_so_two_regions_never_share_one(example):
    names = [d["Properties"]["DashboardName"] for d in example.resources("AWS::CloudWatch::Dashboard").values()]
    assert sorted(json.dumps(n) for n in names) == sorted(json.dumps({"Fn::Join": ["", [f"{e}-hybrid-", {
        "Ref": "AWS::Region"}]]}) for e in ("bert-classifier", "search-ranker"))


def test_an_agnostic_stack_refuses_to_deploy_an_endpoint_outside_its_configured_region(example):
    rules = example.json()["Rules"]
    regions = [r for r in rules.values() if "Fn::Equals" in json.dumps(r)]
    assert len(regions) == 2
    for rule in regions:
        (assertion,) = rule["Assertions"]
        assert assertion["Assert"] == {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}
        assert "deploy this stack to us-east-1" in assertion["AssertDescription"]


def test_an_instance_type_without_a_price_synthesizes_with_a_note_instead_of_failing(example):
    from aws_cdk.assertions import Annotations, Match

    warnings = Annotations.from_stack(example.stack).find_warning("*", Match.string_like_regexp(".*ml.g5.4xlarge.*"))
    assert len(warnings) == 1 and "prices:" in str(warnings[0].entry.data)
    bodies = {n: json.dumps(example.stack.resolve(d["Properties"]["DashboardBody"]))
              for n, d in example.resources("AWS::CloudWatch::Dashboard").items()}
    ranker = next(b for n, b in bodies.items() if "SearchRanker" in n)
    bert = next(b for n, b in bodies.items() if "BertClassifier" in n)
    assert "No price known for ml.g5.4xlarge" in ranker and "Blended $ per 1K inferences" in bert
    assert "No price known" not in bert


# ---------------------------------------------------------------------------------------------
# The construct in small stacks of a user's app


def _endpoint(data: dict[str, Any], tmp_path: Path, *, region: str | None, context: dict[str, Any] | None = None,
              name: str = "hybrid.yaml") -> Synth:
    import aws_cdk as cdk
    import yaml
    from aws_cdk.assertions import Template
    from cdk_nag import AwsSolutionsChecks

    from cdk.endpoint import HybridEndpoint

    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    app = cdk.App(context=context if context is not None else cdk_context())
    stack = cdk.Stack(app, "UserStack", env=cdk.Environment(region=region) if region else None)
    HybridEndpoint(stack, "Endpoint", config=load_config(path))
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return Synth(app=app, stack=stack, template=Template.from_stack(stack))


def _example_data() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(EXAMPLE_CONFIG.read_text())


def test_a_stack_in_another_region_than_the_config_fails_synth_naming_both(tmp_path):
    with pytest.raises(UserError) as raised:
        _endpoint(_example_data(), tmp_path, region="eu-west-1")
    message = str(raised.value)
    assert "eu-west-1" in message and "us-east-1" in message and "region:" in message


def test_a_stack_in_the_configs_region_pulls_that_regions_images(tmp_path):
    data = _example_data()
    data["region"] = "eu-west-1"
    stack = _endpoint(data, tmp_path, region="eu-west-1")
    images = [m["Properties"]["PrimaryContainer"]["Image"] for m in stack.resources("AWS::SageMaker::Model").values()]
    assert len(images) == 2 and all(".dkr.ecr.eu-west-1.amazonaws.com/" in i for i in images), images
    assert "Rules" not in stack.json() or not any("Fn::Equals" in json.dumps(r) for r in stack.json()["Rules"].values())


def test_a_regional_stack_without_partition_literals_passes_cdk_nag(tmp_path):
    context = {k: v for k, v in cdk_context().items() if k != "@aws-cdk/core:enablePartitionLiterals"}
    data = _example_data()
    data["vpc"] = {"subnet_ids": ["subnet-0123456789abcdef0"], "security_group_ids": ["sg-0a1b2c3d4e5f60718"]}
    data["data_capture"] = {"enabled": True, "s3_uri": "s3://capture-bucket/bert/", "sampling_percent": 20}
    data["variants"]["gpu"]["model"] = {"model_package_arn": "arn:aws:sagemaker:us-east-1:444455556666:model-package/g/3"}
    stack = _endpoint(data, tmp_path, region="us-east-1", context=context)
    assert nag_findings(stack) == []


@pytest.mark.parametrize("instance_type", ["ml.trn1.2xlarge", "ml.trn1n.32xlarge", "ml.trn2.48xlarge"])
def test_a_trainium_neuron_variant_gets_no_volume_size_and_no_kms_key(tmp_path, instance_type):
    data = _example_data()
    data["variants"]["neuron"]["instance_type"] = instance_type
    data["variants"]["gpu"]["instance_type"] = "ml.p3.2xlarge"  # EBS-only: only the neuron side has NVMe
    data["kms_key_arn"] = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    data["prices"] = {instance_type: 1.5, "ml.p3.2xlarge": 3.8}
    stack = _endpoint(data, tmp_path, region="us-east-1")
    config = stack.only("AWS::SageMaker::EndpointConfig")["Properties"]
    assert "KmsKeyId" not in config
    variants = {v["VariantName"]: v for v in config["ProductionVariants"]}
    assert "VolumeSizeInGB" not in variants["neuron"] and variants["neuron"]["InstanceType"] == instance_type


def test_without_autoscaling_leaves_out_that_variants_scalable_target_for_step_one_of_a_type_change():
    from aws_cdk.assertions import Template

    from cdk.app import build_from_context

    _, stack = build_from_context(cdk_context(config=str(EXAMPLE_CONFIG), without_autoscaling="gpu"))
    targets = Template.from_stack(stack).find_resources("AWS::ApplicationAutoScaling::ScalableTarget")
    assert [t["Properties"]["ResourceId"] for t in targets.values()] == ["endpoint/bert-classifier/variant/neuron"]
    policies = Template.from_stack(stack).find_resources("AWS::ApplicationAutoScaling::ScalingPolicy")
    assert len(policies) == 1


def test_without_autoscaling_naming_an_unknown_variant_exits_2_with_one_line(capsys):
    from cdk.app import main

    assert main(cdk_context(config=str(EXAMPLE_CONFIG), without_autoscaling="gpu2")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "gpu2" in err and "neuron, gpu" in err
