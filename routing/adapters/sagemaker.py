"""SageMaker router adapter: DescribeEndpoint is the truth; UpdateEndpointWeightsAndCapacities moves it.

- describe(): DescribeEndpoint (status, Current/Desired weights and counts, FailureReason) plus
  DescribeEndpointConfig for the instance types (DescribeEndpoint does not report them). Endpoint
  configs are immutable, so the config is cached by name.
- apply(target): only when the endpoint is InService (one update at a time), otherwise
  EndpointBusy; sends the next stage toward the target (routing/staging.py: weights of all
  variants, or the count of one variant) with percent weights directly as DesiredWeight
  (SageMaker's weights are relative, so 30.0/70.0 is a 30 % / 70 % split; 0 is allowed), then
  reads the endpoint again and returns it. Failure is asynchronous: the caller checks FailureReason and
  Current* against Desired* on this and later reads.
- with autoscaling (routing/adapters/autoscaling.py): a variant that has a scalable target is
  scaled by Application Auto Scaling, never by the router. `endpoint_part(target)` is the target
  without those variants' counts (what UpdateEndpointWeightsAndCapacities still carries: weights,
  and the counts of variants without a target); `sync_scaling(phase, target)` turns the policy's
  counts into the targets' MinCapacity and suspends dynamic scale-in during a ramp and a fallback
  episode. Capacity before traffic still holds: weights toward an autoscaled neuron wait until
  its DesiredInstanceCount has reached the count (autoscaling scales out to the raised floor).
- stuck_remedy(live): an endpoint that is `UpdateRollbackFailed` or `Failed` never becomes
  InService by itself, so waiting for it is waiting forever: this names the status and what a
  human must do. The controller records it every tick and exits 3; the Lambda sends a notice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from routing.adapters.autoscaling import ScalableTargets, VariantScaling, wanted_scaling
from routing.core.model import EndpointLive, ModelVersion, Phase, Target, VariantLive
from routing.core.staging import next_update
from routing.core.variants import NEURON
from toolkit.errors import AwsError, UserError


class EndpointBusy(Exception):
    """The endpoint is not InService (Updating, RollingBack, ...): no update may be sent now."""

    def __init__(self, endpoint: str, status: str) -> None:
        super().__init__(f"endpoint busy: {endpoint} is {status}, not InService; the update waits for a later tick")
        self.status = status


# Statuses that never return to InService without a human (SageMaker DescribeEndpoint EndpointStatus).
STUCK_STATUSES: dict[str, str] = {
    "UpdateRollbackFailed": (
        "it serves a mix of the old and new configs and will not recover by itself; no weight or capacity "
        "update is accepted until it is fixed: deploy a known-good config again (`hybrid deploy`, which calls "
        "UpdateEndpoint) or delete the endpoint"
    ),
    "Failed": (
        "it cannot serve and will not recover by itself: read FailureReason, fix the cause, then delete the "
        "endpoint and deploy it again (`hybrid deploy`)"
    ),
}


def stuck_remedy(live: EndpointLive) -> str | None:
    """The status and the remedy when the endpoint cannot recover by itself; None otherwise."""
    remedy = STUCK_STATUSES.get(live.status)
    if remedy is None:
        return None
    reason = f" ({live.failure_reason})" if live.failure_reason else ""
    return f"endpoint {live.name} is {live.status}{reason}: {remedy}"


def _code(error: Exception) -> str:
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))


class SageMakerRouter:
    """Router over the SageMaker control plane for one endpoint."""

    def __init__(self, sagemaker: Any, endpoint: str, variants: Sequence[str] = ("neuron", "gpu"),
                 autoscaling: ScalableTargets | None = None, base_floors: Mapping[str, int] | None = None) -> None:
        self._sm = sagemaker
        self.endpoint = endpoint
        self.variants = tuple(variants)
        self._config_cache: dict[str, dict[str, str]] = {}
        self._model_names: dict[str, dict[str, str]] = {}  # endpoint config -> variant -> ModelName
        self._model_cache: dict[str, dict[str, ModelVersion]] = {}
        self.api_calls = 0  # SageMaker calls (the bench's "update" budget is about these)
        self.autoscaling = autoscaling
        self.scaling: dict[str, VariantScaling] = {}  # as read by the last describe()
        self.base_floors = dict(base_floors or {})  # the configured min_count: floors go back to it (wanted_scaling)
        self._desired: dict[str, int] = {}  # DesiredInstanceCount per variant, as read by the last describe()

    @property
    def autoscaling_calls(self) -> int:
        """Application Auto Scaling calls, counted apart from the SageMaker ones."""
        return self.autoscaling.api_calls if self.autoscaling is not None else 0

    # -- reading ---------------------------------------------------------------------------------

    def _instance_types(self, config_name: str) -> dict[str, str]:
        if config_name not in self._config_cache:
            self.api_calls += 1
            config = self._sm.describe_endpoint_config(EndpointConfigName=config_name)
            self._config_cache[config_name] = {
                v["VariantName"]: v.get("InstanceType", "") for v in config.get("ProductionVariants", [])
            }
            self._model_names[config_name] = {
                v["VariantName"]: v["ModelName"] for v in config.get("ProductionVariants", []) if v.get("ModelName")
            }
        return self._config_cache[config_name]

    def _models(self, config_name: str) -> dict[str, ModelVersion]:
        """Which model each variant serves (issue 17): the config's ModelName, then DescribeModel's
        artifact (model package ARN, else model data URL) and image. Cached per endpoint config
        (immutable, and a new model means a new endpoint config). A DescribeModel this role may not
        call leaves the name alone: versions are then told apart by name."""
        if config_name in self._model_cache:
            return self._model_cache[config_name]
        from botocore.exceptions import BotoCoreError, ClientError

        out: dict[str, ModelVersion] = {}
        for variant, model_name in self._model_names.get(config_name, {}).items():
            try:
                self.api_calls += 1
                model = self._sm.describe_model(ModelName=model_name)
            except (ClientError, BotoCoreError):
                out[variant] = ModelVersion(model_name)
                continue
            container = model.get("PrimaryContainer") or next(iter(model.get("Containers") or []), {}) or {}
            source = ((container.get("ModelDataSource") or {}).get("S3DataSource") or {}).get("S3Uri")
            artifact = container.get("ModelPackageName") or container.get("ModelDataUrl") or source
            out[variant] = ModelVersion(model_name, artifact or None, container.get("Image") or None)
        self._model_cache[config_name] = out
        return out

    def describe(self) -> EndpointLive:
        """DescribeEndpoint (+ the variants' scalable targets once per call, when autoscaling is wired)."""
        live = self._describe_endpoint()
        self._desired = {name: v.desired_instance_count for name, v in live.variants.items()}
        if self.autoscaling is not None:
            self.scaling = self.autoscaling.read()
        return live

    def _describe_endpoint(self) -> EndpointLive:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.api_calls += 1
            data = self._sm.describe_endpoint(EndpointName=self.endpoint)
            types = self._instance_types(data["EndpointConfigName"]) if data.get("EndpointConfigName") else {}
            models = self._models(data["EndpointConfigName"]) if data.get("EndpointConfigName") else {}
        except ClientError as error:
            message = str(error.response.get("Error", {}).get("Message", error))
            if _code(error) in ("ValidationException", "ResourceNotFound") and "find" in message.lower():
                raise UserError(
                    f"endpoint {self.endpoint!r} does not exist in this region/account (check `name` and `region` "
                    f"in hybrid.yaml, or deploy it with `hybrid deploy`)"
                ) from None
            raise AwsError(f"DescribeEndpoint {self.endpoint}: {message}") from None
        except BotoCoreError as error:
            raise AwsError(f"DescribeEndpoint {self.endpoint}: {error}") from None
        variants: dict[str, VariantLive] = {}
        for v in data.get("ProductionVariants", []):
            name = v["VariantName"]
            current_weight = float(v.get("CurrentWeight", 0.0))
            current_count = int(v.get("CurrentInstanceCount", 0))
            variants[name] = VariantLive(
                name=name,
                instance_type=types.get(name, ""),
                current_weight=current_weight,
                desired_weight=float(v.get("DesiredWeight", current_weight)),
                current_instance_count=current_count,
                desired_instance_count=int(v.get("DesiredInstanceCount", current_count)),
            )
        missing = [name for name in self.variants if name not in variants]
        if missing:
            have = ", ".join(sorted(variants)) or "none"
            raise UserError(
                f"endpoint {self.endpoint!r} has no production variant named {', '.join(missing)} "
                f"(it has: {have}); the toolkit expects variants 'neuron' and 'gpu'"
            )
        return EndpointLive(
            name=self.endpoint,
            status=str(data.get("EndpointStatus", "")),
            variants=variants,
            failure_reason=data.get("FailureReason") or None,
            models=models,
        )

    # -- changing --------------------------------------------------------------------------------

    def endpoint_part(self, target: Target) -> Target:
        """The part of `target` the endpoint update owns: without the counts of autoscaled variants."""
        if not self.scaling:
            return target
        return Target(weights=dict(target.weights),
                      instance_counts={v: c for v, c in target.instance_counts.items() if v not in self.scaling})

    def _capacity_first(self, target: Target, live: EndpointLive) -> bool:
        """Weights toward an autoscaled neuron must wait until autoscaling has reached the asked count."""
        count = target.instance_counts.get(NEURON)
        if NEURON not in self.scaling or count is None or NEURON not in live.variants:
            return False
        grows = live.variants[NEURON].desired_instance_count < int(count)
        total = sum(float(w) for w in target.weights.values())
        live_total = sum(v.desired_weight for v in live.variants.values())
        wanted = float(target.weights.get(NEURON, 0.0)) / total if total > 0 else 0.0
        now = live.variants[NEURON].desired_weight / live_total if live_total > 0 else 0.0
        return grows and wanted > now + 1e-4

    def sync_scaling(self, phase: Phase, target: Target | None) -> list[str]:
        """Floors from the policy's counts and scale-in per phase, on the variants that autoscale.

        Returns one note per change made. Uses the targets read by this tick's describe().
        """
        if self.autoscaling is None or not self.scaling:
            return []
        notes = []
        for variant, current in sorted(self.scaling.items()):
            floor = target.instance_counts.get(variant) if target is not None else None
            wanted = wanted_scaling(current, phase, floor, self._desired.get(variant), self.base_floors.get(variant))
            if wanted == current:
                continue
            self.scaling[variant] = self.autoscaling.register(wanted)
            changes = []
            if wanted.min_capacity != current.min_capacity:
                changes.append(f"MinCapacity {current.min_capacity} -> {wanted.min_capacity}")
            if wanted.max_capacity != current.max_capacity:
                changes.append(f"MaxCapacity {current.max_capacity} -> {wanted.max_capacity}")
            if wanted.scale_in_suspended != current.scale_in_suspended:
                changes.append("scale-in suspended" if wanted.scale_in_suspended else "scale-in restored")
            notes.append(f"autoscaling {variant}: {', '.join(changes)} ({phase.value})")
        return notes

    def request(self, target: Target, live: EndpointLive) -> dict[str, Any] | None:
        """The next UpdateEndpointWeightsAndCapacities request toward target (routing/staging.py), or None."""
        if self._capacity_first(target, live):
            return None  # sync_scaling raises neuron's floor; the weights follow once it has scaled out
        update = next_update(live, self.endpoint_part(target))
        if update is None:
            return None
        for entry in update.entries():
            if any(isinstance(v, (int, float)) and v < 0 for v in entry.values()):
                raise ValueError(f"invalid target entry {entry}")
        return {"EndpointName": self.endpoint, "DesiredWeightsAndCapacities": update.entries()}

    def apply(self, target: Target) -> EndpointLive:
        """Send the next stage toward target (one request; the controller re-applies until it matches)."""
        from botocore.exceptions import BotoCoreError, ClientError

        live = self._describe_endpoint()
        if not live.in_service:
            raise EndpointBusy(self.endpoint, live.status)
        request = self.request(target, live)
        if request is None:
            return live
        try:
            self.api_calls += 1
            self._sm.update_endpoint_weights_and_capacities(**request)
        except ClientError as error:
            code = _code(error)
            message = str(error.response.get("Error", {}).get("Message", error))
            if code == "ResourceLimitExceeded":
                counts = ", ".join(f"{e['VariantName']}={e['DesiredInstanceCount']}" for e in request["DesiredWeightsAndCapacities"]
                                   if "DesiredInstanceCount" in e)
                raise AwsError(
                    f"UpdateEndpointWeightsAndCapacities {self.endpoint}: instance quota exceeded ({counts}): "
                    f"request a SageMaker endpoint-usage quota increase for the instance type "
                    f"(many accounts start at 0 for ml.inf2): {message}"
                ) from None
            if code == "ValidationException" and ("in-progress" in message or "status" in message.lower()):
                raise EndpointBusy(self.endpoint, "not InService") from None
            raise AwsError(f"UpdateEndpointWeightsAndCapacities {self.endpoint}: {code}: {message}") from None
        except BotoCoreError as error:
            raise AwsError(f"UpdateEndpointWeightsAndCapacities {self.endpoint}: {error}") from None
        return self._describe_endpoint()
