"""Prices: the Pricing API's hosting rows (never training), config overrides, `hybrid price`."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.exceptions import NoCredentialsError
from botocore.stub import Stubber

from toolkit.cli import run
from toolkit.errors import UserError
from toolkit.pricing import (
    HOSTING_PRICES_US_EAST_1,
    cost_per_1k,
    hosting_price_from_api,
    is_hosting_row,
    price_per_hour,
    quote,
)


def _row(usagetype: str, component: str, usd: str, instance: str = "ml.g5.xlarge") -> str:
    return json.dumps({
        "product": {
            "productFamily": "ML Instance",
            "attributes": {
                "servicecode": "AmazonSageMaker", "regionCode": "us-east-1", "instanceName": instance,
                "usagetype": usagetype, "component": component, "operation": "RunInstance",
            },
            "sku": "SKU1",
        },
        "serviceCode": "AmazonSageMaker",
        "terms": {"OnDemand": {"SKU1.T": {"priceDimensions": {"SKU1.T.D": {
            "unit": "Hrs", "pricePerUnit": {"USD": usd}, "description": f"{usd} per {component} hour",
        }}}}},
    })


TRAINING = _row("USE1-Train:ml.g5.xlarge", "Training", "1.6100000000")
NOTEBOOK = _row("USE1-Notebk:ml.g5.xlarge", "Notebook", "1.4100000000")
HOSTING = _row("USE1-Hosting:ml.g5.xlarge", "Hosting", "1.4080000000")


def _pricing_stub(price_list: list[str]) -> tuple[Any, Stubber]:
    client = boto3.client("pricing", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response(
        "get_products",
        {"PriceList": price_list, "FormatVersion": "aws_v1"},
        {
            "ServiceCode": "AmazonSageMaker",
            "Filters": [
                {"Type": "TERM_MATCH", "Field": "instanceName", "Value": "ml.g5.xlarge"},
                {"Type": "TERM_MATCH", "Field": "regionCode", "Value": "us-east-1"},
            ],
            "MaxResults": 100,
        },
    )
    return client, stub


def test_api_lookup_skips_training_and_notebook_rows_and_returns_the_hosting_rate():
    client, stub = _pricing_stub([TRAINING, NOTEBOOK, HOSTING])
    with stub:
        assert hosting_price_from_api(client, "ml.g5.xlarge", "us-east-1") == pytest.approx(1.408)
        stub.assert_no_pending_responses()


def test_api_without_a_hosting_row_falls_back_to_the_table_with_a_note():
    client, stub = _pricing_stub([TRAINING])
    with stub:
        (q,) = quote(["ml.g5.xlarge"], live=True, pricing_client=client)
    assert q.source == "table" and q.price_per_hour == HOSTING_PRICES_US_EAST_1["ml.g5.xlarge"]
    assert q.note and "no hosting row" in q.note


def test_live_quote_names_the_pricing_api_as_source():
    client, stub = _pricing_stub([TRAINING, HOSTING])
    with stub:
        (q,) = quote(["ml.g5.xlarge"], live=True, pricing_client=client)
    assert (q.source, q.price_per_hour) == ("pricing-api", pytest.approx(1.408))


def test_config_override_wins_without_calling_the_api():
    client = boto3.client("pricing", region_name="us-east-1")
    with Stubber(client):  # any call would fail: nothing is queued
        (q,) = quote(["ml.g5.xlarge"], overrides={"ml.g5.xlarge": 1.2}, live=True, pricing_client=client)
    assert (q.source, q.price_per_hour) == ("config", 1.2)
    assert price_per_hour("ml.g5.xlarge", {"ml.g5.xlarge": 1.2}) == 1.2


def test_no_credentials_falls_back_to_the_table_with_a_note():
    class NoCreds:
        def get_products(self, **_: Any) -> Any:
            raise NoCredentialsError()

    quotes = quote(["ml.inf2.xlarge", "ml.g5.xlarge"], live=True, pricing_client=NoCreds())
    assert [q.source for q in quotes] == ["table", "table"]
    assert all(q.note and "NoCredentialsError" in q.note for q in quotes)


def test_hosting_row_filter():
    assert is_hosting_row(json.loads(HOSTING))
    assert not is_hosting_row(json.loads(TRAINING))
    assert not is_hosting_row(json.loads(NOTEBOOK))
    assert not is_hosting_row(json.loads(_row("USE1-AsyncInf:ml.g5.xlarge", "Hosting", "1.5")))


def test_unknown_type_is_a_user_error():
    with pytest.raises(UserError, match=r"ml\.x9\.xlarge"):
        quote(["ml.x9.xlarge"])
    with pytest.raises(UserError, match="not a SageMaker instance type"):
        quote(["g5.xlarge"])


def test_cli_price_json_and_unknown_type_exit_2(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no hybrid.yaml here: prices from the table only
    assert run(["price", "ml.inf2.xlarge", "ml.g5.xlarge", "-o", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(q["instance_type"], q["price_per_hour"], q["source"]) for q in out] == [
        ("ml.inf2.xlarge", 0.99, "table"), ("ml.g5.xlarge", 1.408, "table"),
    ]
    assert run(["price", "ml.inf2.xlarge", "ml.x9.xlarge"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")


def test_cli_price_uses_config_overrides_and_its_instance_types(capsys, tmp_path, example_data, write_config):
    example_data["prices"] = {"ml.inf2.xlarge": 0.75}
    path = write_config(example_data)
    assert run(["price", "-c", str(path), "-o", "json"]) == 0
    out = {q["instance_type"]: q for q in json.loads(capsys.readouterr().out)}
    assert out["ml.inf2.xlarge"]["source"] == "config" and out["ml.inf2.xlarge"]["price_per_hour"] == 0.75
    assert out["ml.g5.xlarge"]["source"] == "table"


def test_cost_per_1k_is_unchanged_by_the_extension():
    # 2 instances at $1.408/h serving 1200 req/min: 2*1.408/60/1200*1000
    assert cost_per_1k(2, 1.408, 1200) == pytest.approx(2 * 1.408 / 60 / 1200 * 1000)
    assert cost_per_1k(1, 1.0, 0) is None
