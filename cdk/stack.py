"""`HybridEndpointStack`: the HybridEndpoint construct, its outputs and (optionally) the controller."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from cdk.endpoint import HybridEndpoint
from toolkit.config import HybridConfig
from toolkit.errors import UserError


class HybridEndpointStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: HybridConfig,
                 without_autoscaling: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"Hybrid Inferentia2 + GPU SageMaker endpoint {config.name} (sagemaker-hybrid-routing)",
            **kwargs,
        )
        self.config = config
        self.endpoint = HybridEndpoint(self, "HybridEndpoint", config=config, without_autoscaling=without_autoscaling)

        cdk.CfnOutput(self, "EndpointName", value=self.endpoint.endpoint_name, description="SageMaker endpoint name")
        cdk.CfnOutput(
            self, "VariantNames", value=",".join(self.endpoint.variant_names), description="Production variant names"
        )
        cdk.CfnOutput(self, "DashboardName", value=self.endpoint.dashboard_name, description="CloudWatch dashboard")
        cdk.CfnOutput(
            self,
            "ExecutionRoleArn",
            value=self.endpoint.execution_role.role_arn,
            description="Least-privilege model execution role (usable as execution_role_arn for `hybrid deploy`)",
        )

        self.controller = None
        if config.controller.enabled:
            self.controller = self._controller()

    def _controller(self) -> Any:
        """Hook for cdk/controller.py (written separately).

        Contract: `RoutingController(scope, "RoutingController", config=HybridConfig,
        endpoint=HybridEndpoint)`; everything else it needs is on the HybridEndpoint instance.
        """
        try:
            from cdk.controller import RoutingController
        except ModuleNotFoundError as error:
            if error.name != "cdk.controller":
                raise
            raise UserError(
                "controller.enabled is true but cdk/controller.py (RoutingController) is not installed: "
                "set controller.enabled: false or add the controller module"
            ) from None
        return RoutingController(self, "RoutingController", config=self.config, endpoint=self.endpoint)
